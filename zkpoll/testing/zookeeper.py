"""Real ZooKeeper servers on loopback, for tests.

The servers run the Java ZooKeeper of the Debian ``zookeeper`` package
(``apt-get install -y zookeeper``), each in its own temporary directory with
its own ``zoo.cfg``, data directory and log file, on free ``127.0.0.1``
ports (``ManagedZooKeeper(host=...)``: another local address). Two
environment variables override what is found on the machine:

``ZKPOLL_JAVA``
    the ``java`` binary (default: ``java`` on ``PATH``);
``ZKPOLL_ZOOKEEPER_CLASSPATH``
    the classpath of the server (default: :data:`DEFAULT_CLASSPATH`).

The short default ``tickTime`` of 200 ms lets a client ask for session
timeouts from 0.4 s up to 60 s. Every process and temporary directory is
removed by :meth:`ManagedZooKeeper.close` (or the ``with`` block), and an
``atexit`` hook kills whatever a crashed test left behind (see
:mod:`zkpoll.testing._server`, the lifecycle shared with Redis and Memcached).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer, free_port, free_ports
from zkpoll.testing.tls import make_certificates

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated
    from typing import Self

__all__ = [
    "DEFAULT_CLASSPATH",
    "ManagedZooKeeper",
    "ZooKeeperEnsemble",
    "expire_session",
    "find_installation",
    "four_letter_word",
    "free_port",
]

#: Jars of the Debian packages: the server (its manifest lists most of its
#: dependencies), the log4j 1.2 binding of slf4j, so it logs to a file, and
#: netty's codec (missing from that manifest; the TLS port needs it).
DEFAULT_CLASSPATH = (
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-log4j12.jar",
    "/usr/share/java/log4j-1.2.jar",
    "/usr/share/java/netty-codec.jar",
)

_INSTALL_HINT = "install it with `apt-get install -y zookeeper default-jre-headless`"
_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# A small heap and the C1 compiler only: the JVM starts faster and three of
# them fit on a 2-core CI machine next to the tests.
_JVM_FLAGS = (
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
_LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] %m%n
"""
_POLL_INTERVAL = 0.05


def find_installation() -> tuple[str, str]:
    """Return ``(java binary, classpath)`` to run a ZooKeeper server.

    :raises ZkpollError: java or a jar is missing; the message says which
        and how to install it.
    """
    java_name = os.environ.get("ZKPOLL_JAVA", "java")
    java = shutil.which(java_name)
    if java is None:
        raise ZkpollError(
            f"cannot run a ZooKeeper server: Java not found ({java_name!r} is "
            f"not an executable; set ZKPOLL_JAVA or {_INSTALL_HINT})")
    override = os.environ.get("ZKPOLL_ZOOKEEPER_CLASSPATH")
    classpath = override or os.pathsep.join(DEFAULT_CLASSPATH)
    # Entries with a wildcard ("lib/*") are expanded by java itself.
    missing = [entry for entry in classpath.split(os.pathsep)
               if entry and "*" not in entry and not os.path.exists(entry)]
    if missing:
        fix = "fix ZKPOLL_ZOOKEEPER_CLASSPATH" if override else _INSTALL_HINT
        raise ZkpollError(
            f"cannot run a ZooKeeper server: missing {', '.join(missing)}; {fix}")
    return java, classpath


