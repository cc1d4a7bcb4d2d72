"""The coordinator contract, run unchanged against ZooKeeper, Redis and Memcached.

Every test takes ``backend_url`` (a real server per backend, a root/key
prefix of its own) or starts a private server of each kind to break.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from tests.functional.procs import Child, member
from zkpoll.coordination import (
    Coordinator,
    Membership,
    SessionState,
    get_coordinator,
    parse_backend_url,
    register_opts,
)
from zkpoll.coordination.kv.memcached import MemcachedStore
from zkpoll.coordination.kv.redis import RedisStore
from zkpoll.exceptions import CoordinationError, NotJoined
from zkpoll.testing import (
    ManagedMemcached,
    ManagedRedis,
    ManagedZooKeeper,
    expire_session,
)
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

TIMEOUT = 2.0
HEARTBEAT = 0.2
#: How long past its timeout a dead member may still be listed.  ZooKeeper
#: and Redis expire to the tick or millisecond; memcached's clock ticks once
#: a second and its TTLs are whole seconds (see docs/backends.md).
SLACK = {"zookeeper": 1.0, "redis": 1.0, "memcached": 2.0}


def kind(url: str) -> str:
    return parse_backend_url(url).scheme


def coordinator_for(url: str, timeout: float = TIMEOUT) -> Coordinator:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", f"{url}?timeout={timeout:g}", "coordination")
    conf.set_override("heartbeat_interval", HEARTBEAT, "coordination")
    conf.set_override("retry_backoff", 0.1, "coordination")
    conf.set_override("max_retry_interval", 1.0, "coordination")
    return get_coordinator(conf)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def ready(started: list[Child]) -> list[str]:
    return [c.wait_event(lambda e: e["event"] == "ready", 30, what="ready")["me"]
            for c in started]


def sees(child: Child, ids: set[str], timeout: float, *, after: int) -> dict[str, Any]:
    """The first membership view of ``child`` listing exactly ``ids``, among the
    events from position ``after`` (:meth:`Child.mark`, taken before the action
    awaited: a view from before it can never match)."""
    return child.wait_event(lambda e: e["event"] == "membership" and set(e["members"]) == ids,
                            timeout, after=after, what=f"a membership view of {sorted(ids)}")


def delay(event: dict[str, Any], action_at: float) -> float:
    """Seconds from the action to the child's view ``event``; never negative (the
    view was matched among events after the action)."""
    seconds = event["t"] - action_at
    assert seconds >= 0, f"the view {event} predates the action at {action_at}"
    return seconds


def expire(url: str, coordinator: Coordinator, group: str) -> None:
    """Make the backend forget ``coordinator``'s registration, as after a long outage."""
    if kind(url) == "zookeeper":
        expire_session(parse_backend_url(url).hosts[0], coordinator.client_id)
        return
    store_class = RedisStore if kind(url) == "redis" else MemcachedStore
    store = store_class(parse_backend_url(url), 2.0)  # another client of the same server
    try:
        store.remove(group, coordinator.member_id)
    finally:
        store.close()


def test_join_update_leave_watch_and_snapshots(backend_url: str, coordinators) -> None:
    a, b = coordinators(backend_url), coordinators(backend_url)
    seen: list[Membership] = []
    a.watch("g", seen.append)
    a.join("g", {"weight": 2}, wait=5)
    b.join("g", {"x": 1}, wait=5)
    b.update("g", {"x": 2}, wait=5)

    def b_has_x2() -> bool:
        mb = seen[-1].get(b.member_id) if seen else None
        return mb is not None and mb.data.get("x") == 2
    wait_for(b_has_x2, 5, "b's update in a's snapshot")
    last = seen[-1]
    assert set(last.member_ids) == {a.member_id, b.member_id}
    assert last.get(a.member_id).weight == 2.0
    assert last.get(b.member_id).data["host"]  # the base data every member publishes
    assert [m.version for m in seen] == sorted({m.version for m in seen})
    assert all(isinstance(m.members, tuple) for m in seen)  # immutable snapshots
    read = b.get_members("g")
    assert read.member_ids == last.member_ids
    assert read.get(b.member_id).data["x"] == 2
    assert a.get_groups() == ["g"] and b.get_groups() == ["g"]
    assert b.get_members("nothing-here").members == ()
    assert 0 < a.lease_remaining() <= a.session_timeout

    late: list[Membership] = []
    a.watch("g", late.append)  # a second watcher gets the current snapshot at once
    wait_for(lambda: late, 5, "the replayed snapshot")
    assert late[0].member_ids == last.member_ids

    with pytest.raises(NotJoined):
        a.update("other", {"x": 1})
    a.leave("other", wait=1)  # leaving a group never joined is no error
    b.leave("g", wait=5)
    wait_for(lambda: seen[-1].member_ids == (a.member_id,), 2, "b's leave")
    assert a.get_members("g").member_ids == (a.member_id,)


