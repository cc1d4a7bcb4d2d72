"""A server process on 127.0.0.1 (or another local address) for tests: own temp
dir, own log, free port.

:class:`ManagedServer` is the shared shape of :class:`ManagedZooKeeper`,
:class:`ManagedRedis` and :class:`ManagedMemcached`: ``start()``,
``stop()``, ``kill()``, ``restart()``, ``close()``, ``host``, ``port``,
``url`` and ``log_text()``. The port and the directory survive
:meth:`ManagedServer.stop` and :meth:`ManagedServer.kill` (start it again on
the same port and data), not :meth:`ManagedServer.close`.

Every server process and directory is also registered here, and an
``atexit`` hook kills and removes whatever a crashed test left behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from zkpoll.exceptions import ZkpollError

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated
    from typing import Self

__all__ = ["ManagedServer", "free_port", "free_ports"]

_POLL_INTERVAL = 0.02

# Backstop for tests that die without cleaning up (see _cleanup_at_exit).
_live_processes: set[subprocess.Popen[bytes]] = set()
_temp_dirs: set[Path] = set()


@atexit.register
def _cleanup_at_exit() -> None:
    for process in list(_live_processes):
        _kill(process)
    for path in list(_temp_dirs):
        shutil.rmtree(path, ignore_errors=True)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
    _live_processes.discard(process)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` (a local address) right now."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct ports free on ``host`` (all held open while choosing)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


class ManagedServer:
    """Base class: subclasses name the program and how to start and probe it."""

    program = ""          #: binary looked up on PATH; also names the dir and log
    env_var = ""          #: environment variable that overrides the binary
    package = ""          #: Debian package that provides it
    scheme = ""           #: URL scheme of :attr:`url`
    probe = b""           #: request sent to check that the server answers
    answer = b""          #: prefix of the expected reply
    ready_path = ""       #: an HTTP server's readiness path (instead of probe/answer)
    start_timeout = 15.0  #: default seconds :meth:`start` waits for an answer

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self._host = host
        self._port = port or free_port(host)
        self._dir = Path(tempfile.mkdtemp(prefix=f"zkpoll-{self.program}-"))
        _temp_dirs.add(self._dir)
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @classmethod
    def find_binary(cls) -> str:
        """The server binary; :raises ZkpollError: it is not installed (says how to)."""
        name = os.environ.get(cls.env_var) or cls.program
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found is None:
            raise ZkpollError(f"cannot run a {cls.program} server: {name!r} not found (set "
                              f"{cls.env_var} or `apt-get install -y {cls.package}`)")
        return found

    @property
    def host(self) -> str:
        """The local address the server listens on (``127.0.0.1`` unless given)."""
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """``"<host>:<port>"``, e.g. ``"127.0.0.1:2181"``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``<scheme>://<host>:<port>``, a ``[coordination] backend_url``."""
        return f"{self.scheme}://{self.address}"

    @property
    def running(self) -> bool:
        """True while the server process is alive (answering or not)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / f"{self.program}.log"

    def command(self) -> list[str]:
        """The command line that runs the server in the foreground (in its directory)."""
        raise NotImplementedError

    def start(self, timeout: float | None = None) -> None:
        """Start the server (no-op if running) and wait until it answers.

        :raises ZkpollError: not installed, or not answering within ``timeout``
            s (default :attr:`start_timeout`); the message holds the log tail.
        """
        self.launch()
        try:
            self.wait_ready(self.start_timeout if timeout is None else timeout)
        except ZkpollError:
            self.kill()
            raise

    def launch(self) -> None:
        """Start the server process without waiting; no-op if it runs."""
        if self.running:
            return
        command = self.command()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, cwd=self._dir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        _live_processes.add(self._process)

    def wait_ready(self, timeout: float) -> None:
        """Wait until :meth:`answers` is true.

        :raises ZkpollError: the process exited, or ``timeout`` seconds
            passed; the message holds the log tail.
        """
        deadline = time.monotonic() + timeout
        while not self.answers():
            if not self.running:
                code = None if self._process is None else self._process.poll()
                raise ZkpollError(f"{self!r} exited with code {code}; last log lines:\n"
                                  f"{self.log_text(tail=40)}")
            if time.monotonic() >= deadline:
                raise ZkpollError(f"{self!r} not answering after {timeout:.0f} s; last log "
                                  f"lines:\n{self.log_text(tail=40)}")
            time.sleep(_POLL_INTERVAL)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if something on our port answers :attr:`probe` as expected (an HTTP
        200 on :attr:`ready_path` for an HTTP server)."""
        if self.ready_path:
            try:
                with urllib.request.urlopen(f"http://{self.address}{self.ready_path}",
                                            timeout=timeout) as answer:
                    answer.read()
                    return answer.status == 200
            except (OSError, urllib.error.URLError):
                return False
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(self.probe)
                return sock.recv(64).startswith(self.answer)
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self._process is None or not self.running:
            return
        self._process.terminate()
        with suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout)
        _kill(self._process)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), like a crashed host."""
        if self._process is not None:
            _kill(self._process)

    def restart(self, timeout: float | None = None) -> None:
        """Stop the server gracefully and start it again on the same port and data."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Kill the server and delete its directory."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
        _temp_dirs.discard(self._dir)

    def log_text(self, tail: int | None = None) -> str:
        """The server's output, or its last ``tail`` lines."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else "\n".join(text.splitlines()[-tail:])
