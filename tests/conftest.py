"""Fixtures shared by all zkpoll tests: real ZooKeeper servers and TCP proxies.

- ``zookeeper_server``: one standalone server for the whole run (session).
- ``zk_chroot``: a fresh, existing root path on it for one test.
- ``zk_hosts``: ``zookeeper_server.address + zk_chroot``, for a KazooClient.
- ``zookeeper_ensemble``: 3 servers in a quorum, shared by a module and
  brought back to 3 serving servers before each test.
- ``managed_zookeeper``: ``managed_zookeeper(**kwargs)`` starts a private
  ManagedZooKeeper (to stop, kill or break), closed after the test.
- ``tcp_proxy``: ``tcp_proxy(host, port)`` returns a started TCPProxy.
- ``healthy_http``: a loopback HTTP server answering 200; ``full_backlog``:
  a loopback listener whose connects hang (a connect timeout, for real).
- ``redis_server``, ``memcached_server``: one server each for the whole run.
- ``rabbitmq_server``: one RabbitMQ node for the whole run.
- ``managed_prometheus``: ``managed_prometheus()`` starts a private
  ManagedPrometheus (a remote-write receiver), closed after the test.
- ``victoria_metrics_server``: one VictoriaMetrics (no deduplication) for
  the whole run; tests tell their series apart by a label of their own.
- ``managed_exposition_server``: ``managed_exposition_server(targets=N)``
  starts N scrape targets in a child process, closed after the test.
- ``snmpd_server``: one snmpd answering as 8 SNMP devices for the whole run;
  ``snmp_exporter``: a prometheus-snmp-exporter (``if_mib``, ``if_mib_v3``)
  with its credentials.
- ``backend_url``: parametrized over zookeeper, redis and memcached; a URL
  (no query) with a root/key prefix unique to the test.

Without a server installed these fixtures skip, or fail when ``CI=true``.
When a test fails, the tail of the log of each server it used is shown.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kazoo.client import KazooClient

from zkpoll.testing import (
    ManagedMemcached,
    ManagedZooKeeper,
    TCPProxy,
    ZooKeeperEnsemble,
)
from zkpoll.testing._server import ManagedServer
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.prometheus import ManagedPrometheus
from zkpoll.testing.rabbitmq import ManagedRabbitMQ
from zkpoll.testing.snmp_exporter import ManagedSnmpExporter
from zkpoll.testing.snmpd import ManagedSnmpd
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics

# zookeeper_server, redis_server and the require_* helpers come from the kit
# plugin authors use (one definition; loaded as a plugin so it is not
# imported before pytest can rewrite its asserts).
pytest_plugins = ["zkpoll.testing.plugins"]


def require_zookeeper() -> None:
    from zkpoll.testing.plugins import require_zookeeper as kit_require

    kit_require()


def require_server(kind: type[ManagedServer]) -> None:
    from zkpoll.testing.plugins import require_server as kit_require

    kit_require(kind)

LOG_TAIL_LINES = 60


class ZooKeeperFactory:
    """Start private ZooKeeper servers for one test; close them all after it."""

    def __init__(self) -> None:
        self.servers: list[ManagedZooKeeper] = []

    def __call__(self, **kwargs: Any) -> ManagedZooKeeper:
        """Start a ``ManagedZooKeeper(**kwargs)``."""
        server = ManagedZooKeeper(**kwargs)
        self.servers.append(server)
        server.start()
        return server

    def log_text(self, tail: int | None = None) -> str:
        return "\n".join(f"--- {server!r} ---\n{server.log_text(tail)}"
                         for server in self.servers)

    def close(self) -> None:
        for server in self.servers:
            server.close()


_WITH_LOGS = (ManagedZooKeeper, ZooKeeperEnsemble, ZooKeeperFactory)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "functional: uses real servers (ZooKeeper, Redis, Memcached)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the log tail of every ZooKeeper the failed test used to its report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen: set[int] = set()
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, _WITH_LOGS) and id(value) not in seen:
            seen.add(id(value))
            report.sections.append(
                (f"ZooKeeper log ({name}, last {LOG_TAIL_LINES} lines)",
                 value.log_text(tail=LOG_TAIL_LINES)))


@pytest.fixture(autouse=True)
def _spools_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process publishers spool under a temp dir, never in /var/lib/zkpoll."""
    from zkpoll.publisher import spool_options

    monkeypatch.setattr(spool_options, "DEFAULT_STATE_DIR",
                        str(tmp_path_factory.mktemp("spool")))


@pytest.fixture
def zk_chroot(zookeeper_server: ManagedZooKeeper) -> Iterator[str]:
    """A root path (``/test-<hex>``) that exists on ``zookeeper_server`` for one test."""
    if zookeeper_server.mode() is None:  # a previous test broke it: heal
        zookeeper_server.restart()
    chroot = f"/test-{uuid.uuid4().hex}"
    admin = KazooClient(hosts=zookeeper_server.address)
    admin.start(timeout=10)
    try:
        admin.create(chroot)
        yield chroot
        admin.delete(chroot, recursive=True)
    finally:
        admin.stop()
        admin.close()


