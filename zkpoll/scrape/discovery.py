"""``prometheus_sd``: the scrape targets of a source, from its ``scrape:`` section.

The discovery of the ``prometheus.scrape`` pollster.  Each call (once per
cycle) returns the targets of the calling source as resources
``{"id": target.id, "target": ScrapeTarget}``, built by
:func:`~zkpoll.scrape.targets.build_targets` from the source's

* ``static_configs``: as given;
* ``file_sd_configs``: every file matching the globs, re-read only when its
  (mtime, size) changed since the last read;
* ``http_sd_configs``: a GET of the URL (Prometheus's HTTP SD format) at most
  once per ``refresh_interval``; each group gets ``__meta_url``.

A file or URL that fails keeps its last good target groups; the failure is
counted (:meth:`PrometheusSD.errors`) and logged once per streak: one ERROR
when it starts (file or URL and reason, never credentials), one INFO when it
ends.  A file that does not parse is not read again until it changes; one
that cannot be read is retried (and counted) at every call.  Targets that
cannot be built are skipped with one WARNING each when they appear, and one
INFO when none is left.  I/O lives here; parsing and relabelling are in
:mod:`zkpoll.scrape.targets`.

State is kept per source (one instance serves every source of an agent);
calls for different sources run in parallel, calls for one source in turn.
"""

from __future__ import annotations

import base64
import glob
import http.client
import logging
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from zkpoll.exceptions import ConfigError, PluginError
from zkpoll.plugin import Discovery, PollingContext
from zkpoll.scrape.config import FileSD, HttpSD, ScrapeConfig
from zkpoll.scrape.targets import TargetGroup, build_targets, parse_file_sd
from zkpoll.version import __version__

__all__ = ["DEFAULT_HTTP_TIMEOUT", "MAX_HTTP_SD_BYTES", "PrometheusSD", "fetch_http_sd"]

LOG = logging.getLogger(__name__)

#: Seconds an HTTP SD request may take when the entry sets no ``scrape_timeout``.
DEFAULT_HTTP_TIMEOUT = 10.0
#: Largest HTTP SD answer read, in bytes.
MAX_HTTP_SD_BYTES = 16 * 2**20
FILE_SD, HTTP_SD = "file_sd", "http_sd"
_MAX_PROBLEM_LINES = 10


@dataclass
class _Feed:
    """The last good groups of one file or URL, and its error streak."""

    groups: list[TargetGroup] = field(default_factory=list)
    error: str | None = None
    stamp: tuple[int, int] | None = None   #: file: (mtime_ns, size) last read
    due: float = -math.inf                 #: URL: when it may be fetched again


@dataclass
class _SourceState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: dict[str, _Feed] = field(default_factory=dict)
    empty_globs: set[str] = field(default_factory=set)
    urls: dict[HttpSD, _Feed] = field(default_factory=dict)
    problems: frozenset[str] = frozenset()


