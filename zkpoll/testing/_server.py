"""A server process on 127.0.0.1 for tests: own temp dir, own log, free port.

:class:`ManagedServer` is the shared shape of :class:`ManagedRedis` and
:class:`ManagedMemcached`: ``start()``, ``stop()``, ``kill()``, ``close()``,
``host``, ``port``, ``url`` and ``log_text()``.  The port and the directory
survive :meth:`ManagedServer.stop` and :meth:`ManagedServer.kill` (start it
again on the same port), not :meth:`ManagedServer.close`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from zkpoll.exceptions import ZkpollError

# One process/directory registry and atexit backstop for every managed server.
from zkpoll.testing.zookeeper import _kill, _live_processes, _temp_dirs, free_port

if TYPE_CHECKING:
    from typing import Self

__all__ = ["ManagedServer"]

class ManagedServer:
    """Base class: subclasses name the program and how to start and probe it."""

    program = ""          #: binary looked up on PATH
    env_var = ""          #: environment variable that overrides the binary
    package = ""          #: Debian package that provides it
    scheme = ""           #: URL scheme of :attr:`url`
    probe = b""           #: request sent to check that the server answers
    answer = b""          #: prefix of the expected reply

    def __init__(self, port: int | None = None) -> None:
        self._port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix=f"zkpoll-{self.program}-"))
        _temp_dirs.add(self._dir)
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {'running' if self.running else 'stopped'}>"

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
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``<scheme>://127.0.0.1:<port>``, a ``[coordination] backend_url``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self._dir / f"{self.program}.log"

    def command(self, binary: str) -> list[str]:
        """The command line that runs the server in the foreground."""
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (no-op if running) and wait until it answers.

        :raises ZkpollError: not installed, or not answering within ``timeout``
            s (the message holds the log tail).
        """
        if not self.running:
            command = self.command(self.find_binary())
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    command, cwd=self._dir, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            _live_processes.add(self._process)
        deadline = time.monotonic() + timeout
        while not (self.running and self.answers()):
            if not self.running or time.monotonic() >= deadline:
                self.kill()
                raise ZkpollError(f"{self!r} did not start; last log lines:\n"
                                  f"{self.log_text(tail=30)}")
            time.sleep(0.02)

    def answers(self, timeout: float = 1.0) -> bool:
        """True if something on our port answers :attr:`probe` as expected."""
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
