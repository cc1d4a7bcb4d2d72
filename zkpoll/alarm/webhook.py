"""One webhook (``http://`` / ``https://`` action URL): durable spool + sender thread.

:meth:`WebhookNotifier.enqueue` commits the notifications to the spool of
the URL (:class:`zkpoll.publisher.spool.Spool`, sqlite3 WAL, one row per
call) before returning.  One sender thread POSTs them, oldest first, one
request per notification::

    POST <path>                      (the query string is not sent)
    Content-Type: application/json
    User-Agent: zkpoll/<version>
    Idempotency-Key: <key>           (the same on every redelivery)
    X-OpenStack-Request-Id: req-<uuid4>   (new per attempt, as Aodh sends)
    Authorization: Basic ...         (when the URL has credentials)

Answers: 2xx delivered; no answer (connection error, timeout, TLS failure),
408, 429 and 5xx are retried, in order, with capped exponential backoff and
jitter, without limit; any other status (3xx, 4xx) drops that notification,
counted as ``rejected`` and logged at ERROR with its key.  The spool bounds
(``[alarm] notify_spool_max_bytes`` / ``notify_spool_max_age``) drop the
oldest notifications, counted and logged at ERROR.  A row is deleted once
each of its notifications is delivered or rejected; after a crash, the
notifications of an unfinished row are sent again (same key and body).
"""

from __future__ import annotations

import http.client
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zkpoll.alarm.action_url import WHAT, ActionURL, client_tls_context
from zkpoll.alarm.notify_codec import Notification, decode_row, encode_body, encode_row
from zkpoll.alarm.notify_options import NotifySettings
from zkpoll.exceptions import BatchRejected, ConfigError, PublishError
from zkpoll.publisher.base import PublisherHealth, _LogLimiter
from zkpoll.publisher.http import post
from zkpoll.publisher.spool import Entry, Spool
from zkpoll.publisher.spooled import backoff_delay
from zkpoll.version import __version__

__all__ = ["RETRIED_STATUSES", "WebhookNotifier"]

LOG = logging.getLogger(__name__)

#: Statuses retried (besides no answer at all); other non-2xx answers reject.
RETRIED_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))

_IDLE_CHECK = 5.0  # seconds between bound checks while nothing else happens


