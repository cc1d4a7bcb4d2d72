"""Checks of remote endpoints: HTTP and TCP (``zkpoll.poll.central``).

Resources are strings given by the source (``resources:`` or a
``static``/``file`` discovery): URLs for the ``http.*`` pollsters,
``host:port`` or ``tcp://host:port`` for ``tcp.connect.time``.  The
``resource_id`` of a sample is the resource as given.

Endpoints are checked concurrently by a small thread pool per call
(:data:`MAX_WORKERS`), all within one deadline: :data:`BUDGET_SHARE` of
the pollster's budget (``context.timeout``, at most :data:`MAX_TIMEOUT`
seconds), so the call always returns before the agent gives up on it.
Every socket operation of a check gets only the time left until that
deadline; a check still running at the deadline is abandoned (its thread
ends at the deadline) and counts as failed for that endpoint alone: one
unresponsive endpoint never costs the samples of the others.

A failed endpoint gives ``http.status`` 0 with ``resource_metadata["error"]``
(e.g. ``no answer within 1.6s``); ``http.response.time`` and
``tcp.connect.time`` give no sample for it and log a WARNING naming it.
``http.status`` and ``http.response.time`` share one GET per URL per cycle
through the cycle cache.  Redirects are not followed: the status is what
is measured.

An endpoint not reached at the connection level gives an
:class:`~zkpoll.plugin.Unreachable` carrying that same outcome (the
``http.status`` 0 sample; nothing for the other two meters): name
resolution failed, connection refused, no route (host or network
unreachable or down), or the TCP connect did not complete within the
budget (:func:`zkpoll.pollsters.connect_failed`).  Once the TCP connection
is up, whatever happens is an answer, kept as today: a TLS handshake
failure, a reset, an HTTP status >= 400, a response that does not come in
time (read timeout).  A check that never started (its budget was gone
before its turn) is not Unreachable either: nothing was tried.
"""

from __future__ import annotations

import abc
import http.client
import logging
import socket
import ssl
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from zkpoll.plugin import PollingContext, Pollster, Unreachable
from zkpoll.pollsters import _unique_ids, connect_failed, cycle_cached
from zkpoll.sample import GAUGE, Sample
from zkpoll.version import __version__

__all__ = [
    "BUDGET_SHARE",
    "MAX_TIMEOUT",
    "MAX_WORKERS",
    "HTTPResponseTimePollster",
    "HTTPStatusPollster",
    "TCPConnectTimePollster",
]

LOG = logging.getLogger(__name__)

#: Endpoints checked at once by one pollster call.
MAX_WORKERS = 16
#: Upper bound (seconds) of the time one call may spend checking endpoints.
MAX_TIMEOUT = 10.0
#: Share of the pollster's budget the checks may use (the rest is margin).
BUDGET_SHARE = 0.8

_USER_AGENT = f"zkpoll/{__version__}"
T = TypeVar("T")


def _request_timeout(context: PollingContext) -> float:
    """Return the per-request timeout: ``min(context.timeout, MAX_TIMEOUT)``, unset = max."""
    timeout = context.timeout
    return min(timeout, MAX_TIMEOUT) if timeout and timeout > 0 else MAX_TIMEOUT


def _checks_budget(context: PollingContext) -> float:
    """Seconds one call may spend checking: BUDGET_SHARE of the request timeout."""
    return _request_timeout(context) * BUDGET_SHARE


