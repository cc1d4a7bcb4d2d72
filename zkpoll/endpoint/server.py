"""The agent's HTTP endpoint: ``/metrics``, ``/ownership``, ``/healthz``.

Off unless ``[api] bind`` is set (``127.0.0.1:9464``, say: keep it on
loopback or behind a firewall; it has no authentication).

* ``/metrics``: Prometheus exposition format (prometheus_client), read from
  the agent's state at scrape time.
* ``/ownership``: JSON, the resources this agent owns per source in its
  latest cycle.
* ``/healthz``: 200 when the agent polls its share, 503 (with the reason)
  while it is fenced, withdrawn or stopping.  The JSON body says
  ``"status": "degraded"`` (still 200: the agent polls and its samples wait
  in the spool) while a publisher has been failing for longer than
  ``[publisher] degraded_after``, and shows every publisher's backlog, age
  of the oldest undelivered sample, last success and drops by reason.
  ``/healthz?degraded=503`` answers 503 when degraded too, for monitors that
  only read the status code.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oslo_config import cfg

from zkpoll.endpoint import metrics
from zkpoll.endpoint.view import AgentView
from zkpoll.exceptions import ConfigError

__all__ = ["OPTS", "ApiServer", "parse_bind"]

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.StrOpt("bind",
               help="HOST:PORT of the agent's HTTP endpoint (/metrics, /ownership, "
                    "/healthz), for example 127.0.0.1:9464. Unset: no endpoint. It has "
                    "no authentication: keep it on loopback or a management network."),
]


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) to a tuple; ConfigError naming the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"[api] bind: {text!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]") or "127.0.0.1", int(port)


class ApiServer:
    """A small threaded HTTP server in a daemon thread."""

    def __init__(self, agent: AgentView, bind: str) -> None:
        self.agent = agent
        host, port = parse_bind(bind)
        handler = type("Handler", (_Handler,), {"agent": agent})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"[api] bind: cannot listen on {bind}: {exc}") from exc
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name="zkpoll-api")

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()
        LOG.info("HTTP endpoint on http://%s/ (/metrics, /ownership, /healthz)", self.address)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    agent: AgentView

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/metrics":
            body, ctype = metrics.render(self.agent)
            self._send(200, body, ctype)
        elif path == "/ownership":
            self._json(200, metrics.ownership(self.agent))
        elif path == "/healthz":
            status, body = metrics.health_report(self.agent)
            if body["status"] == "degraded" and "degraded=503" in query.split("&"):
                status = 503
            self._json(status, body)
        else:
            self._json(404, {"error": f"no such path {path}",
                             "paths": ["/metrics", "/ownership", "/healthz"]})

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload, indent=1).encode(), "application/json")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("api %s: " + format, self.client_address[0], *args)
