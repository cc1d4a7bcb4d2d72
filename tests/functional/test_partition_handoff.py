"""Two partitions on a real backend (ZooKeeper, Redis) hand unreachable keys
to each other through their inboxes (the handoff rules and their I/O,
without agents)."""

from __future__ import annotations

import threading
import time

import pytest

from zkpoll.ownership import Partition, Poll, PollKind
from zkpoll.service.cycles import cycle_index, cycle_start
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

KEYS = [f"r{i}" for i in range(40)]
INTERVAL = 6.0  # the test runs inside one cycle after both members are active


def test_an_unreachable_key_is_polled_by_its_successor_then_given_up_once(
        backend_url: str, coordinators) -> None:
    if backend_url.startswith("memcached"):  # no inboxes: failover_hops is refused there
        assert coordinators(backend_url, 10.0).supports_handoffs is False
        return
    partitions = {}
    polls: dict[str, list[Poll]] = {"a": [], "b": []}
    lock = threading.Lock()
    for name in ("a", "b"):
        partition = Partition(coordinators(backend_url, 10.0), "g", settle_time=0.5, failover_hops=1)

        def record(poll: Poll, name: str = name) -> None:
            with lock:
                polls[name].append(poll)
        partition.on_poll = record
        partition.join({"weight": 1}, wait=5)
        partitions[name] = partition
    try:
        for partition in partitions.values():
            wait_for(lambda p=partition: len(p.membership.members) == 2, 10, "both listed")
        active = max(p.state.own.active_at for p in partitions.values() if p.state.own)
        index = cycle_index(active, INTERVAL) + 1  # the first cycle both are active in
        start = cycle_start(index, INTERVAL)
        time.sleep(max(0.0, start - time.time()))
        owned = {name: p.plan_cycle("s", index, start, INTERVAL, KEYS)
                 for name, p in partitions.items()}
        a, b = partitions["a"], partitions["b"]
        assert owned["a"] and owned["b"]
        assert sorted(owned["a"] + owned["b"]) == sorted(KEYS)
        blocked = owned["a"][:3]
        assert a.hand_off("s", index, start, INTERVAL, blocked) == (), "all handed off"
        wait_for(lambda: polls["b"], 10, "b polls what a handed it")
        [poll] = polls["b"]
        assert (poll.kind, poll.index, sorted(poll.keys)) == (
            PollKind.HANDOFF, index, sorted(blocked))
        assert poll.tried == (a.coordinator.member_id,)
        # b cannot reach them either: with one hop, it gives up (publishes once)
        gave_up = b.hand_off("s", index, start, INTERVAL, poll.keys, poll.tried)
        assert sorted(gave_up) == sorted(blocked)
        time.sleep(1.0)
        assert not polls["a"] and len(polls["b"]) == 1, "nobody polls them again"
    finally:
        for partition in partitions.values():
            partition.leave(wait=5)