def _concurrently(check: Callable[[str], T], targets: list[str], deadline: float,
                  late: Callable[[str], T]) -> list[T]:
    """Return ``[check(t) for t in targets]`` run by at most MAX_WORKERS threads.

    Returns at the monotonic ``deadline`` at the latest: a check not done by
    then gives ``late(target)``, and its thread is not waited for.
    """
    if not targets:
        return []
    pool = futures.ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(targets)),
                                      thread_name_prefix="zkpoll-check")
    try:
        calls = [pool.submit(check, t) for t in targets]
        futures.wait(calls, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # never wait for a straggler
    return [call.result() if call.done() and not call.cancelled() else late(target)
            for call, target in zip(calls, targets)]


def _left(deadline: float) -> float:
    """Seconds until the monotonic ``deadline``; TimeoutError when none are left."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# How far one check got; another thread reads it when the check is late.
_WAITING, _CONNECTING, _CONNECTED = "waiting", "connecting", "connected"


class _Attempt:
    """The phase of one endpoint's check: waiting, connecting or connected."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = _WAITING

    def unreachable(self, exc: BaseException | None = None) -> bool:
        """Whether failing now (with ``exc``; None: the deadline) means unreachable."""
        return self.phase == _CONNECTING and (exc is None or connect_failed(exc))


@dataclass(frozen=True)
class _HTTPResult:
    """Outcome of one GET: status 0 and an ``error`` when it failed."""

    timestamp: float
    status: int = 0
    elapsed: float | None = None  # seconds until the response headers
    error: str | None = None
    unreachable: bool = False  # failed before the TCP connection was up


def _tls_context() -> ssl.SSLContext:
    """What ``HTTPSConnection`` uses by default: verifying, ALPN ``http/1.1``."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


def _http_check(url: str, deadline: float, attempt: _Attempt) -> _HTTPResult:
    """GET ``url`` once, without following redirects, and time the headers.

    Each socket operation may only take the time left until ``deadline``.
    The TCP connect is made here, not by http.client, so that ``attempt``
    tells a failed connect (unreachable) from a failure once connected.
    """
    started = time.time()
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _HTTPResult(started, error=f"not an http(s) URL: {url!r}")
        host, https = parts.hostname, parts.scheme == "https"
        # An explicit port: http.client would misparse a bare IPv6 host.
        port = parts.port or (443 if https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tls = _tls_context() if https else None
        conn = (http.client.HTTPSConnection(host, port, context=tls) if tls is not None
                else http.client.HTTPConnection(host, port))
    except ValueError as exc:  # bad port, bad host encoding
        return _HTTPResult(started, error=_describe(exc))
    try:
        begin = time.perf_counter()
        timeout = _left(deadline)
        attempt.phase = _CONNECTING
        conn.sock = socket.create_connection((host, port), timeout)
        attempt.phase = _CONNECTED
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(_left(deadline))
        if tls is not None:
            conn.sock = tls.wrap_socket(conn.sock, server_hostname=host)
        conn.request("GET", path, headers={"User-Agent": _USER_AGENT, "Accept": "*/*",
                                           "Connection": "close"})
        conn.sock.settimeout(_left(deadline))
        response = conn.getresponse()
        return _HTTPResult(started, status=response.status, elapsed=time.perf_counter() - begin)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return _HTTPResult(started, error=_describe(exc), unreachable=attempt.unreachable(exc))
    finally:
        conn.close()


class _HTTPPollster(Pollster):
    """Base of the HTTP pollsters: one shared GET per URL per cycle."""

    meter: ClassVar[str]
    unit: ClassVar[str]
    sample_type: ClassVar[str] = GAUGE
    default_discovery = None

    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> list[Sample | Unreachable]:
        budget = _checks_budget(context)
        deadline = time.monotonic() + budget

        def attempt(url: str) -> _Attempt:  # shared, like the GET, by both meters
            return cycle_cached(context, f"zkpoll.pollsters.network:http-attempt:{url}",
                                _Attempt)

        def check(url: str) -> _HTTPResult:
            return cycle_cached(context, f"zkpoll.pollsters.network:http:{url}",
                                lambda: _http_check(url, deadline, attempt(url)))

        def late(url: str) -> _HTTPResult:
            return _HTTPResult(time.time(), error=f"no answer within {budget:.1f}s",
                               unreachable=attempt(url).unreachable())

        urls = _unique_ids(resources)
        out: list[Sample | Unreachable] = []
        for url, result in zip(urls, _concurrently(check, urls, deadline, late)):
            sample = self._sample(url, result)
            if result.unreachable:
                out.append(Unreachable(url, result.error or "unreachable", sample))
            elif sample is not None:
                out.append(sample)
        return out

    @abc.abstractmethod
    def _sample(self, url: str, result: _HTTPResult) -> Sample | None:
        """Return the sample of one URL's result, or None for no sample."""


class HTTPStatusPollster(_HTTPPollster):
    """``http.status``: the HTTP status code, 0 when no response came.

    A failed request has ``resource_metadata["error"]`` saying why.
    """

    meter = "http.status"
    unit = "status"

    def _sample(self, url: str, result: _HTTPResult) -> Sample | None:
        metadata = {"error": result.error} if result.error else {}
        return Sample(self.meter, self.sample_type, self.unit, result.status, url,
                      timestamp=result.timestamp, resource_metadata=metadata)


class HTTPResponseTimePollster(_HTTPPollster):
    """``http.response.time``: seconds from connecting to the response headers.

    A failed request gives no sample (a WARNING names the URL).
    """

    meter = "http.response.time"
    unit = "s"

    def _sample(self, url: str, result: _HTTPResult) -> Sample | None:
        if result.elapsed is None:
            LOG.warning("%s: GET %s failed: %s", self.meter, url, result.error)
            return None
        return Sample(self.meter, self.sample_type, self.unit, result.elapsed, url,
                      timestamp=result.timestamp)


def _parse_endpoint(resource: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``host:port``, ``[v6]:port`` or ``tcp://host:port``."""
    parts = urlsplit(resource if "://" in resource else f"tcp://{resource}")
    port = parts.port  # ValueError when out of range
    if parts.scheme != "tcp" or not parts.hostname or not port:
        raise ValueError(f"expected host:port or tcp://host:port, not {resource!r}")
    return parts.hostname, port


def _tcp_connect(host: str, port: int, deadline: float) -> tuple[float, str]:
    """Connect to ``host:port``; return ``(seconds, address)``, or raise OSError.

    Name resolution is not timed; each address it returns is tried until
    one accepts, all before the monotonic ``deadline``.
    """
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port,
                                                               type=socket.SOCK_STREAM):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(remaining)
            begin = time.perf_counter()
            try:
                sock.connect(sockaddr)
            except OSError as exc:
                error = exc
                continue
            return time.perf_counter() - begin, sockaddr[0]
    raise error


class TCPConnectTimePollster(Pollster):
    """``tcp.connect.time``: seconds to open a TCP connection to ``host:port``.

    A failed connection gives no sample (a WARNING names the endpoint); one
    that is refused, finds no route or name, or times out gives an
    :class:`~zkpoll.plugin.Unreachable` without a sample.
    """

    meter = "tcp.connect.time"
    unit = "s"
    sample_type = GAUGE
    default_discovery = None

    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> list[Sample | Unreachable]:
        budget = _checks_budget(context)
        deadline = time.monotonic() + budget
        endpoints = _unique_ids(resources)
        attempts = {resource: _Attempt() for resource in endpoints}

        def check(resource: str) -> Sample | Unreachable | None:
            timestamp, attempt = time.time(), attempts[resource]
            try:
                host, port = _parse_endpoint(resource)
                _left(deadline)  # no time left before its turn: nothing tried
                attempt.phase = _CONNECTING
                elapsed, address = _tcp_connect(host, port, deadline)
            except (OSError, ValueError) as exc:
                LOG.warning("%s: connect to %s failed: %s", self.meter, resource,
                            _describe(exc))
                return Unreachable(resource, _describe(exc)) if attempt.unreachable(exc) \
                    else None
            return Sample(self.meter, self.sample_type, self.unit, elapsed, resource,
                          timestamp=timestamp, resource_metadata={"address": address})

        def late(resource: str) -> Sample | Unreachable | None:
            reason = f"no answer within {budget:.1f}s"
            LOG.warning("%s: connect to %s failed: %s", self.meter, resource, reason)
            return Unreachable(resource, reason) if attempts[resource].unreachable() else None

        samples = _concurrently(check, endpoints, deadline, late)
        return [s for s in samples if s is not None]
