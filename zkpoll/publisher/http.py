"""``http://`` and ``https://`` publisher: batched JSON POSTs from one sender thread."""

from __future__ import annotations

import base64
import collections
import http.client
import itertools
import logging
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import OptionSpec, Publisher, boolean, integer, number
from zkpoll.sample import Sample
from zkpoll.version import __version__

__all__ = ["HTTPPublisher"]

_RETRIED_STATUSES = frozenset({429}) | frozenset(range(500, 600))


class HTTPPublisher(Publisher):
    """POST samples as JSON arrays of ``Sample.as_dict()``.

    ``publish_samples`` only appends to a bounded queue; one daemon thread,
    started on the first call, sends batches with ``Content-Type:
    application/json``, one connection per POST.  Connection errors, 5xx and
    429 are retried with capped exponential backoff (with jitter; a
    ``Retry-After`` in seconds is honoured up to ``max_backoff``); after
    ``max_retries`` retries the batch is dropped.  Any other non-2xx answer
    drops the batch at once.  Credentials in the URL
    (``https://user:pass@host/``) become Basic auth and are redacted from
    logs and reprs.

    Options (query string): ``batch_size`` (500), ``max_queue`` (10000
    samples; beyond it new samples are dropped), ``timeout`` (5.0 s per
    POST), ``max_retries`` (3), ``retry_backoff`` (1.0 s, doubled per retry),
    ``max_backoff`` (30.0 s), ``verify_ssl`` (true) and ``ca_file`` (a CA
    bundle for https; default: the system's).  The query string is not sent.
    """

    OPTIONS: ClassVar[OptionSpec] = {
        "batch_size": (integer(1), 500),
        "max_queue": (integer(1), 10000),
        "timeout": (number(0.01), 5.0),
        "max_retries": (integer(0), 3),
        "retry_backoff": (number(0), 1.0),
        "max_backoff": (number(0), 30.0),
        "verify_ssl": (boolean, True),
        "ca_file": (str, None),
    }

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        if not url.hostname:
            raise ConfigError(f"publisher URL {self.redacted_url!r} names no host")
        opts = self.options
        self.batch_size: int = opts["batch_size"]
        self.max_queue: int = opts["max_queue"]
        self.timeout: float = opts["timeout"]
        self.max_retries: int = opts["max_retries"]
        self.retry_backoff: float = opts["retry_backoff"]
        self.max_backoff: float = opts["max_backoff"]
        self.verify_ssl: bool = opts["verify_ssl"]
        self.ca_file: str | None = opts["ca_file"]
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._path = url.path or "/"
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": f"zkpoll/{__version__}"}
        if url.username is not None or url.password is not None:
            userinfo = (f"{urllib.parse.unquote(url.username or '')}:"
                        f"{urllib.parse.unquote(url.password or '')}")
            token = base64.b64encode(userinfo.encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._ssl = self._ssl_context() if url.scheme == "https" else None
        self._cond = threading.Condition()
        self._queue: collections.deque[Sample] = collections.deque()
        self._inflight = 0
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None  # the POST in flight
        self._closing = False
        self._deadline = float("inf")

    def _ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"publisher URL {self.redacted_url!r}: cannot load "
                              f"ca_file {self.ca_file!r}: {exc}") from exc
        if not self.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.log.warning("publisher %s: TLS certificate verification is disabled",
                             self.redacted_url)
        return context

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Enqueue ``samples`` (never blocks); what does not fit is dropped."""
        if not samples:
            return
        with self._cond:
            closing = self._closing
            room = 0 if closing else max(0, self.max_queue - len(self._queue))
            self._queue.extend(itertools.islice(samples, room))
            if self._thread is None and not closing:
                self._thread = threading.Thread(
                    target=self._run, name=f"zkpoll-publisher-{self._host}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        dropped = len(samples) - min(room, len(samples))
        if not dropped:
            return
        if closing:
            self._failed("publisher is closed; samples dropped", dropped, error=False,
                         level=logging.WARNING)
            return
        with self._stats_lock:
            self._dropped += dropped
        total = self._drop_log.hit("queue full", dropped)
        if total is not None:
            self.log.warning("publisher %s: queue full (max_queue=%d): dropped %d samples "
                             "(warned at most once a minute)", self.redacted_url,
                             self.max_queue, total)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued within ``timeout`` seconds; count the rest as dropped."""
        with self._cond:
            self._closing = True
            self._deadline = min(self._deadline, time.monotonic() + max(0.0, timeout))
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._deadline - time.monotonic()))
            if thread.is_alive():  # a POST started before close() outlives the deadline
                self._abort()
                thread.join(1.0)
        with self._cond:
            rest = len(self._queue)
            self._queue.clear()
        if rest:
            self._failed(f"closed with {rest} samples unsent; dropped", rest, error=False,
                         level=logging.WARNING)

    def _queue_depth(self) -> int:
        return len(self._queue) + self._inflight

    def _run(self) -> None:
        """Sender thread: take batches off the queue until closed and drained."""
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or time.monotonic() >= self._deadline:
                    return
                count = min(self.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._inflight = count
            try:
                self._deliver(batch)
            except Exception:  # a bug must not silently stop all delivery
                self.log.exception("publisher %s: unexpected error in the sender",
                                   self.redacted_url)
                self._failed("unexpected error in the sender; batch dropped", count)
            finally:
                with self._cond:
                    self._inflight = 0

    def _deliver(self, batch: list[Sample]) -> None:
        """POST one batch, retrying; count it as published or dropped."""
        lines = self._encode(batch)
        if not lines:
            return
        body = f"[{','.join(lines)}]".encode()
        retry_after: float | None = None
        for attempt in range(self.max_retries + 1):
            if attempt and not self._sleep(self._backoff(attempt, retry_after)):
                self._failed(f"closing: gave up on a batch after {attempt} attempt(s)",
                             len(lines), error=False, level=logging.WARNING)
                return
            try:
                status, reason, retry_after = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                status, reason, retry_after = 0, f"{type(exc).__name__}: {exc}", None
            if 200 <= status < 300:
                self._delivered(len(lines))
                return
            if status and status not in _RETRIED_STATUSES:
                self._failed(f"batch dropped, not retried: {reason}", len(lines))
                return
            if attempt == self.max_retries:
                break
            self._failed(f"POST failed, will retry: {reason}", level=logging.WARNING)
        self._failed(f"batch dropped after {self.max_retries} retries: {reason}", len(lines))

    def _post(self, body: bytes) -> tuple[int, str, float | None]:
        """POST ``body`` on a new connection: (status, description, Retry-After)."""
        conn = self._connection(max(0.01, min(self.timeout, self._deadline - time.monotonic())))
        with self._cond:
            self._conn = conn
        try:
            conn.request("POST", self._path, body=body, headers=self._headers)
            response = conn.getresponse()
            detail = response.read(200).decode("utf-8", "replace")
        finally:
            with self._cond:
                self._conn = None
            conn.close()
        reason = f"HTTP {response.status} {response.reason}"
        if detail.strip():
            reason += f": {detail.strip()!r}"
        return response.status, reason, _seconds(response.getheader("Retry-After"))

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def probe(self) -> bool:
        """POST an empty JSON array on a connection of its own: True on a 2xx answer."""
        conn = self._connection(self.timeout)
        try:
            conn.request("POST", self._path, body=b"[]", headers=self._headers)
            return 200 <= conn.getresponse().status < 300
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _abort(self) -> None:
        """Cut the connection of the POST in flight, so the sender fails it now."""
        with self._cond:
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:  # the plain-socket shutdown, also for TLS: it only wakes the reader
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.retry_backoff * 2 ** (attempt - 1))
        delay = random.uniform(delay / 2, delay)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds; False if close()'s deadline would pass first."""
        end = time.monotonic() + delay
        with self._cond:
            while (now := time.monotonic()) < end:
                if end >= self._deadline:
                    return False
                self._cond.wait(end - now)
        return True


def _seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` given in seconds (HTTP dates are ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
