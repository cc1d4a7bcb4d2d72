"""Many Prometheus scrape targets served by one process, for scraper tests and benchmarks.

Target ``i`` is ``127.a.b.c:PORT``: every target has its own loopback
address and all share one port, like a fleet of node_exporters. Linux
answers the whole 127.0.0.0/8 on ``lo``, but a socket bound to 127.0.0.1
accepts only 127.0.0.1, and binding 0.0.0.0 would expose the targets to the
network; so the server binds one listening socket per address (measured:
12 ms for 1,000, 110 ms for 5,000; one file descriptor each) and serves
them all from one ``selectors`` loop (epoll). ``IP_FREEBIND`` does not help (it still binds one
address) and ``IP_TRANSPARENT`` needs CAP_NET_ADMIN and TPROXY rules.

Each target serves ``GET /metrics`` (see :mod:`zkpoll.testing._exposition`):
about 1,000 series by default, OpenMetrics when ``Accept`` prefers
``application/openmetrics-text`` (ending ``# EOF``), text 0.0.4 otherwise,
gzip when ``Accept-Encoding`` has it, HTTP/1.1 keep-alive. Counters grow on
every request a target receives.

Control channel: a small HTTP endpoint on 127.0.0.1 (``--control``), served
by the same loop (so counts and faults need no lock there)::

    GET  /ready                                  200 once every target is bound
    GET  /targets                                ["127.1.0.1:PORT", ...]
    GET  /counts                                 {target: /metrics requests received}
    GET  /faults                                 {target: [mode, seconds]}
    POST /fault?target=T&mode=M[&seconds=S]      M: ok, error (HTTP 500), hang (answer
                                                 only after S s, default 3600), down
                                                 (listener and connections closed)

Run it with ``python -m zkpoll.testing.exposition_server --targets 1000
--control 127.0.0.1:PORT``, or through :class:`ManagedExpositionServer`
(:mod:`zkpoll.testing.exposition_control`), which runs it as a child process.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import selectors
import socket
import sys
import threading
import time
import urllib.parse
from contextlib import suppress

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._exposition import CONTENT_TYPES, Payload, wants_openmetrics

__all__ = ["FAULT_MODES", "ExpositionServer", "main", "target_addresses"]

#: Fault modes of a target (``ok`` clears the fault).
FAULT_MODES = ("ok", "error", "hang", "down")
_MAX_HEADER = 16384
_BACKLOG = 128
_WAKE = object()  # selector data of the loop's wake-up socket


def target_addresses(count: int, first: str = "127.1.0.1") -> list[str]:
    """``count`` loopback addresses from ``first`` up, skipping ``x.y.z.0`` and ``x.y.z.255``."""
    out: list[str] = []
    address = ipaddress.IPv4Address(first)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    while len(out) < count:
        if address not in loopback:
            raise ZkpollError(f"{count} targets from {first} leave 127.0.0.0/8")
        if str(address).split(".")[-1] not in ("0", "255"):
            out.append(str(address))
        address += 1
    return out


class _Conn:
    """One accepted connection: what it read, what it still has to send."""

    __slots__ = ("close_after", "inbuf", "out", "parked", "sock", "target")

    def __init__(self, sock: socket.socket, target: str | None) -> None:
        self.sock = sock
        self.target = target        # None: a control connection
        self.inbuf = bytearray()
        self.out = memoryview(b"")
        self.close_after = False
        self.parked = False         # a hung answer is pending: read nothing more


class ExpositionServer:
    """``targets`` scrape targets and a control endpoint in one selector loop.

    :meth:`bind` binds everything (the port is chosen then when ``port`` is
    0), :meth:`serve_forever` runs the loop until :meth:`stop`. The public
    methods may be called from other threads.
    """

    def __init__(self, targets: int, series: int = 1000, first_address: str = "127.1.0.1",
                 port: int = 0, control: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.addresses = target_addresses(targets, first_address)
        self.payload = Payload(series)
        self.port = port
        self._control_address = control
        self._selector = selectors.DefaultSelector()
        self._listeners: dict[str, socket.socket] = {}
        self._conns: dict[socket.socket, _Conn] = {}
        self._counts: dict[str, int] = {}
        self._faults: dict[str, tuple[str, float]] = {}
        self._timers: list[tuple[float, int, _Conn, bytes]] = []
        self._lock = threading.Lock()
        self._running = False
        self._wake_r, self._wake_w = socket.socketpair()
        self.control_port = 0

    @property
    def targets(self) -> list[str]:
        """``"<address>:<port>"`` of every target, in order."""
        return [f"{address}:{self.port}" for address in self.addresses]

    def bind(self, attempts: int = 20) -> None:
        """Bind every target on one port free on all their addresses, then the control port.

        :raises ZkpollError: no common free port after ``attempts`` tries.
        """
        fixed = self.port
        error: OSError | None = None
        for _ in range(1 if fixed else attempts):
            try:
                self._bind_targets()
                break
            except OSError as exc:
                self._close_listeners()
                self.port = fixed
                error = exc
        else:
            raise ZkpollError(f"cannot bind {len(self.addresses)} targets on port "
                              f"{fixed or 'any'}: {error}") from error
        control = self._listen(self._control_address)
        self.control_port = control.getsockname()[1]
        self._selector.register(control, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    def _bind_targets(self) -> None:
        first = self._listen((self.addresses[0], self.port))
        self.port = first.getsockname()[1]
        self._add_listener(self.addresses[0], first)
        for address in self.addresses[1:]:
            self._add_listener(address, self._listen((address, self.port)))

    @staticmethod
    def _listen(address: tuple[str, int]) -> socket.socket:
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _add_listener(self, address: str, sock: socket.socket) -> None:
        target = f"{address}:{sock.getsockname()[1]}"
        self._listeners[target] = sock
        self._selector.register(sock, selectors.EVENT_READ, target)

    def _close_listeners(self) -> None:
        for sock in self._listeners.values():
            self._selector.unregister(sock)
            sock.close()
        self._listeners.clear()

    # -- the public, thread-safe API ------------------------------------------------

    def scrape_counts(self) -> dict[str, int]:
        """{target: ``/metrics`` requests received}, every target included."""
        with self._lock:
            return {target: self._counts.get(target, 0) for target in self.targets}

    def faults(self) -> dict[str, tuple[str, float]]:
        """{target: (mode, seconds)} of the targets not ``ok``."""
        with self._lock:
            return dict(self._faults)

    def set_fault(self, target: str, mode: str, seconds: float = 3600.0) -> None:
        """Make ``target`` answer ``mode`` (see the module docstring) from now on.

        :raises ZkpollError: unknown target or mode.
        """
        if target not in self.targets:
            raise ZkpollError(f"no target {target!r}")
        if mode not in FAULT_MODES:
            raise ZkpollError(f"fault mode {mode!r} is not one of {', '.join(FAULT_MODES)}")
        with self._lock:
            if mode == "ok":
                self._faults.pop(target, None)
            else:
                self._faults[target] = (mode, seconds)
        self._wake_w.send(b"x")  # the loop opens or closes listeners

    def stop(self) -> None:
        """End :meth:`serve_forever` (from any thread)."""
        self._running = False
        with suppress(OSError):  # already shut down
            self._wake_w.send(b"x")

    # -- the loop -------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; then close every socket."""
        self._running = True
        try:
            while self._running:
                timeout = 1.0
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
                for key, events in self._selector.select(timeout):
                    self._dispatch(key, events)
                self._fire_timers()
        finally:
            self._shutdown()

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        if key.data is _WAKE:
            sock.recv(4096)
            try:
                self._apply_faults()
            except OSError as exc:
                print(f"cannot reopen a target: {exc}", file=sys.stderr, flush=True)
        elif isinstance(key.data, _Conn):
            if key.data.sock not in self._conns:  # closed earlier in this batch
                return
            if events & selectors.EVENT_WRITE:
                self._flush(key.data)
            if events & selectors.EVENT_READ and key.data.sock in self._conns:
                self._read(key.data)
        else:  # a listener: its target, or None for the control port
            self._accept(sock, key.data)

    def _accept(self, listener: socket.socket, target: str | None) -> None:
        for _ in range(64):
            try:
                sock, _ = listener.accept()
            except OSError:  # nothing left to accept, or closed by a "down" in this batch
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, target)
            self._conns[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        if len(conn.inbuf) > _MAX_HEADER and b"\r\n\r\n" not in conn.inbuf:
            self._close(conn)
            return
        self._handle_requests(conn)

    def _handle_requests(self, conn: _Conn) -> None:
        while not conn.parked and conn.sock in self._conns:
            end = conn.inbuf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(conn.inbuf[:end]).decode("latin-1")
            request, *header_lines = head.split("\r\n")
            method, _, rest = request.partition(" ")
            path, _, version = rest.partition(" ")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(conn.inbuf) < end + 4 + length:
                return  # the rest of a body (ignored) is still on its way
            del conn.inbuf[:end + 4 + length]
            connection = headers.get("connection", "").lower()
            conn.close_after = connection == "close" or (
                version == "HTTP/1.0" and connection != "keep-alive")
            if conn.target is None:
                status, ctype, body = self._control(method, path)
                self._send(conn, self._response(status, ctype, body))
            else:
                self._scrape(conn, method, path, headers)

    def _scrape(self, conn: _Conn, method: str, path: str, headers: dict[str, str]) -> None:
        target = conn.target
        assert target is not None
        if method != "GET" or path.partition("?")[0] != "/metrics":
            self._send(conn, self._response(404, b"text/plain", b"not found\n"))
            return
        with self._lock:
            n = self._counts[target] = self._counts.get(target, 0) + 1
            mode, seconds = self._faults.get(target, ("ok", 0.0))
        if mode == "error":
            self._send(conn, self._response(500, b"text/plain", b"injected fault\n"))
            return
        openmetrics = wants_openmetrics(headers.get("accept", ""))
        gzip = "gzip" in headers.get("accept-encoding", "")
        extra = b"Content-Encoding: gzip\r\n" if gzip else b""
        answer = self._response(200, CONTENT_TYPES[openmetrics],
                                self.payload.body(n, openmetrics, gzip), extra)
        if mode == "hang":
            conn.parked = True
            heapq.heappush(self._timers, (time.monotonic() + seconds, id(conn), conn, answer))
        else:
            self._send(conn, answer)

    def _control(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        url = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(url.query))
        result: object
        if url.path == "/ready":
            result = "ready"
        elif url.path == "/targets":
            result = self.targets
        elif url.path == "/counts":
            result = self.scrape_counts()
        elif url.path == "/faults":
            result = self.faults()
        elif url.path == "/fault" and method == "POST":
            try:
                self.set_fault(query.get("target", ""), query.get("mode", ""),
                               float(query.get("seconds", 3600.0)))
                self._apply_faults()  # before the answer: "down" means refused once it returns
            except (ZkpollError, ValueError) as exc:
                return 400, b"text/plain", f"{exc}\n".encode()
            except OSError as exc:  # the address:port of a target back up is taken
                return 500, b"text/plain", f"{exc}\n".encode()
            result = "ok"
        else:
            return 404, b"text/plain", b"not found\n"
        return 200, b"application/json", json.dumps(result).encode()

    @staticmethod
    def _response(status: int, ctype: bytes, body: bytes, extra: bytes = b"") -> bytes:
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found",
                  500: b"Internal Server Error"}[status]
        return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
                % (status, reason, ctype, len(body), extra)) + body

    def _send(self, conn: _Conn, data: bytes) -> None:
        conn.out = memoryview(data)
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if conn.out:
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
            return
        if conn.close_after:
            self._close(conn)
            return
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.inbuf:
            self._handle_requests(conn)  # a pipelined request

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, conn, answer = heapq.heappop(self._timers)
            if conn.sock in self._conns:
                conn.parked = False
                self._send(conn, answer)

    def _apply_faults(self) -> None:
        """Close the listener and connections of ``down`` targets; reopen the others."""
        down = {t for t, (mode, _) in self.faults().items() if mode == "down"}
        for target in down & self._listeners.keys():
            sock = self._listeners.pop(target)
            self._selector.unregister(sock)
            sock.close()
            for conn in [c for c in self._conns.values() if c.target == target]:
                self._close(conn)
        for target in set(self.targets) - down - self._listeners.keys():
            address, _, port = target.rpartition(":")
            self._add_listener(address, self._listen((address, int(port))))

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock, None) is not None:
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for key in list(self._selector.get_map().values()):
            sock = key.fileobj
            self._selector.unregister(sock)
            assert isinstance(sock, socket.socket)
            sock.close()
        self._wake_w.close()
        self._listeners.clear()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    """``python -m zkpoll.testing.exposition_server``: bind, print the targets' port, serve."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--targets", type=int, default=10, help="number of targets")
    parser.add_argument("--series", type=int, default=1000, help="series per target")
    parser.add_argument("--first-address", default="127.1.0.1", help="address of target 0")
    parser.add_argument("--port", type=int, default=0, help="port of every target (0: any)")
    parser.add_argument("--control", type=_address, default=("127.0.0.1", 0),
                        help="host:port of the control endpoint")
    args = parser.parse_args(argv)
    server = ExpositionServer(args.targets, args.series, args.first_address, args.port,
                              args.control)
    server.bind()
    print(f"{len(server.targets)} targets on port {server.port}, control on "
          f"{args.control[0]}:{server.control_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
