"""A TCP proxy on loopback that a test can break and restore.

Put it between a client and a server to inject network faults::

    with TCPProxy(server.host, server.port) as proxy:
        client = KazooClient(hosts=proxy.address)
        ...
        proxy.cut("blackhole")   # a network partition: bytes vanish, no error
        proxy.restore()

``cut("reset")`` closes every connection (the peers see a reset) and resets
new ones at once, like a crashed server. ``cut("blackhole")`` keeps every
socket open but drops every byte, and holds new connections open without
forwarding them: what a partition looks like to a ZooKeeper client, which
only notices when its heartbeat goes unanswered. A byte that was dropped
cannot be delivered later, so :meth:`TCPProxy.restore` closes the
blackholed connections; clients reconnect through the restored proxy.

Each connection uses two daemon threads blocked in ``recv``; connections
above ``max_connections`` are reset.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated
    from typing import Self

__all__ = ["TCPProxy"]

CutMode = Literal["reset", "blackhole"]

_BUFFER_SIZE = 65536
_CONNECT_TIMEOUT = 5.0


def _close_socket(sock: socket.socket, *, reset: bool) -> None:
    """Close ``sock``, waking any thread blocked in ``recv`` on it.

    With ``reset`` the peer gets a RST instead of a FIN.
    """
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already disconnected
    sock.close()


class _Link:
    """One proxied connection: the client's socket and the upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None,
                 on_close: Callable[[_Link], None]) -> None:
        self._sockets = [s for s in (client, upstream) if s is not None]
        self._on_close = on_close
        self._send_lock = threading.Lock()  # held while forwarding a chunk
        self._close_lock = threading.Lock()
        self.silenced = upstream is None
        self._closed = False

    def start(self) -> None:
        client, upstream = self._sockets
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True,
                             name=f"tcp-proxy-{src.fileno()}").start()

    def silence(self) -> None:
        """Drop all further bytes; returns once no chunk is being forwarded."""
        with self._send_lock:
            self.silenced = True

    def close(self, *, reset: bool = False) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for sock in self._sockets:
            _close_socket(sock, reset=reset)
        self._on_close(self)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while self._forward_one(src, dst):
            pass
        # A silenced link hides the disconnection from the other side.
        if not self.silenced:
            self.close()

    def _forward_one(self, src: socket.socket, dst: socket.socket) -> bool:
        """Forward (or drop) one chunk; False once ``src`` or ``dst`` is closed."""
        try:
            data = src.recv(_BUFFER_SIZE)
        except OSError:
            return False
        if not data:
            return False
        with self._send_lock:
            if self.silenced:
                return True
            try:
                dst.sendall(data)
            except OSError:
                return False
        return True


class TCPProxy:
    """Forward connections from a free 127.0.0.1 port to ``target``."""

    def __init__(self, target_host: str, target_port: int, *,
                 max_connections: int = 64) -> None:
        self.target = (target_host, target_port)
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._mode: CutMode | None = None  # None: forwarding
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        target = f"{self.target[0]}:{self.target[1]}"
        return f"<TCPProxy {self.address if self._port else '(stopped)'} -> {target}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``: where clients connect."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Listen and forward; the port stays the same across stop/start."""
        if self._listener is not None:
            return
        listener = socket.create_server((self.host, self._port or 0))
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), daemon=True,
            name=f"tcp-proxy-accept-{self._port}")
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and every connection."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is None:
            return
        _close_socket(listener, reset=False)  # wakes accept()
        if self._acceptor is not None:
            self._acceptor.join()
        self._close_links(lambda link: True, reset=False)

    def cut(self, mode: CutMode = "reset") -> None:
        """Break the path to the target until :meth:`restore`.

        ``"reset"`` closes every connection and resets new ones;
        ``"blackhole"`` silently drops every byte, on current and new
        connections alike.
        """
        if mode not in ("reset", "blackhole"):
            raise ValueError(f"cut mode must be 'reset' or 'blackhole', not {mode!r}")
        with self._lock:
            self._mode = mode
            links = list(self._links)
        for link in links:
            if mode == "reset":
                link.close(reset=True)
            else:
                link.silence()

    def restore(self) -> None:
        """Forward again; connections blackholed by :meth:`cut` are closed."""
        with self._lock:
            self._mode = None
        self._close_links(lambda link: link.silenced, reset=False)

    def _close_links(self, which: Callable[[_Link], bool], *, reset: bool) -> None:
        with self._lock:
            links = [link for link in self._links if which(link)]
        for link in links:
            link.close(reset=reset)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stop() closed the listener
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            mode = self._mode
            refuse = self._listener is None or len(self._links) >= self.max_connections
        if refuse or mode == "reset":
            _close_socket(client, reset=True)
            return
        upstream = None if mode == "blackhole" else self._connect_upstream()
        if upstream is None and mode is None:
            _close_socket(client, reset=True)
            return
        link = _Link(client, upstream, self._forget)
        with self._lock:
            self._links.add(link)
            mode = self._mode  # cut() or restore() may have run meanwhile
            stopped = self._listener is None
        if stopped or mode == "reset":
            link.close(reset=True)
        elif mode is None and link.silenced:
            link.close()
        else:
            if mode == "blackhole":
                link.silence()
            if upstream is not None:
                link.start()

    def _connect_upstream(self) -> socket.socket | None:
        try:
            upstream = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            return None
        upstream.settimeout(None)
        return upstream
