"""The agent's HTTP endpoint: ``/metrics``, ``/ownership``, ``/samples``, ``/sd``, ``/healthz``.

Off unless ``[api] bind`` is set (``127.0.0.1:9464``, say: keep it on
loopback or behind a firewall; it has no authentication).

* ``/metrics``: Prometheus exposition format (prometheus_client), read from
  the agent's state at scrape time.
* ``/ownership``: JSON, the resources this agent owns per source in its
  latest cycle.
* ``/samples?meter=NAME``: JSON, the newest sample of each resource of
  that meter this agent polled (what ``threshold`` alarms read; without
  ``meter``, the meters it has samples of).
* ``/sd/SOURCE``: JSON in Prometheus's ``http_sd`` format, the scrape
  targets this agent owns in the current cycle of a source polling
  ``prometheus.allocate`` (:mod:`zkpoll.endpoint.sd`, docs/allocator.md);
  ``/sd`` lists those sources.
* ``/healthz``: 200 when the agent polls its share, 503 (with the reason)
  while it is fenced, withdrawn or stopping.  The JSON body says
  ``"status": "degraded"`` (still 200: the agent polls) while a spooled
  publisher has been failing for longer than ``[publisher] degraded_after``
  (its samples wait in the spool) or a publisher without a spool lost samples
  in its latest batch (from that batch until one loses nothing), and shows
  every publisher's backlog, age of the oldest undelivered sample, last
  success, drops and lost batches by reason.
  ``/healthz?degraded=503`` answers 503 when degraded too, for monitors that
  only read the status code.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oslo_config import cfg

from zkpoll.endpoint import metrics, sd
from zkpoll.endpoint.view import AgentView
from zkpoll.exceptions import ConfigError

__all__ = ["OPTS", "ApiServer", "PrefixRoute", "Route", "agent_prefix_routes", "agent_routes",
           "json_body", "parse_bind"]

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt("bind",
               help="HOST:PORT of the agent's HTTP endpoint (/metrics, /ownership, /samples, "
                    "/sd, /healthz), for example 127.0.0.1:9464. Unset: no endpoint. It has "
                    "no authentication: keep it on loopback or a management network."),
]


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to a tuple; ConfigError naming the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[api] bind: {text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]") or "127.0.0.1", int(port)


#: ``route(query) -> (status, body, content type)``; ``query`` is the raw query string.
Route = Callable[[str], tuple[int, bytes, str]]
#: ``route(rest, query)`` for every path under a prefix (``/sd/`` gets ``rest`` = ``SOURCE``).
PrefixRoute = Callable[[str, str], tuple[int, bytes, str]]


def json_body(status: int, payload: Any) -> tuple[int, bytes, str]:
    """A route answer carrying ``payload`` as JSON."""
    return status, json.dumps(payload, indent=1).encode(), "application/json"


def agent_routes(agent: AgentView) -> dict[str, Route]:
    """The polling agent's paths."""

    def metrics_route(query: str) -> tuple[int, bytes, str]:
        body, ctype = metrics.render(agent)
        return 200, body, ctype

    def health_route(query: str) -> tuple[int, bytes, str]:
        status, body = metrics.health_report(agent)
        if body["status"] == "degraded" and "degraded=503" in query.split("&"):
            status = 503
        return json_body(status, body)

    def samples_route(query: str) -> tuple[int, bytes, str]:
        latest = getattr(agent, "latest", None)
        meter = urllib.parse.parse_qs(query).get("meter", [""])[0]
        if latest is None:
            return json_body(404, {"error": "this agent keeps no samples"})
        if not meter:
            return json_body(200, {"meters": latest.meters()})
        return json_body(200, {"meter": meter, "samples": latest.meter(meter)})

    return {"/metrics": metrics_route,
            "/ownership": lambda query: json_body(200, metrics.ownership(agent)),
            "/healthz": health_route,
            "/samples": samples_route,
            "/sd": sd.sd_index(agent)}


def agent_prefix_routes(agent: AgentView) -> dict[str, PrefixRoute]:
    """The polling agent's paths under a prefix."""
    return {"/sd/": sd.sd_source(agent)}


class ApiServer:
    """A small threaded HTTP server in a daemon thread.

    :param agent: the polling agent (its paths: :func:`agent_routes`)
    :param bind: ``HOST:PORT``
    :param routes: other paths instead (the alarm evaluator's)
    :param prefixes: other paths under a prefix (with ``routes``)
    """

    def __init__(self, agent: AgentView | None, bind: str,
                 routes: Mapping[str, Route] | None = None,
                 prefixes: Mapping[str, PrefixRoute] | None = None) -> None:
        self.agent = agent
        host, port = parse_bind(bind)
        if routes is None:
            assert agent is not None, "give an agent or routes"
            routes = agent_routes(agent)
            prefixes = agent_prefix_routes(agent)
        handler = type("Handler", (_Handler,), {"routes": dict(routes),
                                                "prefixes": dict(prefixes or {})})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"[api] bind: cannot listen on {bind}: {exc}") from exc
        self.server.daemon_threads = True
        self.paths = sorted([*routes, *(f"{p}..." for p in prefixes or {})])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="zkpoll-api")

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()
        LOG.info("HTTP endpoint on http://%s/ (%s)", self.address, ", ".join(self.paths))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Route]
    prefixes: dict[str, PrefixRoute]

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        route = self.routes.get(path)
        if route is None:
            prefix = next((p for p in self.prefixes if path.startswith(p) and path != p), None)
            if prefix is None:
                self._send(*json_body(404, {"error": f"no such path {path}",
                                            "paths": sorted(self.routes)}))
                return
            route = functools.partial(self.prefixes[prefix], path[len(prefix):])
        try:
            self._send(*route(query))
        except Exception:  # one broken page must not kill the endpoint
            LOG.exception("api: %s failed", path)
            self._send(*json_body(500, {"error": f"{path} failed; see the agent's log"}))

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("api %s: " + format, self.client_address[0], *args)
