"""The test harness itself, against real ZooKeeper servers: no mocks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.exceptions import ZkpollError
from zkpoll.testing import (
    ManagedZooKeeper,
    TCPProxy,
    ZooKeeperEnsemble,
    expire_session,
    find_installation,
    four_letter_word,
)
from zkpoll.testing.waiting import wait_for

if TYPE_CHECKING:
    from tests.conftest import ZooKeeperFactory

pytestmark = pytest.mark.functional

# Long enough to survive a leader election or a restored partition on a
# loaded 2-core machine; kazoo goes SUSPENDED after 2/3 of it without news.
SESSION_TIMEOUT = 6.0

ClientFactory = Callable[[str], tuple[KazooClient, list[KazooState]]]


def node_exists(client: KazooClient, path: str) -> bool:
    """True if ``path`` exists; False if it does not or no answer comes within 1 s."""
    try:
        return client.exists_async(path).get(timeout=1.0) is not None
    except (KazooException, KazooTimeoutError):
        return False


def ruok(host: str, port: int, timeout: float = 2.0) -> str | None:
    """The answer to ``ruok``; None if the connection was reset or closed at once."""
    try:
        return four_letter_word(host, port, "ruok", timeout) or None
    except ConnectionError:
        return None


@contextmanager
def connected(hosts: str) -> Iterator[KazooClient]:
    """A started KazooClient, stopped and closed on exit."""
    client = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def kazoo_client() -> Iterator[ClientFactory]:
    """Factory: a started KazooClient on ``hosts`` and the list of its states."""
    clients: list[KazooClient] = []

    def make(hosts: str) -> tuple[KazooClient, list[KazooState]]:
        client = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
        states: list[KazooState] = []
        client.add_listener(states.append)  # never block in a listener
        client.start(timeout=10)
        clients.append(client)
        return client, states

    yield make
    for client in clients:
        client.stop()
        client.close()


def test_server_answers_four_letter_words(zookeeper_server: ManagedZooKeeper) -> None:
    assert four_letter_word(zookeeper_server.host, zookeeper_server.port, "ruok") == "imok"
    assert zookeeper_server.mode() == "standalone"
    assert zookeeper_server.address == f"127.0.0.1:{zookeeper_server.port}"


def test_kazoo_writes_and_reads_under_chroot(
        zookeeper_server: ManagedZooKeeper, zk_chroot: str, zk_hosts: str,
        kazoo_client: ClientFactory) -> None:
    client, _ = kazoo_client(zk_hosts)
    client.create("/node", b"payload")
    assert client.get("/node")[0] == b"payload"
    root, _ = kazoo_client(zookeeper_server.address)
    assert root.exists(f"{zk_chroot}/node") is not None


def test_expire_session_loses_the_session(zk_hosts: str, kazoo_client: ClientFactory) -> None:
    client, states = kazoo_client(zk_hosts)
    client.create("/member", ephemeral=True)
    old_session = client.client_id[0]

    expire_session(zk_hosts, client.client_id)

    wait_for(lambda: KazooState.LOST in states, 10, "the client to see LOST")
    wait_for(lambda: client.state == KazooState.CONNECTED, 10, "a new session")
    assert client.client_id[0] != old_session
    assert not client.exists("/member")


def test_proxy_forwards_resets_and_blackholes(
        zookeeper_server: ManagedZooKeeper,
        tcp_proxy: Callable[[str, int], TCPProxy]) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    assert ruok(proxy.host, proxy.port) == "imok"

    proxy.cut("reset")
    assert ruok(proxy.host, proxy.port) is None

    proxy.cut("blackhole")
    with pytest.raises(TimeoutError):
        ruok(proxy.host, proxy.port, timeout=0.5)

    proxy.restore()
    assert ruok(proxy.host, proxy.port) == "imok"


def test_blackhole_suspends_and_restore_keeps_the_session(
        zookeeper_server: ManagedZooKeeper, zk_chroot: str,
        tcp_proxy: Callable[[str, int], TCPProxy], kazoo_client: ClientFactory) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    client, states = kazoo_client(proxy.address + zk_chroot)
    client.create("/member", ephemeral=True)
    session = client.client_id[0]

    proxy.cut("blackhole")
    wait_for(lambda: client.state == KazooState.SUSPENDED, SESSION_TIMEOUT,
             "the client to go SUSPENDED")
    proxy.restore()
    wait_for(lambda: client.state == KazooState.CONNECTED, SESSION_TIMEOUT,
             "the client to reconnect")

    assert KazooState.LOST not in states
    assert client.client_id[0] == session
    assert client.exists("/member") is not None


@pytest.mark.slow
def test_ensemble_survives_the_loss_of_its_leader(
        zookeeper_ensemble: ZooKeeperEnsemble, kazoo_client: ClientFactory) -> None:
    client, states = kazoo_client(zookeeper_ensemble.hosts)
    path = f"/harness-{uuid.uuid4().hex}"
    client.create(path, ephemeral=True)
    session = client.client_id[0]
    old_leader = zookeeper_ensemble.leader()

    zookeeper_ensemble.kill(old_leader)

    new_leader = zookeeper_ensemble.leader(timeout=20)
    assert new_leader != old_leader
    wait_for(lambda: node_exists(client, path), 2 * SESSION_TIMEOUT,
             "the client to read its node again")
    assert KazooState.LOST not in states
    assert client.client_id[0] == session
    witness, _ = kazoo_client(zookeeper_ensemble.hosts)
    assert witness.exists(path).ephemeralOwner == session


def test_ensemble_member_rejoins(zookeeper_ensemble: ZooKeeperEnsemble) -> None:
    follower = (zookeeper_ensemble.leader() + 1) % len(zookeeper_ensemble.servers)
    zookeeper_ensemble.kill(follower)
    assert zookeeper_ensemble.servers[follower].mode() is None

    zookeeper_ensemble.start_one(follower)

    assert zookeeper_ensemble.servers[follower].mode() == "follower"


def test_restart_keeps_data(managed_zookeeper: ZooKeeperFactory) -> None:
    server = managed_zookeeper()
    with connected(server.address) as client:
        client.create("/kept", b"1")

    server.restart()

    with connected(server.address) as client:
        assert client.get("/kept")[0] == b"1"


def test_close_kills_the_server_and_removes_its_directory() -> None:
    with ManagedZooKeeper() as server:
        directory = server.log_path.parent
        assert server.running and directory.exists()
    assert not server.running
    assert not directory.exists()


def test_start_detects_a_port_clash(
        zookeeper_server: ManagedZooKeeper, managed_zookeeper: ZooKeeperFactory) -> None:
    with pytest.raises(ZkpollError, match="already used by another ZooKeeper"):
        managed_zookeeper(client_port=zookeeper_server.port)
    assert not managed_zookeeper.servers[0].running
    assert zookeeper_server.mode() == "standalone"


def test_failed_start_reports_the_log(
        managed_zookeeper: ZooKeeperFactory, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("ZKPOLL_ZOOKEEPER_CLASSPATH", str(tmp_path))  # no jar in it
    with pytest.raises(ZkpollError, match="(?s)exited with code 1.*QuorumPeerMain"):
        managed_zookeeper()


def test_missing_installation_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZKPOLL_JAVA", "/nonexistent/java")
    with pytest.raises(ZkpollError, match="Java not found.*apt-get install -y zookeeper"):
        find_installation()
    monkeypatch.delenv("ZKPOLL_JAVA")
    monkeypatch.setenv("ZKPOLL_ZOOKEEPER_CLASSPATH", "/nonexistent/zk.jar")
    with pytest.raises(ZkpollError, match="missing /nonexistent/zk.jar.*ZKPOLL_ZOOKEEPER_CLASSPATH"):
        find_installation()