@pytest.fixture
def zk_hosts(zookeeper_server: ManagedZooKeeper, zk_chroot: str) -> str:
    """Connect string of ``zookeeper_server`` chrooted to ``zk_chroot``."""
    return zookeeper_server.address + zk_chroot


@pytest.fixture(scope="module")
def _module_ensemble() -> Iterator[ZooKeeperEnsemble]:
    require_zookeeper()
    ensemble = ZooKeeperEnsemble(size=3)
    try:
        ensemble.start()
        yield ensemble
    finally:
        ensemble.close()


@pytest.fixture
def zookeeper_ensemble(_module_ensemble: ZooKeeperEnsemble) -> ZooKeeperEnsemble:
    """A 3-server ensemble (started once per module), all serving at test start.

    A test may kill servers: the next test gets them back.
    """
    _module_ensemble.start()
    return _module_ensemble


@pytest.fixture
def managed_zookeeper() -> Iterator[ZooKeeperFactory]:
    """Factory: ``managed_zookeeper(**kwargs)`` starts a private ManagedZooKeeper.

    For tests that stop, kill or restart their server; all are closed after.
    """
    require_zookeeper()
    factory = ZooKeeperFactory()
    yield factory
    factory.close()


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TCPProxy]]:
    """Factory: ``tcp_proxy(host, port)`` starts a TCPProxy to that target.

    Every proxy made is stopped after the test.
    """
    proxies: list[TCPProxy] = []

    def make(host: str, port: int) -> TCPProxy:
        proxy = TCPProxy(host, port)
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[ManagedMemcached]:
    """One memcached for the whole run (tests use their own key prefix).

    Do not stop it: to test an outage, start your own ManagedMemcached.
    """
    require_server(ManagedMemcached)
    server = ManagedMemcached()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[ManagedRabbitMQ]:
    """One RabbitMQ node for the whole run (about 5 s to boot).

    A test that stops it must start it again before it ends.
    """
    require_server(ManagedRabbitMQ)
    server = ManagedRabbitMQ()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def managed_prometheus() -> Iterator[Callable[[], ManagedPrometheus]]:
    """Factory: ``managed_prometheus()`` starts a private ManagedPrometheus.

    For tests that stop and start their sink; all are closed after the test.
    """
    require_server(ManagedPrometheus)
    servers: list[ManagedPrometheus] = []

    def make() -> ManagedPrometheus:
        server = ManagedPrometheus()
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def victoria_metrics_server() -> Iterator[ManagedVictoriaMetrics]:
    """One single-node VictoriaMetrics for the whole run, duplicates kept.

    Tests select their own series by a label (``job``) of their own; do not
    stop it: to test an outage, start your own ManagedVictoriaMetrics.
    """
    require_server(ManagedVictoriaMetrics)
    server = ManagedVictoriaMetrics()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def snmpd_server() -> Iterator[ManagedSnmpd]:
    """One snmpd answering as 8 devices (127.77.0.1-8, one UDP port) for the whole run.

    Do not stop or pause it: to silence a device, start your own ManagedSnmpd.
    """
    require_server(ManagedSnmpd)
    server = ManagedSnmpd(8)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def managed_exposition_server() -> Iterator[Callable[..., ManagedExpositionServer]]:
    """Factory: ``managed_exposition_server(**kwargs)`` starts a
    ManagedExpositionServer (scrape targets in a child process).

    All are closed after the test.
    """
    servers: list[ManagedExpositionServer] = []

    def make(**kwargs: Any) -> ManagedExpositionServer:
        server = ManagedExpositionServer(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="session")
def snmp_exporter(snmpd_server: ManagedSnmpd) -> Iterator[ManagedSnmpExporter]:
    """One prometheus-snmp-exporter with ``snmpd_server``'s credentials for the whole run."""
    require_server(ManagedSnmpExporter)
    exporter = ManagedSnmpExporter(snmpd_server)
    try:
        exporter.start()
        yield exporter
    finally:
        exporter.close()


BACKENDS = ("zookeeper", "redis", "memcached")


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh backend URL without query, for each backend in turn.

    The path (ZooKeeper root, Redis/Memcached key prefix) is unique to the
    test, so tests never see each other's groups.  Append ``?timeout=...``.
    """
    if request.param == "zookeeper":
        server = request.getfixturevalue("zookeeper_server")
        return f"zookeeper://{server.address}{request.getfixturevalue('zk_chroot')}"
    server = request.getfixturevalue(f"{request.param}_server")
    return f"{server.url}/test-{uuid.uuid4().hex}"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def healthy_http() -> Iterator[str]:
    """``host:port`` of a loopback HTTP server answering 200 to every GET."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A listener nobody accepts on, its backlog filled: a new connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(8):
        sock = socket.socket()
        sock.settimeout(0.2)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            break
        fillers.append(sock)
    else:
        pytest.fail("the backlog never filled")
    yield f"127.0.0.1:{address[1]}"
    for sock in fillers:
        sock.close()
    listener.close()
