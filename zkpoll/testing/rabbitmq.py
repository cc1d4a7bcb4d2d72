"""A real RabbitMQ node on free loopback ports, for tests.

The node runs as this user from the Debian package's own scripts
(``/usr/lib/rabbitmq/bin``, not the ``/usr/sbin`` wrappers that switch to
the ``rabbitmq`` user), with everything in its temp dir: node name
``zkpoll-test-<port>@localhost``, Mnesia and logs, an empty config and
plugin list, the Erlang cookie (``HOME``), and a private ``epmd`` on a
port of its own, stopped with the node so no Erlang process outlives it::

    with ManagedRabbitMQ() as server:
        url = server.url       # rabbit://guest:guest@127.0.0.1:<port>/
        server.stop()          # rabbitmqctl stop; start() again on the same port and data
        server.pause()         # SIGSTOP: a broker that accepts and never answers; resume()

Booting takes about 5 s on an idle machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import suppress

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer, free_ports

__all__ = ["ManagedRabbitMQ"]

_SCRIPTS = "/usr/lib/rabbitmq/bin"


class ManagedRabbitMQ(ManagedServer):
    """One RabbitMQ node (Debian ``rabbitmq-server``; override with ``ZKPOLL_RABBITMQ_SERVER``).

    ``ZKPOLL_RABBITMQ_SERVER`` names the ``rabbitmq-server`` script; ``rabbitmqctl``
    is taken from the same directory.
    """

    program = "rabbitmq-server"
    env_var = "ZKPOLL_RABBITMQ_SERVER"
    package = "rabbitmq-server"
    scheme = "rabbit"
    probe = b"AMQP\x00\x00\x09\x01"  # AMQP 0-9-1 protocol header
    answer = b"\x01\x00\x00"         # a method frame on channel 0: Connection.Start
    start_timeout = 90.0

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.dist_port, self.epmd_port = free_ports(2)
        self.node = f"zkpoll-test-{self.port}@localhost"
        (self._dir / "rabbitmq.conf").write_text("")
        (self._dir / "enabled_plugins").write_text("[].\n")

    @classmethod
    def find_binary(cls) -> str:
        """The ``rabbitmq-server`` script; :raises ZkpollError: not installed."""
        override = os.environ.get(cls.env_var)
        if override:
            found = shutil.which(override)
        else:
            candidate = os.path.join(_SCRIPTS, cls.program)
            found = candidate if os.access(candidate, os.X_OK) else None
        if found is None:
            raise ZkpollError(f"cannot run a RabbitMQ node: {override or cls.program!r} not "
                              f"found (set {cls.env_var} or `apt-get install -y {cls.package}`)")
        return found

    @property
    def url(self) -> str:
        """``rabbit://guest:guest@127.0.0.1:<port>/``, an oslo.messaging transport URL."""
        return f"{self.scheme}://guest:guest@{self.address}/"

    def environment(self) -> dict[str, str]:
        """The environment of the node and of ``rabbitmqctl`` talking to it."""
        env = dict(os.environ)
        env.update({
            "HOME": str(self._dir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_MNESIA_BASE": str(self._dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self._dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self._dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self._dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self._dir / "plugins-expand"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def command(self) -> list[str]:
        env = [f"{k}={v}" for k, v in self.environment().items()
               if k.startswith(("RABBITMQ_", "ERL_")) or k == "HOME"]
        return ["env", *env, self.find_binary()]

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> ARGS`` against this node."""
        ctl = os.path.join(os.path.dirname(self.find_binary()), "rabbitmqctl")
        return subprocess.run([ctl, "-n", self.node, *args], env=self.environment(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node cleanly (``rabbitmqctl stop``), then as the base class does."""
        if self.running:
            with suppress(subprocess.TimeoutExpired, ZkpollError):
                self.ctl("stop", timeout=timeout)
        super().stop(timeout)
        self._kill_group()
        self._stop_epmd()

    def kill(self) -> None:
        """Kill the node at once (SIGKILL: the script and the Erlang VM), and its epmd."""
        self._kill_group()
        super().kill()
        self._stop_epmd()

    def pause(self) -> None:
        """Freeze the node (SIGSTOP): connections stay open and nothing answers."""
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused node run again (SIGCONT)."""
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: int) -> None:
        if not self.running or self._process is None:
            raise ZkpollError(f"{self!r} is not running")
        os.killpg(self._process.pid, signum)

    def _kill_group(self) -> None:
        """SIGKILL the node's process group: the start script runs the VM as a child."""
        if self._process is not None:  # the group outlives the script if the VM is orphaned
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    def _stop_epmd(self, timeout: float = 10.0) -> None:
        """Kill our epmd once the VM is gone (epmd refuses while a node is registered)."""
        epmd = shutil.which("epmd")
        if epmd is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                done = subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"],
                                      env=self.environment(), capture_output=True, text=True,
                                      timeout=10, check=False)
            except (subprocess.TimeoutExpired, OSError):
                return
            output = done.stdout + done.stderr
            # "Killed", or nothing listens there (never started, or already gone)
            if "Killed" in output or "cannot connect" in output.lower():
                return
            if time.monotonic() >= deadline:
                return
            time.sleep(0.1)