def test_members_in_separate_processes_see_each_other(backend_url: str, tmp_path: Path,
                                                      children: list[Child]) -> None:
    url = f"{backend_url}?timeout={TIMEOUT:g}"
    children += [member(url, tmp_path, f"m{i}") for i in range(3)]
    ids = set(ready(children))
    assert len(ids) == 3
    for child in children:
        sees(child, ids, 10, after=0)  # after the start of every child


def test_killed_member_disappears_within_its_timeout(backend_url: str, tmp_path: Path,
                                                     children: list[Child]) -> None:
    url = f"{backend_url}?timeout={TIMEOUT:g}"
    children += [member(url, tmp_path, f"m{i}") for i in range(3)]
    ids = ready(children)
    for child in children:
        sees(child, set(ids), 10, after=0)
    marks = [child.mark() for child in children]
    killed_at = time.time()
    children[0].kill()
    bound = TIMEOUT + SLACK[kind(backend_url)]
    for child, mark in zip(children[1:], marks[1:]):
        event = sees(child, set(ids[1:]), bound + 5, after=mark)
        assert delay(event, killed_at) <= bound, delay(event, killed_at)


def test_graceful_leave_is_immediate(backend_url: str, tmp_path: Path,
                                     children: list[Child]) -> None:
    url = f"{backend_url}?timeout=20"
    children += [member(url, tmp_path, f"m{i}") for i in range(2)]
    ids = ready(children)
    sees(children[1], set(ids), 10, after=0)
    mark = children[1].mark()
    left_at = time.time()
    children[0].close_stdin()
    children[0].wait_event(lambda e: e["event"] == "stopped", 10, what="stopped")
    event = sees(children[1], {ids[1]}, 5.0, after=mark)
    assert delay(event, left_at) <= 2.0, delay(event, left_at)  # far below the 20 s timeout


def test_registration_hook_runs_on_every_new_registration(backend_url: str,
                                                          coordinators) -> None:
    coordinator = coordinators(backend_url)
    calls: list[str] = []

    def hook(group: str, data: dict[str, Any]) -> dict[str, Any]:
        calls.append(group)
        return dict(data, registration=len(calls))

    coordinator.set_registration_hook("g", hook)
    seen: list[Membership] = []
    coordinator.watch("g", seen.append)
    coordinator.join("g", {"x": 1}, wait=5)
    first = coordinator.member_id
    assert coordinator.get_members("g").get(first).data["registration"] == 1
    coordinator.update("g", {"x": 2}, wait=5)  # an update is no new registration
    assert calls == ["g"]

    expire(backend_url, coordinator, "g")

    def registered_again() -> bool:
        me = seen[-1].get(coordinator.member_id) if seen else None
        return me is not None and me.data.get("registration") == 2
    wait_for(registered_again, 15, "re-registration under a new session")
    assert coordinator.member_id != first
    assert seen[-1].member_ids == (coordinator.member_id,)
    assert seen[-1].get(coordinator.member_id).data["x"] == 2  # the updated data is kept
    assert coordinator.state is SessionState.CONNECTED


#: Same host, same clock: the measured offset is the backend clock's own bias.
#: ZooKeeper's mtime and Redis's TIME are the host's wall clock; Memcached's
#: clock is its start time plus its uptime, ticked by a 1 s timer, and runs up
#: to about 2 s behind the wall clock (docs/backends.md).
OFFSET_BOUND = {"zookeeper": 0.5, "redis": 0.5, "memcached": 2.0}


