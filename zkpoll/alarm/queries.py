"""Where alarm datapoints come from: a Prometheus-compatible query API, or the
latest samples the polling agents serve on ``/samples``.

A query never raises for a data problem: it returns a
:class:`~zkpoll.alarm.rules.Datapoint` without values and with the error
(the rules count it as missing data, Aodh's behaviour).  Prometheus is asked
for the instant value *at the cycle's start* (``time=``), so re-evaluating a
cycle (catch-up after a crash) sees the same data the first attempt would.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.rules import Datapoint, reduce_samples
from zkpoll.exceptions import ConfigError
from zkpoll.version import __version__

__all__ = ["HTTPGetter", "PrometheusQuery", "SamplesQuery"]

LOG = logging.getLogger(__name__)
_MAX_BODY = 16 * 1024 * 1024


class HTTPGetter:
    """GET JSON from one HTTP(S) server over one kept-alive connection per thread."""

    def __init__(self, url: str, timeout: float, *, verify: bool = True,
                 ca_file: str | None = None, what: str = "URL") -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{what}: {url!r} is not an http(s)://HOST[:PORT] URL")
        self.url = url
        self.timeout = timeout
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._base = parts.path.rstrip("/")
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._ssl = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"{what}: cannot load CA file {ca_file!r}: {exc}") from exc
            if not verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(self._host, self._port,
                                                   timeout=self.timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def get(self, path: str, params: dict[str, str]) -> Any:
        """The status and decoded JSON body of ``GET <base><path>?<params>``.

        :raises OSError: connection failure, timeout, non-2xx status or a body
            that is not JSON (the message says which).
        """
        target = f"{self._base}{path}?{urllib.parse.urlencode(params)}"
        headers = {"Accept": "application/json", "User-Agent": f"zkpoll/{__version__}"}
        for attempt in (1, 2):  # a kept-alive connection the server closed: retry once
            conn = self._connection()
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                body = response.read(_MAX_BODY + 1)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 1 and isinstance(exc, (http.client.RemoteDisconnected,
                                                     ConnectionResetError,
                                                     BrokenPipeError)):
                    continue
                raise OSError(f"{type(exc).__name__}: {exc}") from exc
            break
        if len(body) > _MAX_BODY:
            conn.close()
            self._local.conn = None
            raise OSError(f"response larger than {_MAX_BODY} bytes")
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise OSError(f"HTTP {response.status}: body is not JSON: {body[:200]!r}") from exc
        if not 200 <= response.status < 300 and not isinstance(payload, dict):
            raise OSError(f"HTTP {response.status} {response.reason}")
        return _Answer(response.status, payload)


class _Answer:
    """An HTTP status and its JSON body."""

    __slots__ = ("payload", "status")

    def __init__(self, status: int, payload: Any) -> None:
        self.status = status
        self.payload = payload


class PrometheusQuery:
    """Instant queries against ``<url>/api/v1/query`` (Prometheus, Thanos, Mimir, ...)."""

    def __init__(self, url: str, timeout: float, verify: bool = True,
                 ca_file: str | None = None) -> None:
        self.http = HTTPGetter(url, timeout, verify=verify, ca_file=ca_file,
                               what="[alarm] prometheus_url")

    def __call__(self, alarm: AlarmDefinition, at: float) -> Datapoint:
        """The values of ``alarm.query`` at time ``at`` (no values on any failure)."""
        # Prometheus takes a duration or a float of seconds; "2.5s" is refused
        params = {"query": alarm.query, "time": f"{at:.3f}",
                  "timeout": f"{self.http.timeout:g}"}
        try:
            answer = self.http.get("/api/v1/query", params)
        except OSError as exc:
            return Datapoint(None, f"query failed: {exc}")
        return parse_query_answer(answer.status, answer.payload)


def parse_query_answer(status: int, payload: Any) -> Datapoint:
    """A Prometheus ``/api/v1/query`` answer as a datapoint (pure)."""
    if not isinstance(payload, dict):
        return Datapoint(None, f"HTTP {status}: unexpected body")
    if payload.get("status") != "success":
        error = payload.get("error") or f"HTTP {status}"
        return Datapoint(None, f"query refused: {payload.get('errorType', 'error')}: {error}")
    data = payload.get("data")
    if not isinstance(data, dict):
        return Datapoint(None, "answer without data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        values = _numbers([result[1]])
    elif kind == "vector" and isinstance(result, list):
        values = _numbers(item.get("value", [None, None])[1] for item in result
                          if isinstance(item, dict))
    else:
        return Datapoint(None, f"a {kind} result cannot be compared with a threshold "
                               "(use an instant vector or scalar expression)")
    return Datapoint(values or None)


def _numbers(raw: Iterable[Any]) -> tuple[float, ...]:
    """Prometheus sample values (strings) as floats; NaN and junk are no value."""
    out = []
    for text in raw:
        try:
            value = float(text)
        except (TypeError, ValueError):
            continue
        if not math.isnan(value):
            out.append(value)
    return tuple(out)


class SamplesQuery:
    """The latest samples of one meter from the polling agents' ``/samples`` endpoints.

    Each agent serves the samples it polled itself (its slice); a resource
    polled by two agents across a handover counts once, with the newest
    sample.  Samples older than the alarm's maximum age count as none.
    """

    def __init__(self, endpoints: Sequence[str], timeout: float,
                 max_age: float | None = None) -> None:
        self.getters = [HTTPGetter(url, timeout, what="[alarm] sample_endpoints")
                        for url in endpoints]
        self.max_age = max_age

    def __call__(self, alarm: AlarmDefinition, at: float, now: float | None = None) -> Datapoint:
        if not self.getters:
            return Datapoint(None, "no [alarm] sample_endpoints configured")
        latest: dict[str, tuple[float, float]] = {}  # resource -> (timestamp, volume)
        errors = []
        for getter in self.getters:
            try:
                answer = getter.get("/samples", {"meter": alarm.meter})
            except OSError as exc:
                errors.append(f"{getter.url}: {exc}")
                continue
            for resource, stamp, volume in _samples(answer.payload):
                if resource not in latest or stamp > latest[resource][0]:
                    latest[resource] = (stamp, volume)
        if errors and len(errors) == len(self.getters):
            return Datapoint(None, "no sample endpoint answered: " + "; ".join(errors))
        max_age = self.max_age if self.max_age is not None else 2 * alarm.evaluation_interval
        oldest = (time.time() if now is None else now) - max_age
        wanted = None if "*" in alarm.resources else set(alarm.resources)
        values = [volume for resource, (stamp, volume) in sorted(latest.items())
                  if stamp >= oldest and (wanted is None or resource in wanted)]
        reduced = reduce_samples(values, alarm.aggregation)
        return Datapoint(reduced, None if reduced else
                         ("; ".join(errors) if errors else "no recent sample"))


def _samples(payload: Any) -> Iterable[tuple[str, float, float]]:
    if not isinstance(payload, dict) or not isinstance(payload.get("samples"), list):
        return
    for item in payload["samples"]:
        try:
            yield str(item["resource_id"]), float(item["timestamp"]), float(item["volume"])
        except (KeyError, TypeError, ValueError):
            continue
