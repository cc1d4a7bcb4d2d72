"""What only the ZooKeeper backend has, against a real ZooKeeper: sessions with
ids that expire and come back new, a quorum that loses its leader, a connection
cut through a proxy, a clear error for an unreachable server.

What every backend shares (membership across processes, kill and leave
timings, watches, updates and snapshots) is in test_coordinator_contract.py,
which runs against ZooKeeper too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from oslo_config import cfg

from tests.functional.procs import member
from tests.functional.test_coordinator_contract import ready, sees
from zkpoll.coordination import SessionState, get_coordinator, register_opts
from zkpoll.exceptions import CoordinatorUnreachable
from zkpoll.testing.waiting import wait_for
from zkpoll.testing.zookeeper import expire_session, free_port

pytestmark = pytest.mark.functional
SESSION_TIMEOUT = 2.0


def url_for(hosts: str, root: str, timeout: float = SESSION_TIMEOUT) -> str:
    return f"zookeeper://{hosts}{root}?timeout={timeout}"


def coordinator_for(url: str, heartbeat: float = 0.2):
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", url, "coordination")
    conf.set_override("heartbeat_interval", heartbeat, "coordination")
    return get_coordinator(conf)


def test_expired_session_reregisters_by_itself(zookeeper_server, zk_chroot,
                                               tmp_path: Path) -> None:
    url = url_for(zookeeper_server.address, zk_chroot)
    children = [member(url, tmp_path, f"m{i}") for i in range(2)]
    try:
        ids = ready(children)
        sees(children[1], set(ids), 10, after=0)
        first = children[0].last("ready")
        assert first is not None
        marks = [child.mark() for child in children]
        expire_session(zookeeper_server.address, (first["session"], bytes.fromhex(first["password"])))
        lost = children[0].wait_event(lambda e: e["event"] == "state" and e["state"] == "lost",
                                      10, after=marks[0], what="state lost")
        back = children[0].wait_event(
            lambda e: e["event"] == "state" and e["state"] == "connected", 10,
            after=children[0].events.index(lost), what="state connected after lost")
        assert back["session"] != first["session"]
        new_id = back["me"]
        assert new_id != ids[0]
        sees(children[1], {new_id, ids[1]}, 10, after=marks[1])
        sees(children[0], {new_id, ids[1]}, 10, after=marks[0])
    finally:
        for child in children:
            child.kill()


def test_leader_loss_keeps_sessions_and_membership(zookeeper_ensemble, zk_chroot,
                                                   tmp_path: Path) -> None:
    url = url_for(zookeeper_ensemble.hosts, zk_chroot, timeout=4.0)
    children = [member(url, tmp_path, f"m{i}") for i in range(3)]
    try:
        ids = ready(children)
        for child in children:
            sees(child, set(ids), 10, after=0)
        marks = [child.mark() for child in children]
        zookeeper_ensemble.kill(zookeeper_ensemble.leader())
        wait_for(lambda: zookeeper_ensemble.leader() is not None, 30, "a new leader",
                 interval=0.2)
        time.sleep(4.0 * 1.5)  # longer than the session timeout: expiry would show now
        for child, mark in zip(children, marks):
            later = child.events[mark:]
            assert not any(e["event"] == "state" and e["state"] == "lost" for e in later), later
            memberships = [e for e in later if e["event"] == "membership"]
            assert all(set(e["members"]) == set(ids) for e in memberships), memberships
            child.wait_event(lambda e: e["event"] == "state" and e["state"] == "connected"
                             or e["event"] == "ready", 1, what="connected or ready")
        current = coordinator_for(url)
        current.start(timeout=10)
        try:
            assert set(current.get_members("central").member_ids) == set(ids)
        finally:
            current.stop()
    finally:
        for child in children:
            child.kill()


def test_cut_connection_suspends_then_resumes_same_session(zookeeper_server, zk_chroot,
                                                           tcp_proxy) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    coordinator = coordinator_for(url_for(proxy.address, zk_chroot, timeout=6.0))
    states: list[SessionState] = []
    coordinator.add_state_listener(states.append)
    coordinator.start(timeout=10)
    try:
        coordinator.join("g", wait=5)
        member_id, session = coordinator.member_id, coordinator.client_id[0]
        proxy.cut("blackhole")
        wait_for(lambda: coordinator.state is SessionState.SUSPENDED, 10, "SUSPENDED")
        assert coordinator.lease_remaining() < coordinator.session_timeout
        proxy.restore()
        wait_for(lambda: coordinator.state is SessionState.CONNECTED, 10, "CONNECTED again")
        assert (coordinator.member_id, coordinator.client_id[0]) == (member_id, session)
        wait_for(lambda: coordinator.lease_remaining() > coordinator.session_timeout - 1, 5,
                 "a renewed lease")
        assert SessionState.LOST not in states
    finally:
        coordinator.stop()


def test_unreachable_zookeeper_is_one_clear_error_and_stop_returns() -> None:
    coordinator = coordinator_for(f"zookeeper://127.0.0.1:{free_port()}/x?timeout=2")
    started = time.monotonic()
    with pytest.raises(CoordinatorUnreachable, match=r"cannot reach ZooKeeper at 127\.0\.0\.1"):
        coordinator.start(timeout=1.0)
    assert time.monotonic() - started < 3
    assert coordinator.lease_remaining() < 0
    coordinator.stop()
    assert coordinator.state is SessionState.STOPPED