def test_clock_offset_is_measured_from_the_backend_answers(backend_url: str,
                                                           coordinators) -> None:
    coordinator = coordinators(backend_url)
    coordinator.join("g", wait=5)
    asked = time.time()
    gen = coordinator.put_claims("g", {"claimed": [1]})
    assert coordinator.wait_claims("g", gen, 10)
    if kind(backend_url) == "zookeeper":  # the claims write's sample, in before its confirmation
        estimate = coordinator.clock()
        assert estimate is not None and estimate.measured_at > asked, estimate
    else:  # a heartbeat after the join
        estimate = wait_for(lambda: (e := coordinator.clock()) and e.measured_at > asked and e,
                            5, "a clock sample from a heartbeat")
    assert abs(estimate.offset) < OFFSET_BOUND[kind(backend_url)] + estimate.error, estimate
    assert 0 <= estimate.error <= estimate.round_trip / 2 + 1.0
    if kind(backend_url) == "memcached":  # a 1 s clock, read at 0.2 s phases: narrows
        wait_for(lambda: coordinator.clock().error < 0.25, 10,
                 "memcached's 1 s clock narrowed by samples at other phases")
    else:
        assert estimate.error < 0.1, estimate

    before = coordinator.clock()
    after = coordinator.measure_clock(timeout=5)
    assert after.measured_at > before.measured_at and after.backend_time >= before.backend_time
    if kind(backend_url) == "zookeeper":  # no sample in between: exactly one more
        assert after.samples == min(before.samples + 1, 8), (before, after)
    assert abs(after.offset) < OFFSET_BOUND[kind(backend_url)] + after.error, after
    delay = coordinator.watch_delay()
    assert 0 <= delay < 30 and math.isfinite(delay)
    if kind(backend_url) == "memcached":  # changes are polled, once per heartbeat
        assert delay >= HEARTBEAT


SERVERS = {"zookeeper": ManagedZooKeeper, "redis": ManagedRedis, "memcached": ManagedMemcached}


@pytest.fixture(params=sorted(SERVERS))
def private_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """A private server of each kind (to stop and restart) and a URL on it."""
    request.getfixturevalue(f"{request.param}_server")  # skip/fail as the shared one does
    server = SERVERS[request.param]()
    server.start()
    try:
        if request.param == "zookeeper":
            yield f"zookeeper://{server.address}/lease", server
        else:
            yield f"{server.url}/lease", server
    finally:
        server.close()


def test_lease_runs_out_while_the_server_is_down_then_rejoins(private_url, coordinators) -> None:
    url, server = private_url
    coordinator = coordinators(url)
    seen: list[Membership] = []
    coordinator.watch("g", seen.append)
    coordinator.join("g", {"x": 1}, wait=5)
    assert 0 < coordinator.lease_remaining() <= coordinator.session_timeout

    server.stop()
    stopped = time.monotonic()
    wait_for(lambda: coordinator.lease_remaining() < 0, coordinator.session_timeout + 2,
               "the lease to run out")
    # no contact after the server stopped: the lease ran out by stop + session timeout
    # (checked on the recorded contact, not on when this thread got to look)
    assert coordinator.last_contact <= stopped
    assert coordinator.state is not SessionState.CONNECTED

    server.start()
    wait_for(lambda: coordinator.state is SessionState.CONNECTED
             and coordinator.lease_remaining() > 0
             and seen and coordinator.member_id in seen[-1].member_ids, 20,
             "reconnection, a renewed lease and re-registration")
    assert coordinator.get_members("g").get(coordinator.member_id).data["x"] == 1


def test_measure_clock_raises_when_the_server_does_not_answer(private_url,
                                                              coordinators) -> None:
    url, server = private_url
    coordinator = coordinators(url)
    known = coordinator.measure_clock(timeout=5)
    server.stop()
    with pytest.raises(CoordinationError):
        coordinator.measure_clock(timeout=1)
    assert coordinator.clock() is not None
    assert coordinator.clock().measured_at >= known.measured_at