def four_letter_word(host: str, port: int, cmd: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (``ruok``, ``srvr``, ``mntr``...) and return the answer.

    :raises OSError: the server cannot be reached or does not answer in time.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(cmd.encode("ascii"))
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def expire_session(hosts: str, client_id: tuple[int, bytes],
                   timeout: float = 10.0) -> None:
    """Make the server expire the session ``client_id`` (a ``KazooClient.client_id``).

    kazoo's own trick: a second client attaches to the same session and
    closes it. The server then deletes the session's ephemeral nodes, and the
    first client sees ``KazooState.LOST`` when it reconnects. Returns once a
    new attach attempt is refused, i.e. the session is gone for good.

    :raises ZkpollError: the session still exists after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = KazooClient(hosts=hosts, client_id=client_id)
        try:
            probe.start(timeout=max(deadline - time.monotonic(), 0.1))
            if probe.client_id is not None and probe.client_id[0] != client_id[0]:
                return  # the server refused the old session: it is gone
        except (KazooException, KazooTimeoutError) as exc:
            raise ZkpollError(
                f"cannot expire session {client_id[0]:#x} on {hosts}: {exc}") from exc
        finally:
            probe.stop()  # closes whichever session the probe holds
            probe.close()
    raise ZkpollError(
        f"session {client_id[0]:#x} on {hosts} still alive after {timeout:.0f} s")


class ManagedZooKeeper(ManagedServer):
    """One ZooKeeper server process on 127.0.0.1, standalone by default.

    Use it as a context manager, or call :meth:`start` and :meth:`close`.
    ``host`` binds the client port to another local address instead (e.g. a
    test bridge's, for clients in other network namespaces).
    ``server_id`` and ``peers`` (server id to ``(quorum port, election
    port)``) make it a member of an ensemble; :class:`ZooKeeperEnsemble`
    builds those. ``sasl_users`` (user name to password) makes the server
    require SASL DIGEST-MD5 authentication from every client. ``tls=True``
    adds a TLS port (:attr:`secure_address`) that requires a client
    certificate; :attr:`certificates` holds the CA and the client's files. The data
    directory survives :meth:`stop`, :meth:`kill` and :meth:`restart`, not
    :meth:`close`.
    """

    program = "zookeeper"
    package = "zookeeper"
    scheme = "zookeeper"
    start_timeout = 30.0

    def __init__(self, *, tick_time: int = 200, max_session_timeout: int = 60_000,
                 client_port: int | None = None, server_id: int | None = None,
                 peers: Mapping[int, tuple[int, int]] | None = None,
                 sasl_users: Mapping[str, str] | None = None, tls: bool = False,
                 host: str = "127.0.0.1") -> None:
        if (server_id is None) != (peers is None):
            raise ValueError("server_id and peers go together")
        super().__init__(client_port, host)
        self.sasl_users = dict(sasl_users or {})
        self.certificates = make_certificates(self._dir / "tls") if tls else None
        self.secure_port = free_port(host) if tls else None
        self.tick_time = tick_time
        self.max_session_timeout = max_session_timeout
        self.server_id = server_id
        self.peers = dict(peers or {})

    @property
    def secure_address(self) -> str:
        """``"<host>:<TLS port>"``; :raises ValueError: started without ``tls``."""
        if self.secure_port is None:
            raise ValueError(f"{self!r} has no TLS port (ManagedZooKeeper(tls=True))")
        return f"{self.host}:{self.secure_port}"

    @classmethod
    def find_binary(cls) -> str:
        """The ``java`` binary; :raises ZkpollError: Java or a jar is missing."""
        return find_installation()[0]

    def command(self) -> list[str]:
        java, classpath = find_installation()
        self._write_config()
        log4j_config = (self._dir / "log4j.properties").as_uri()
        jaas = [f"-Djava.security.auth.login.config={self._dir / 'jaas.conf'}"] \
            if self.sasl_users else []
        return [java, *_JVM_FLAGS, f"-Dlog4j.configuration={log4j_config}", *jaas,
                "-cp", classpath, _MAIN_CLASS, str(self._dir / "zoo.cfg")]

    def answers(self, timeout: float = 1.0) -> bool:
        """True once this server, not another one on our port, serves clients.

        It answers ``srvr`` with a ``Mode:``, which is stronger than ``ruok``
        (an ensemble member answers ``imok`` before it has joined a quorum).

        :raises ZkpollError: another ZooKeeper answers on our port.
        """
        if self.mode(timeout) is None:
            return False
        try:
            conf = four_letter_word(self.host, self.port, "conf", timeout=timeout)
        except OSError:
            return False
        data_dir = f"dataDir={self._dir / 'data'}/"
        if data_dir not in conf:
            raise ZkpollError(f"{self.address} is already used by another ZooKeeper:\n{conf}")
        return True

    def mode(self, timeout: float = 1.0) -> str | None:
        """``"standalone"``, ``"leader"`` or ``"follower"``; None if not serving."""
        try:
            answer = four_letter_word(self.host, self.port, "srvr", timeout=timeout)
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.partition(":")[2].strip()
        return None

    def _write_config(self) -> None:
        data_dir = self._dir / "data"
        data_dir.mkdir(exist_ok=True)
        lines = [
            f"tickTime={self.tick_time}",
            f"dataDir={data_dir}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            f"maxSessionTimeout={self.max_session_timeout}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",  # no per-IP cap (60 by default): every client is 127.0.0.1
            # Test data: no fsync, no 64 MB preallocated transaction logs.
            "forceSync=no",
            "preAllocSize=1024",
        ]
        if self.server_id is not None:
            (data_dir / "myid").write_text(f"{self.server_id}\n")
            lines += ["initLimit=25", "syncLimit=10"]
            lines += [f"server.{sid}={self.host}:{quorum}:{election}"
                      for sid, (quorum, election) in sorted(self.peers.items())]
        if self.certificates is not None:
            lines += ["serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                      f"secureClientPort={self.secure_port}",
                      f"ssl.keyStore.location={self.certificates.server_pem}",
                      "ssl.keyStore.type=PEM",
                      f"ssl.trustStore.location={self.certificates.ca}",
                      "ssl.trustStore.type=PEM", "ssl.clientAuth=need"]
        if self.sasl_users:
            provider = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
            lines += [f"authProvider.1={provider}",
                      "enforce.auth.enabled=true", "enforce.auth.schemes=sasl"]
            users = "".join(f'\n    user_{name}="{password}"'
                            for name, password in sorted(self.sasl_users.items()))
            (self._dir / "jaas.conf").write_text(
                "Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required"
                f"{users};\n}};\n")
        (self._dir / "zoo.cfg").write_text("\n".join(lines) + "\n")
        (self._dir / "log4j.properties").write_text(_LOG4J_PROPERTIES)


class ZooKeeperEnsemble:
    """``size`` ZooKeeper servers on loopback forming one quorum.

    Servers are indexed from 0 (``servers[i]`` has ``myid`` ``i + 1``).
    :meth:`start` is idempotent: it starts only the servers that are down.
    """

    def __init__(self, size: int = 3, *, tick_time: int = 200,
                 max_session_timeout: int = 60_000) -> None:
        if size < 2:
            raise ValueError(f"an ensemble needs at least 2 servers, not {size}; "
                             "use ManagedZooKeeper for one")
        ports = free_ports(3 * size)
        peers = {i + 1: (ports[3 * i + 1], ports[3 * i + 2]) for i in range(size)}
        self.servers = [
            ManagedZooKeeper(tick_time=tick_time, max_session_timeout=max_session_timeout,
                             client_port=ports[3 * i], server_id=i + 1, peers=peers)
            for i in range(size)
        ]

    def __repr__(self) -> str:
        return f"<ZooKeeperEnsemble {self.hosts}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def hosts(self) -> str:
        """Connect string of all servers: ``"127.0.0.1:a,127.0.0.1:b,..."``."""
        return ",".join(server.address for server in self.servers)

    def start(self, timeout: float = 60.0) -> None:
        """Start every server that is down and wait until all of them serve."""
        for server in self.servers:
            server.launch()
        deadline = time.monotonic() + timeout
        for server in self.servers:
            server.wait_ready(max(deadline - time.monotonic(), 0.0))

    def start_one(self, index: int, timeout: float = 30.0) -> None:
        """Start server ``index`` again and wait until it serves."""
        self.servers[index].start(timeout)

    def kill(self, index: int) -> None:
        """Kill server ``index`` at once (SIGKILL)."""
        self.servers[index].kill()

    def stop(self) -> None:
        """Stop every server gracefully (data is kept)."""
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        """Kill every server and delete their directories."""
        for server in self.servers:
            server.close()

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the server in ``Mode: leader``, waiting up to ``timeout`` s for one.

        :raises ZkpollError: no server leads after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            modes = [server.mode() for server in self.servers]
            if "leader" in modes:
                return modes.index("leader")
            if time.monotonic() >= deadline:
                raise ZkpollError(f"no ZooKeeper leader after {timeout:.0f} s; "
                                  f"modes: {modes}\n{self.log_text(tail=20)}")
            time.sleep(_POLL_INTERVAL)

    def log_text(self, tail: int | None = None) -> str:
        """The logs of all servers (or their last ``tail`` lines), one section each."""
        return "\n".join(
            f"--- server {i} ({server.address}) ---\n{server.log_text(tail)}"
            for i, server in enumerate(self.servers))
