"""The ZooKeeper backend against a real ZooKeeper: members in separate processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from oslo_config import cfg

from tests.functional.procs import Child, member
from zkpoll.coordination import Membership, SessionState, get_coordinator, register_opts
from zkpoll.exceptions import CoordinatorUnreachable
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


def ready(children: list[Child]) -> list[str]:
    return [c.wait_for(lambda e: e["event"] == "ready", 30)["me"] for c in children]


def sees(child: Child, ids: set[str], timeout: float) -> dict:
    return child.wait_for(lambda e: e["event"] == "membership" and set(e["members"]) == ids,
                          timeout)


def test_members_in_separate_processes_see_the_same_membership(zookeeper_server, zk_chroot,
                                                               tmp_path: Path) -> None:
    url = url_for(zookeeper_server.address, zk_chroot)
    children = [member(url, tmp_path, f"m{i}") for i in range(3)]
    try:
        ids = set(ready(children))
        assert len(ids) == 3
        for child in children:
            sees(child, ids, 10)
    finally:
        for child in children:
            child.kill()


def test_kill9_member_is_gone_for_the_others_within_session_timeout(zookeeper_server,
                                                                     zk_chroot,
                                                                     tmp_path: Path) -> None:
    url = url_for(zookeeper_server.address, zk_chroot)
    children = [member(url, tmp_path, f"m{i}") for i in range(3)]
    try:
        ids = ready(children)
        for child in children:
            sees(child, set(ids), 10)
        killed_at = time.time()
        children[0].kill()
        for child in children[1:]:
            event = sees(child, set(ids[1:]), SESSION_TIMEOUT + 5)
            assert event["t"] - killed_at <= SESSION_TIMEOUT + 1.0, event["t"] - killed_at
    finally:
        for child in children:
            child.kill()


def test_expired_session_reregisters_by_itself(zookeeper_server, zk_chroot,
                                               tmp_path: Path) -> None:
    url = url_for(zookeeper_server.address, zk_chroot)
    children = [member(url, tmp_path, f"m{i}") for i in range(2)]
    try:
        ids = ready(children)
        sees(children[1], set(ids), 10)
        first = children[0].last("ready")
        assert first is not None
        expire_session(zookeeper_server.address, (first["session"], bytes.fromhex(first["password"])))
        lost = children[0].wait_for(lambda e: e["event"] == "state" and e["state"] == "lost", 10)
        back = children[0].wait_for(lambda e: e["event"] == "state" and e["state"] == "connected",
                                    10, after=children[0].events.index(lost))
        assert back["session"] != first["session"]
        new_id = back["me"]
        assert new_id != ids[0]
        sees(children[1], {new_id, ids[1]}, 10)
        sees(children[0], {new_id, ids[1]}, 10)
    finally:
        for child in children:
            child.kill()


def test_graceful_stop_removes_the_member_at_once(zookeeper_server, zk_chroot,
                                                  tmp_path: Path) -> None:
    url = url_for(zookeeper_server.address, zk_chroot, timeout=20)
    children = [member(url, tmp_path, f"m{i}") for i in range(2)]
    try:
        ids = ready(children)
        sees(children[1], set(ids), 10)
        children[0].close_stdin()
        children[0].wait_for(lambda e: e["event"] == "stopped", 10)
        sees(children[1], {ids[1]}, 2.0)  # far below the 20 s session timeout
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
            sees(child, set(ids), 10)
        marks = [len(c.events) for c in children]
        zookeeper_ensemble.kill(zookeeper_ensemble.leader())
        deadline = time.monotonic() + 30
        while zookeeper_ensemble.leader() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert zookeeper_ensemble.leader() is not None, "no new leader elected"
        time.sleep(4.0 * 1.5)  # longer than the session timeout: expiry would show now
        for child, mark in zip(children, marks):
            later = child.events[mark:]
            assert not any(e["event"] == "state" and e["state"] == "lost" for e in later), later
            memberships = [e for e in later if e["event"] == "membership"]
            assert all(set(e["members"]) == set(ids) for e in memberships), memberships
            child.wait_for(lambda e: e["event"] == "state" and e["state"] == "connected"
                           or e["event"] == "ready", 1)
        current = coordinator_for(url)
        current.start(timeout=10)
        try:
            assert set(current.get_members("central").member_ids) == set(ids)
        finally:
            current.stop()
    finally:
        for child in children:
            child.kill()


def test_in_process_watch_update_and_data(zookeeper_server, zk_chroot) -> None:
    a = coordinator_for(url_for(zookeeper_server.address, zk_chroot))
    b = coordinator_for(url_for(zookeeper_server.address, zk_chroot))
    seen: list[Membership] = []
    a.start(timeout=10)
    b.start(timeout=10)
    try:
        a.watch("g", seen.append)
        a.join("g", {"weight": 2}, wait=5)
        b.join("g", {"x": 1}, wait=5)
        b.update("g", {"x": 2}, wait=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            last = seen[-1] if seen else None
            mb = last.get(b.member_id) if last else None
            if mb is not None and mb.data.get("x") == 2:
                break
            time.sleep(0.05)
        last = seen[-1]
        assert set(last.member_ids) == {a.member_id, b.member_id}
        assert last.get(a.member_id).weight == 2.0
        assert last.get(b.member_id).data["x"] == 2
        assert [m.version for m in seen] == sorted({m.version for m in seen})
        assert a.get_groups() == ["g"]
        assert 0 < a.lease_remaining() <= a.session_timeout
        late: list[Membership] = []
        a.watch("g", late.append)  # a second watcher gets the current snapshot
        deadline = time.monotonic() + 5
        while not late and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late and late[0].member_ids == last.member_ids
    finally:
        a.stop()
        b.stop()


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
        deadline = time.monotonic() + 10
        while coordinator.state is not SessionState.SUSPENDED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert coordinator.state is SessionState.SUSPENDED
        assert coordinator.lease_remaining() < coordinator.session_timeout
        proxy.restore()
        deadline = time.monotonic() + 10
        while coordinator.state is not SessionState.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert coordinator.state is SessionState.CONNECTED
        assert (coordinator.member_id, coordinator.client_id[0]) == (member_id, session)
        deadline = time.monotonic() + 5
        while coordinator.lease_remaining() < coordinator.session_timeout - 1 \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert coordinator.lease_remaining() > coordinator.session_timeout - 1
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
