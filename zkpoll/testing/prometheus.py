"""A real Prometheus server (remote-write receiver) on a free loopback port, for tests.

It runs ``/usr/bin/prometheus`` (Debian ``prometheus``) as our own process,
not the system service: its own ``--config.file``, ``--storage.tsdb.path``
in its directory, ``--web.listen-address`` on 127.0.0.1 and
``--web.enable-remote-write-receiver``.  It scrapes nothing and accepts
out-of-order samples up to ``out_of_order_time_window`` (2 h), as a
Prometheus fed by several agents with spools must::

    with ManagedPrometheus() as prom:
        url = prom.remote_write_url     # a prometheus+remote-write:// publisher URL
        prom.stop(); prom.start()       # same port, same TSDB
        prom.samples('{__name__="m"}')  # {labels: {timestamp ms: value}}
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer

__all__ = ["ManagedPrometheus"]

_CONFIG = """\
global:
  scrape_interval: 1h
  evaluation_interval: 1h
storage:
  tsdb:
    out_of_order_time_window: 2h
"""


class ManagedPrometheus(ManagedServer):
    """One Prometheus (override the binary with ``ZKPOLL_PROMETHEUS``)."""

    program = "prometheus"
    env_var = "ZKPOLL_PROMETHEUS"
    package = "prometheus"
    scheme = "prometheus+remote-write"
    ready_path = "/-/ready"
    start_timeout = 60.0

    @property
    def remote_write_url(self) -> str:
        """The ``prometheus+remote-write://`` publisher URL of this server."""
        return f"{self.scheme}://{self.address}/api/v1/write"

    def command(self) -> list[str]:
        config = self._dir / "prometheus.yml"
        config.write_text(_CONFIG)
        return [self.find_binary(), f"--config.file={config}",
                f"--storage.tsdb.path={self._dir / 'data'}",
                f"--web.listen-address={self.address}", "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]


    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` with ``params``; the ``data`` of the answer."""
        query = urllib.parse.urlencode(params)
        url = f"http://{self.address}/api/v1/{path}?{query}"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                payload = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise ZkpollError(f"Prometheus {path}: HTTP {exc.code}: {exc.read()[:300]!r}") \
                from exc
        if payload.get("status") != "success":
            raise ZkpollError(f"Prometheus {path}: {payload}")
        return payload["data"]

    def samples(self, selector: str, window: str = "2h",
                at: float | None = None) -> dict[tuple[tuple[str, str], ...],
                                                 list[tuple[int, float]]]:
        """Every raw sample of the series matching ``selector`` in the last ``window``.

        Returns {sorted labels: [(timestamp ms, value), ...]}, read with a
        range-vector instant query (``selector[window]``), so each stored
        point appears once per (series, timestamp) as Prometheus holds it.
        """
        params: dict[str, Any] = {"query": f"{selector}[{window}]"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for series in data["result"]:
            key = tuple(sorted(series["metric"].items()))
            out[key] = [(round(float(t) * 1000), float(v)) for t, v in series["values"]]
        return out
