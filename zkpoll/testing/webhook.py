"""A real webhook receiver for tests and benchmarks: a threaded HTTP(S) server.

::

    from zkpoll.testing.webhook import WebhookReceiver

    with WebhookReceiver() as receiver:          # free loopback port
        url = receiver.url_for("/alarm")          # http://127.0.0.1:<port>/alarm
        receiver.answer(503)                      # an outage: every request gets 503
        ...
        receiver.answer(200)                      # healthy again
        receiver.wait_for(10, timeout=30)         # 10 deliveries (2xx answers)
        receiver.keys()                           # their Idempotency-Key headers

Every request is recorded (:meth:`requests`): time, path, headers, JSON
body and the status answered; :meth:`deliveries` are those answered 2xx.
``answer(status, count)`` answers ``status`` to the next ``count``
requests (all, when None), then 200 again; ``stall()`` holds requests
without answering (until :meth:`release`, ``answer`` or close) so that the
client times out; ``delay`` (seconds) is waited before each answer.
``WebhookReceiver(certificates=make_certificates(dir))`` serves HTTPS with
the server certificate (``require_client_cert=True``: clients must show a
certificate of the same CA).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from zkpoll.testing.tls import Certificates
from zkpoll.testing.waiting import wait_for

if TYPE_CHECKING:  # typing.Self is 3.11+; only type checkers import it
    from typing import Self

__all__ = ["STALLED", "Delivery", "WebhookReceiver"]

#: ``Delivery.status`` of a request held by :meth:`WebhookReceiver.stall`.
STALLED = 0


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got."""

    at: float                  #: time.time() when its body was read
    path: str                  #: request path (with query string, if any)
    headers: dict[str, str]
    body: Any                  #: parsed JSON, or the text when it is not JSON
    status: int                #: answered status; STALLED when held unanswered

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or None."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    @property
    def key(self) -> str | None:
        """The ``Idempotency-Key`` header."""
        return self.header("Idempotency-Key")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext | None = None
    receiver: WebhookReceiver

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:  # handshake in the request's thread, not the accept loop
            request.settimeout(10.0)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                with self.receiver._lock:
                    self.receiver.tls_failures += 1
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (timeout) is expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # http.server's name
        self.server.receiver._handle(self)

    do_PUT = do_POST


class WebhookReceiver:
    """Records webhook deliveries; can fail or stall on demand (module docstring)."""

    def __init__(self, *, host: str = "127.0.0.1", certificates: Certificates | None = None,
                 require_client_cert: bool = False, delay: float = 0.0) -> None:
        self.host = host
        self.certificates = certificates
        self.delay = delay
        self.tls_failures = 0
        self._lock = threading.Condition()
        self._requests: list[Delivery] = []
        self._status = 200
        self._remaining: int | None = None  # requests left to answer self._status
        self._released = threading.Event()
        self._released.set()
        self._httpd = _Server((host, 0), _Handler, bind_and_activate=True)
        self._httpd.receiver = self
        if certificates is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certificates.server_pem))
            if require_client_cert:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(certificates.ca))
            self._httpd.tls = context
        self.port: int = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> Self:
        """Serve in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                            daemon=True, name="webhook-receiver")
            self._thread.start()
        return self

    def close(self) -> None:
        """Release stalled requests, stop serving, close the socket."""
        self._released.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10.0)
            self._thread = None
        with contextlib.suppress(OSError):
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- where -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http(s)://host:port/``."""
        return self.url_for("/")

    def url_for(self, path: str = "/", query: str = "", userinfo: str = "") -> str:
        """The URL of ``path`` on this receiver (``query`` without ``?``)."""
        scheme = "https" if self.certificates is not None else "http"
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}{self.host}:{self.port}{path}" + (f"?{query}" if query else "")

    # --- behaviour ---------------------------------------------------------------
    def answer(self, status: int = 200, count: int | None = None) -> None:
        """Answer ``status`` to the next ``count`` requests (every one when None),
        then 200; releases stalled requests."""
        with self._lock:
            self._status, self._remaining = status, count
        self._released.set()

    def stall(self, count: int | None = None) -> None:
        """Hold the next ``count`` requests (every one when None) without answering
        until :meth:`release` (or :meth:`answer`, or close)."""
        with self._lock:
            self._status, self._remaining = STALLED, count
            self._released.clear()

    def release(self) -> None:
        """Let stalled requests go (they are then closed without an answer) and
        answer 200 from now on."""
        self.answer(200)

    # --- what arrived ------------------------------------------------------------
    def requests(self) -> list[Delivery]:
        """Every request so far, in arrival order (failed and stalled ones too)."""
        with self._lock:
            return list(self._requests)

    def deliveries(self) -> list[Delivery]:
        """The requests answered 2xx, in order."""
        return [d for d in self.requests() if 200 <= d.status < 300]

    def keys(self) -> list[str | None]:
        """``Idempotency-Key`` of each delivery, in order."""
        return [d.key for d in self.deliveries()]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        """Wait until at least ``count`` deliveries arrived; return them all.

        :raises AssertionError: not within ``timeout`` s (says how many did)
        """
        wait_for(lambda: len(self.deliveries()) >= count, timeout,
                 f"{count} deliveries at the webhook receiver",
                 diagnostics=lambda: f"{len(self.deliveries())} deliveries, "
                                     f"{len(self.requests())} requests")
        return self.deliveries()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[Delivery]:
        """Like :meth:`wait_for`, counting every request (whatever its answer)."""
        wait_for(lambda: len(self.requests()) >= count, timeout,
                 f"{count} requests at the webhook receiver",
                 diagnostics=lambda: f"{len(self.requests())} requests")
        return self.requests()

    # --- serving -----------------------------------------------------------------
    def _next_status(self) -> int:
        with self._lock:
            status = self._status
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._status, self._remaining = 200, None  # held ones stay held
            return status

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status = self._next_status()
        delivery = Delivery(time.time(), handler.path, dict(handler.headers.items()), body,
                            status)
        if status == STALLED:
            with self._lock:
                self._requests.append(delivery)
                self._lock.notify_all()
            self._released.wait()
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self._requests.append(delivery)
            self._lock.notify_all()
        payload = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "test"}'
        with contextlib.suppress(OSError):
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
