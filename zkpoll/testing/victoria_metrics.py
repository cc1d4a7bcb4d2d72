"""A real single-node VictoriaMetrics on a free loopback port, for tests and benchmarks.

It runs ``/usr/bin/victoria-metrics`` (Debian ``victoria-metrics``) as our
own process: ``-storageDataPath`` in its directory, ``-retentionPeriod=1d``,
``-httpListenAddr`` on 127.0.0.1, and deliberately **no deduplication**
(``-dedup.minScrapeInterval=0s``), so that the same sample written by two
scrapers is stored twice and can be counted::

    with ManagedVictoriaMetrics() as vm:
        vm.write_url                      # http://127.0.0.1:P/api/v1/write (vmagent, Prometheus)
        vm.remote_write_url               # the same as a prometheus+remote-write:// publisher URL
        vm.import_samples({"__name__": "m", "job": "x"}, [(ts_ms, 1.0)])
        vm.flush()                        # make recent writes searchable now
        vm.export('{job="x"}')            # {sorted labels: [(ts ms, value), ...]}, raw

What :meth:`ManagedVictoriaMetrics.export` returns (measured on 1.79.5):

- every raw sample, duplicates included: the same series written twice at
  the same timestamp, with the same value or not, in one request or two,
  comes back twice; VictoriaMetrics keeps all of them (no dedup) and
  :meth:`export` lists each one;
- samples of a series ordered by timestamp; among equal timestamps the order
  is unspecified (not the write order; compare them as multisets);
- an ordinary NaN value is dropped on ingestion; a Prometheus stale marker
  (the NaN a scraper writes when a target vanishes) is kept, exported as
  ``null``, and returned here as a NaN.

Two traps this class hides: a write is searchable only after the next
internal flush (up to ~10 s) unless ``/internal/force_flush`` is called
(:meth:`flush`), and ``/api/v1/export`` without ``end`` stops at the current
*second*, hiding the samples of the last second; :meth:`export` therefore
always passes an ``end`` an hour ahead. Count samples with :meth:`export`:
it is the raw, duplicate-preserving view (``/api/v1/query`` computes on
top of the same samples, with lookback and staleness rules).
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer

__all__ = ["Labels", "ManagedVictoriaMetrics", "Series"]

#: A series key: its labels (``__name__`` included) sorted by name.
Labels = tuple[tuple[str, str], ...]
#: Exported series: {labels: [(timestamp ms, value), ...]}.
Series = dict[Labels, list[tuple[int, float]]]

_AHEAD = 3600.0  # seconds past now that export/series_count read up to


class ManagedVictoriaMetrics(ManagedServer):
    """One single-node VictoriaMetrics (override the binary with ``ZKPOLL_VICTORIA_METRICS``)."""

    program = "victoria-metrics"
    env_var = "ZKPOLL_VICTORIA_METRICS"
    package = "victoria-metrics"
    scheme = "prometheus+remote-write"
    ready_path = "/health"
    start_timeout = 30.0

    @property
    def http_url(self) -> str:
        """``http://<host>:<port>``, the root of the HTTP API."""
        return f"http://{self.address}"

    @property
    def write_url(self) -> str:
        """The plain ``http://`` remote-write URL (for vmagent and Prometheus)."""
        return f"{self.http_url}/api/v1/write"

    @property
    def remote_write_url(self) -> str:
        """The ``prometheus+remote-write://`` publisher URL of this server
        (as :attr:`ManagedPrometheus.remote_write_url`)."""
        return f"{self.scheme}://{self.address}/api/v1/write"

    def command(self) -> list[str]:
        return [self.find_binary(), f"-httpListenAddr={self.address}",
                f"-storageDataPath={self._dir / 'data'}", "-retentionPeriod=1d",
                "-dedup.minScrapeInterval=0s",   # keep duplicates: tests count them
                "-search.latencyOffset=0s",      # the newest samples are queryable at once
                "-search.disableCache",          # no response cache hiding fresh samples
                "-memory.allowedPercent=20", "-loggerLevel=WARN"]


    def request(self, path: str, params: Mapping[str, Any] | None = None,
                data: bytes | None = None, timeout: float = 30.0) -> bytes:
        """GET (or POST ``data`` to) ``path`` with query ``params``; the body of the answer.

        :raises ZkpollError: an HTTP error or no answer (the cause is kept).
        """
        query = urllib.parse.urlencode(params or {}, doseq=True)
        url = f"{self.http_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data),
                                        timeout=timeout) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            raise ZkpollError(f"VictoriaMetrics {path}: HTTP {exc.code}: "
                              f"{exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise ZkpollError(f"VictoriaMetrics {path}: {exc}") from exc

    def flags(self) -> dict[str, str]:
        """The flags set on the command line, as ``/flags`` shows them ({name: value})."""
        out = {}
        for line in self.request("/flags").decode().splitlines():
            name, _, value = line.lstrip("-").partition("=")
            out[name] = value.strip('"')
        return out

    def flush(self) -> None:
        """Make every write acknowledged so far visible to :meth:`export` at once."""
        self.request("/internal/force_flush")

    def import_samples(self, labels: Mapping[str, str],
                       samples: Iterable[tuple[int, float]]) -> None:
        """Write ``samples`` [(timestamp ms, value)] of one series through ``/api/v1/import``."""
        points = list(samples)
        line = json.dumps({"metric": dict(labels), "values": [v for _, v in points],
                           "timestamps": [t for t, _ in points]})
        self.request("/api/v1/import", data=line.encode() + b"\n")

    def export(self, match: str, start: float | None = None,
               end: float | None = None) -> Series:
        """Every raw sample of the series matching ``match`` between ``start`` and
        ``end`` (epoch seconds; default: everything up to an hour from now).

        Returns {sorted labels: [(timestamp ms, value), ...]}, duplicates kept,
        ordered by timestamp (see the module docstring). Call :meth:`flush`
        first to see the latest writes.
        """
        params = {"match[]": match, "start": f"{start or 0:.3f}",
                  "end": f"{time.time() + _AHEAD if end is None else end:.3f}"}
        out: Series = {}
        for line in self.request("/api/v1/export", params).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = tuple(sorted(row["metric"].items()))
            values = [math.nan if v is None else float(v) for v in row["values"]]
            out.setdefault(key, []).extend(zip(row["timestamps"], values))
        for points in out.values():
            points.sort(key=lambda point: point[0])  # stable: lines are blocks, merged here
        return out

    def series_count(self, match: str, start: float | None = None) -> int:
        """How many distinct series match ``match`` (since ``start``, default a day ago)."""
        params = {"match[]": match,
                  "start": f"{time.time() - 86400 if start is None else start:.3f}",
                  "end": f"{time.time() + _AHEAD:.3f}"}
        payload = json.loads(self.request("/api/v1/series", params))
        if payload.get("status") != "success":
            raise ZkpollError(f"VictoriaMetrics /api/v1/series: {payload}")
        return len(payload["data"])