class PrometheusSD(Discovery):
    """``prometheus_sd``: the targets of the calling source's ``scrape:`` section.

    :param clock: monotonic seconds, for the ``refresh_interval`` of HTTP SD
    """

    def __init__(self, conf: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(conf)
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: dict[str, _SourceState] = {}
        self._errors: dict[tuple[str, str, str], int] = {}

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        scrape: ScrapeConfig | None = context.scrape
        if scrape is None:
            raise PluginError(f"source {context.source!r}: prometheus_sd needs the source to "
                              "have a scrape: section (static_configs, file_sd_configs or "
                              "http_sd_configs)")
        if param:
            raise PluginError("prometheus_sd takes no parameter (prometheus_sd://): the "
                              "targets come from the source's scrape: section")
        source = context.source
        with self._lock:
            state = self._sources.setdefault(source, _SourceState())
        with state.lock:
            groups = [*scrape.static_configs,
                      *self._file_groups(source, state, scrape.file_sd),
                      *self._http_groups(source, state, scrape.http_sd, context.timeout)]
            targets, problems = build_targets(groups, scrape.job)
            self._note_problems(source, state, problems)
        return list({t.id: {"id": t.id, "target": t} for t in targets}.values())

    def errors(self) -> dict[tuple[str, str, str], int]:
        """Failed refreshes so far, by (source, ``file_sd``/``http_sd``, file or URL)."""
        with self._lock:
            return dict(self._errors)

    def refresh_failures(self) -> dict[tuple[str, str], int]:
        """Failed refreshes so far, by (source, mechanism): the shape of
        ``zkpoll_sd_refresh_failures_total{source,mechanism}``."""
        out: dict[tuple[str, str], int] = {}
        for (source, mechanism, _), count in self.errors().items():
            out[source, mechanism] = out.get((source, mechanism), 0) + count
        return out

    # --- file_sd -------------------------------------------------------------
    def _file_groups(self, source: str, state: _SourceState,
                     configs: Sequence[FileSD]) -> list[TargetGroup]:
        seen: dict[str, None] = {}
        for pattern in dict.fromkeys(p for sd in configs for p in sd.files):
            paths = sorted(glob.glob(pattern))
            if paths:
                state.empty_globs.discard(pattern)
            elif pattern not in state.empty_globs:
                state.empty_globs.add(pattern)
                LOG.info("source %s: file_sd: no file matches %s (no targets from it)",
                         source, pattern)
            else:
                LOG.debug("source %s: file_sd: no file matches %s", source, pattern)
            seen.update(dict.fromkeys(paths))
        for gone in set(state.files) - set(seen):
            LOG.debug("source %s: file_sd: %s no longer matched", source, gone)
            del state.files[gone]
        groups: list[TargetGroup] = []
        for path in seen:
            groups.extend(self._read_file(source, state.files.setdefault(path, _Feed()), path))
        return groups

    def _read_file(self, source: str, feed: _Feed, path: str) -> list[TargetGroup]:
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == feed.stamp:
                return feed.groups
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:  # retried next call: a permission fix changes neither
            self._failed(source, FILE_SD, path, feed, f"cannot read: {exc.strerror or exc}")
            return feed.groups
        feed.stamp = stamp
        try:
            groups = parse_file_sd(data, path)
        except ConfigError as exc:  # not re-read until the file changes
            reason = str(exc).removeprefix(f"{path}: ")
            self._failed(source, FILE_SD, path, feed, reason)
            return feed.groups
        self._succeeded(source, FILE_SD, path, feed, groups)
        return groups

    # --- http_sd -------------------------------------------------------------
    def _http_groups(self, source: str, state: _SourceState, configs: Sequence[HttpSD],
                     polling_timeout: float) -> list[TargetGroup]:
        for gone in set(state.urls) - set(configs):
            del state.urls[gone]
        groups: list[TargetGroup] = []
        for sd in dict.fromkeys(configs):
            feed = state.urls.setdefault(sd, _Feed())
            now = self._clock()
            if now >= feed.due:
                feed.due = now + sd.refresh_interval
                timeout = sd.client.timeout or DEFAULT_HTTP_TIMEOUT
                if polling_timeout > 0:
                    timeout = min(timeout, polling_timeout)
                try:
                    fetched = fetch_http_sd(sd, timeout)
                except PluginError as exc:
                    self._failed(source, HTTP_SD, _redact(sd.url), feed, str(exc))
                else:
                    self._succeeded(source, HTTP_SD, _redact(sd.url), feed, fetched)
            groups.extend(feed.groups)
        return groups

    # --- streaks -------------------------------------------------------------
    def _failed(self, source: str, mechanism: str, where: str, feed: _Feed,
                reason: str) -> None:
        reason = " ".join(reason.split())  # one line (YAML errors span several)
        with self._lock:
            key = (source, mechanism, where)
            self._errors[key] = self._errors.get(key, 0) + 1
        if feed.error is None:
            LOG.error("source %s: %s %s: %s; keeping the %d target group(s) last read from it "
                      "until it recovers", source, mechanism, where, reason, len(feed.groups))
        feed.error = reason

    @staticmethod
    def _succeeded(source: str, mechanism: str, where: str, feed: _Feed,
                   groups: list[TargetGroup]) -> None:
        if feed.error is not None:
            LOG.info("source %s: %s %s: recovered (%d target group(s))", source, mechanism,
                     where, len(groups))
        feed.error = None
        feed.groups = groups

    @staticmethod
    def _note_problems(source: str, state: _SourceState, problems: Iterable[str]) -> None:
        now = frozenset(problems)
        new = sorted(now - state.problems)
        for line in new[:_MAX_PROBLEM_LINES]:
            LOG.warning("source %s: skipping a target: %s", source, line)
        if len(new) > _MAX_PROBLEM_LINES:
            LOG.warning("source %s: skipping %d more target(s) that cannot be built", source,
                        len(new) - _MAX_PROBLEM_LINES)
        if state.problems and not now:
            LOG.info("source %s: every discovered target can be built again", source)
        state.problems = now


def _redact(url: str) -> str:
    """``url`` without its user part (for logs, counters and ``__meta_url``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def fetch_http_sd(sd: HttpSD, timeout: float) -> list[TargetGroup]:
    """GET ``sd.url`` and parse it as Prometheus HTTP SD (a JSON list of
    ``{targets, labels}``); each group gets ``__meta_url``.

    :raises PluginError: connection or TLS failure, a status other than 200,
        a Content-Type other than application/json, a bad document.
    """
    url = _redact(sd.url)
    status, ctype, body = _get(sd, timeout)
    if status != 200:
        raise PluginError(f"HTTP {status}")
    if ctype.partition(";")[0].strip().lower() != "application/json":
        raise PluginError(f"Content-Type {ctype or 'missing'!r}, expected application/json")
    try:
        groups = parse_file_sd(body, url, fmt="json")
    except ConfigError as exc:
        raise PluginError(str(exc).removeprefix(f"{url}: ")) from None
    out = []
    for group in groups:
        labels = {k: v for k, v in group.labels.items() if k != "__meta_filepath"}
        labels["__meta_url"] = url
        out.append(TargetGroup(group.targets, labels, group.source))
    return out


def _get(sd: HttpSD, timeout: float) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one GET, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(sd.url)
    https = parts.scheme == "https"
    try:
        host, port = parts.hostname or "", parts.port or (443 if https else 80)
    except ValueError as exc:  # a bad port
        raise PluginError(f"bad URL: {exc}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    tls: ssl.SSLContext | None = None
    if https:
        try:
            tls = sd.client.tls.context() if sd.client.tls else ssl.create_default_context()
        except ConfigError as exc:
            raise PluginError(str(exc)) from None
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.sock = socket.create_connection((host, port), timeout)
        conn.sock.settimeout(_left(deadline))
        if tls is not None:
            server_name = sd.client.tls.server_name if sd.client.tls else None
            conn.sock = tls.wrap_socket(conn.sock, server_hostname=server_name or host)
        conn.request("GET", path, headers={
            "User-Agent": f"zkpoll/{__version__}", "Accept": "application/json",
            "X-Prometheus-Refresh-Interval-Seconds": f"{sd.refresh_interval:g}",
            **_url_auth(parts.username, parts.password), **sd.client.headers()})
        conn.sock.settimeout(_left(deadline))  # each later read: at most this long
        response = conn.getresponse()
        chunks, size = [], 0
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            if size > MAX_HTTP_SD_BYTES:
                raise PluginError(f"answer larger than {MAX_HTTP_SD_BYTES} bytes")
            if time.monotonic() > deadline:
                raise PluginError(f"no complete answer within {timeout:g}s")
            chunks.append(chunk)
        return response.status, response.getheader("Content-Type") or "", b"".join(chunks)
    except (OSError, http.client.HTTPException) as exc:  # refused, timeouts, TLS, resets
        raise PluginError(_describe(exc, timeout)) from exc
    except ValueError as exc:  # its text may hold a header's value: a credential
        raise PluginError("cannot send the request (a host, path or header value that "
                          "HTTP cannot carry)") from exc
    finally:
        conn.close()


def _url_auth(user: str | None, password: str | None) -> dict[str, str]:
    """Basic auth from the URL's user part, as Go's HTTP client sends it."""
    if user is None:
        return {}
    token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _left(deadline: float) -> float:
    """Seconds until ``deadline``; a socket timeout of 0 would mean non-blocking."""
    return max(deadline - time.monotonic(), 0.001)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"