class WebhookNotifier:
    """Spool and sender thread of one action URL (see the module docstring).

    :raises ConfigError: the spool directory or a TLS file cannot be used
    """

    def __init__(self, action: ActionURL, directory: Path, settings: NotifySettings) -> None:
        self.action = action
        self.settings = settings
        self._ssl = client_tls_context(action) if action.scheme == "https" else None
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": f"zkpoll/{__version__}"}
        if action.authorization:
            self._headers["Authorization"] = action.authorization
        try:
            self.spool = Spool(directory, settings.fsync)
        except ConfigError as exc:
            raise ConfigError(f"{WHAT} {action.redacted!r}: {exc}") from exc
        try:
            (directory / "url").write_text(action.redacted + "\n")
        except OSError:
            pass  # only a hint for operators
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._deadline = float("inf")
        self._retry_at = 0.0
        self._attempts = 0
        self._progress = (0, 0)  # (row seq, notifications of it done)
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._failing_since: float | None = None
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._retry_log = _LogLimiter()
        if self.spool.depth:
            LOG.warning("%s %s: %d notifications from an earlier run wait in the spool %s; "
                        "delivering them first", WHAT, action.redacted, self.spool.depth,
                        self.spool.directory)
            with self._cond:
                self._start()

    # --- accepting -------------------------------------------------------------
    def enqueue(self, notifications: Sequence[Notification]) -> None:
        """Commit ``notifications`` (in order) to the spool as one row.

        :raises sqlite3.Error: the spool cannot be written (nothing was enqueued)
        :raises RuntimeError: the notifier is closed
        """
        if not notifications:
            return
        row = encode_row(notifications)
        with self._cond:
            if self._closing or self._closed:
                raise RuntimeError(f"{WHAT} {self.action.redacted}: notifier is closed")
            self.spool.append(row, len(notifications), time.time())
            with self._stats_lock:
                self._counts["enqueued"] += len(notifications)
            self._start()
            self._cond.notify_all()

    def _start(self) -> None:
        """Start the sender thread (under the condition's lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"zkpoll-alarm-{self.action.scheme}")
            self._thread.start()

    # --- sending ---------------------------------------------------------------
    def _ready(self) -> bool:
        return bool(self.spool.batches) and time.monotonic() >= self._retry_at

    def _run(self) -> None:
        """Sender thread: deliver the oldest rows until closed."""
        while True:
            with self._cond:
                if self._closing and (not self.spool.batches or self._attempts
                                      or time.monotonic() >= self._deadline):
                    return
                if not self._closing and not self._ready():
                    wait = _IDLE_CHECK if not self.spool.batches else \
                        min(_IDLE_CHECK, self._retry_at - time.monotonic())
                    self._cond.wait(max(0.0, wait))
                ready = self._ready()
            if ready:
                try:
                    self._send_head()
                except Exception as exc:  # the spool itself failed (disk full, I/O error)
                    LOG.exception("%s %s: cannot read or update the spool %s", WHAT,
                                  self.action.redacted, self.spool.directory)
                    self._retry_later(f"spool error: {type(exc).__name__}: {exc}")
            self._enforce_bounds()

    def _send_head(self) -> None:
        chunk = self.spool.head(1)
        if not chunk:
            return
        entry, row = chunk[0]
        try:
            items = decode_row(row)
        except ValueError as exc:
            self.spool.drop([entry.seq])
            self._count_drop("corrupt", entry.count)
            LOG.error("%s %s: a spooled row of %d notifications is unreadable (%s): DROPPED",
                      WHAT, self.action.redacted, entry.count, exc)
            return
        if self._progress[0] != entry.seq:
            self._progress = (entry.seq, 0)
        for index in range(self._progress[1], len(items)):
            if self._closing and time.monotonic() >= self._deadline:
                return  # the rest of the row stays on disk
            key, body = items[index]
            try:
                self._post(key, body)
            except BatchRejected as exc:
                self._rejected(key, str(exc))
            except PublishError as exc:
                self._retry_later(str(exc))
                return
            else:
                self._delivered()
            self._progress = (entry.seq, index + 1)
        self.spool.ack(entry.seq)
        self._progress = (0, 0)

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.action.options.timeout
        if self._ssl is not None:
            return http.client.HTTPSConnection(self.action.host, self.action.port,
                                               timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self.action.host, self.action.port, timeout=timeout)

    def _post(self, key: str, body: dict[str, Any]) -> None:
        headers = dict(self._headers)
        headers["Idempotency-Key"] = key
        headers["X-OpenStack-Request-Id"] = f"req-{uuid.uuid4()}"
        post(self._connection(), self.action.path, encode_body(body), headers,
             retried=RETRIED_STATUSES)

    # --- accounting ----------------------------------------------------------------
    def _delivered(self) -> None:
        with self._stats_lock:
            self._counts["delivered"] += 1
            self._failing_since = None
            self._last_success = time.time()
        self._attempts = 0
        if self._retry_log.reset():
            LOG.info("%s %s: delivering again", WHAT, self.action.redacted)

    def _rejected(self, key: str, reason: str) -> None:
        self._attempts = 0
        with self._stats_lock:
            self._counts["rejected"] += 1
            self._drops["rejected"] += 1
        LOG.error("%s %s: the webhook rejected notification %s for good: %s; DROPPED",
                  WHAT, self.action.redacted, key, reason)

    def _retry_later(self, reason: str) -> None:
        self._attempts += 1
        delay = backoff_delay(self._attempts, self.action.options.retry_backoff,
                              self.action.options.max_backoff, random.uniform(0.5, 1.0))
        with self._cond:
            self._retry_at = time.monotonic() + delay
        with self._stats_lock:
            self._counts["retried"] += 1
            self._last_error = reason
            if self._failing_since is None:
                self._failing_since = time.time()
        repeats = self._retry_log.hit(reason)
        if repeats is not None:
            suffix = "" if repeats == 1 else f" (x{repeats} in the last minute)"
            LOG.warning("%s %s: delivery failed (%d notifications waiting in the spool, "
                        "retrying without limit): %s%s", WHAT, self.action.redacted,
                        self.spool.depth, reason, suffix)

    def _count_drop(self, reason: str, count: int) -> None:
        with self._stats_lock:
            self._counts["dropped"] += count
            self._drops[reason] += count

    def _enforce_bounds(self) -> None:
        """Apply the spool bounds (sender thread only); count and log what they drop."""
        settings = self.settings
        try:
            by_age, by_size = self.spool.enforce_bounds(settings.max_bytes, settings.max_age,
                                                        time.time())
        except sqlite3.Error as exc:
            LOG.error("%s %s: cannot apply the spool bounds: %s", WHAT, self.action.redacted,
                      exc)
            return
        for entries, reason, bound in (
                (by_age, "max_age", f"notify_spool_max_age={settings.max_age:g}s"),
                (by_size, "max_bytes", f"notify_spool_max_bytes={settings.max_bytes}")):
            if entries:
                self._dropped_oldest(entries, reason, bound)

    def _dropped_oldest(self, entries: Sequence[Entry], reason: str, bound: str) -> None:
        count = sum(e.count for e in entries)
        seq, done = self._progress
        if any(e.seq == seq for e in entries):  # a partly delivered row
            count -= done
            self._progress = (0, 0)
        self._count_drop(reason, count)
        LOG.error("%s %s: [alarm] %s reached: DROPPED the %d oldest undelivered "
                  "notifications (enqueued from %s)", WHAT, self.action.redacted, bound,
                  count, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entries[0].oldest)))

    # --- state and shutdown -------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters: ``enqueued``, ``delivered``, ``retried`` (failed attempts, each
        retried), ``rejected`` (refused for good by the webhook, dropped),
        ``dropped`` (by the spool bounds, or unreadable) and ``drops`` (every loss
        by reason: rejected, max_bytes, max_age, corrupt); gauges: ``queued``
        (notifications waiting), ``oldest_age_s``, ``spool_bytes``,
        ``failing_since``, ``last_error``."""
        oldest = self.spool.oldest()
        with self._stats_lock:
            counts = self._counts
            return {
                "enqueued": counts["enqueued"], "delivered": counts["delivered"],
                "retried": counts["retried"], "rejected": counts["rejected"],
                "dropped": counts["dropped"], "drops": dict(self._drops),
                "queued": self._queued(), "spool_bytes": self.spool.size,
                "oldest_age_s": None if oldest is None else max(0.0, time.time() - oldest),
                "failing_since": self._failing_since, "last_error": self._last_error,
            }

    @property
    def health(self) -> PublisherHealth:
        """Failure state and backlog, as :mod:`zkpoll.publisher.health` summarises it."""
        oldest = self.spool.oldest()
        with self._stats_lock:
            return PublisherHealth(self._failing_since, self._last_success, self._last_error,
                                   self._queued(), oldest, self.spool.size, dict(self._drops))

    def _queued(self) -> int:
        """Notifications in the spool, less those of a partly sent row already done."""
        seq, done = self._progress
        return self.spool.depth - (done if seq else 0)

    def begin_close(self, deadline: float) -> None:
        """Stop accepting; the sender delivers what it can until ``deadline`` (monotonic)."""
        with self._cond:
            self._closing = True
            self._deadline = deadline
            self._cond.notify_all()

    def finish_close(self, deadline: float) -> int:
        """Wait for the sender until ``deadline`` (+1 s); close the spool; return
        the notifications left on disk."""
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._cond:
            if self._closed:
                return 0
            self._closed = True
            left = self.spool.depth
            if thread is None or not thread.is_alive():
                self.spool.close()
        if left:
            LOG.warning("%s %s: %d undelivered notifications stay in the spool %s and are "
                        "sent after the next start", WHAT, self.action.redacted, left,
                        self.spool.directory)
        return left

    def close(self, timeout: float = 5.0) -> int:
        """Deliver what the webhook takes within ``timeout`` s; the rest stays on disk."""
        deadline = time.monotonic() + max(0.0, timeout)
        self.begin_close(deadline)
        return self.finish_close(deadline)
