"""The three races the ownership core v2 removed, each against real servers.

1. Two sources of one agent claim cycles at the same time: every claims
   record the backend confirms holds both newest claims (the record is built
   and queued in one step; before, each source read, merged and wrote it in
   two lock sections, and one could publish a map without the other's claim).
2. An agent holds no ownership thread before it starts or after it stops
   (before, ``Agent()`` started a ``zkpoll-resume`` thread that ``start()``
   replaced without stopping).
3. An ``update()`` made while the registration hook runs is published, not
   dropped and marked applied (before, the hook's result on an older copy of
   the data replaced the newer data).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.functional.test_coordinator_contract import coordinator_for
from zkpoll.ownership import Partition, claimed_cycle
from zkpoll.polling.agent import Agent
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


def test_concurrent_claims_of_two_sources_are_never_lost(backend_url: str, coordinators) -> None:
    coordinator = coordinators(backend_url, 10.0)
    partition = Partition(coordinator, "g", settle_time=0.5)
    partition.join({"weight": 1}, wait=5)
    wait_for(partition.registered, 10, "our own registration in the snapshot")
    time.sleep(0.6)  # past active_at
    keys = [f"r{i}" for i in range(20)]
    results: dict[str, list[bool]] = {"a": [], "b": []}
    try:
        for index in range(1, 16):
            barrier = threading.Barrier(2)
            start = time.time()

            def claim(source: str, index: int = index, start: float = start,
                      barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                owned = partition.plan_cycle(source, index, start, 60.0, keys)
                results[source].append(owned is not None and len(owned) == len(keys))

            threads = [threading.Thread(target=claim, args=(s,)) for s in ("a", "b")]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            assert results["a"][-1] and results["b"][-1], f"cycle {index} not confirmed"
            record = coordinator.read_claims("g", [coordinator.member_id])[
                coordinator.member_id]
            assert (claimed_cycle(record, "a"), claimed_cycle(record, "b")) == (index, index)
    finally:
        partition.leave(wait=5)


def _zkpoll_threads() -> set[str]:
    return {t.name for t in threading.enumerate()
            if t.name.startswith(("zkpoll-resume", "zkpoll-ownership", "zkpoll-catchup"))}


def test_an_agent_holds_no_ownership_thread_before_start_or_after_stop(
        zookeeper_server, zk_chroot: str, tmp_path: Path) -> None:
    from oslo_config import cfg

    (tmp_path / "polling.yaml").write_text(
        "sources:\n  - name: s\n    interval: 1\n    meters: ['synthetic.*']\n"
        "    resources: [a, b, c]\n")
    from zkpoll.coordination import register_opts
    from zkpoll.polling import options

    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("cfg_file", str(tmp_path / "polling.yaml"), "polling")
    conf.set_override("backend_url", f"zookeeper://{zookeeper_server.address}{zk_chroot}"
                      "?timeout=4", "coordination")
    conf.set_override("settle_time", 2.0, "coordination")
    conf.set_override("heartbeat_interval", 0.5, "coordination")
    before = _zkpoll_threads()
    agent = Agent(conf, ["synthetic"])
    agent.setup()
    assert _zkpoll_threads() == before  # neither the constructor nor setup() start any
    agent.start()
    assert agent.partitions, "a partitioned agent (its threads start when it needs them)"
    for partition in agent.partitions.values():
        partition._threads.post(None)  # a tick, as a skipped cycle posts: the worker runs
    assert _zkpoll_threads() - before, "the partition's worker runs"
    agent.stop(graceful=False)
    deadline = time.monotonic() + 10
    while _zkpoll_threads() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _zkpoll_threads() - before == set()


def test_an_update_during_the_registration_hook_is_published(backend_url: str,
                                                             coordinators) -> None:
    coordinator = coordinators(backend_url, 10.0)
    in_hook, release = threading.Event(), threading.Event()

    def slow_hook(group: str, data: dict[str, Any]) -> dict[str, Any]:
        in_hook.set()
        release.wait(10)
        return dict(data, registered=True)

    coordinator.set_registration_hook("g", slow_hook)
    coordinator.join("g", {"x": 1})
    assert in_hook.wait(10)
    updated = threading.Thread(target=coordinator.update, args=("g", {"x": 2}),
                               kwargs={"wait": 10})
    updated.start()
    time.sleep(0.3)  # the update is queued while the hook still runs
    release.set()
    updated.join(15)

    def published() -> bool:
        me = coordinator.get_members("g").get(coordinator.member_id)
        return me is not None and me.data.get("x") == 2 and me.data.get("registered") is True
    wait_for(published, 10, "x = 2 and the hook's field, both published")


def test_a_partition_starts_its_worker_with_its_first_skip(backend_url: str) -> None:
    before = _zkpoll_threads()
    coordinator = coordinator_for(backend_url, 10.0)  # never started: no contact, fenced
    partition = Partition(coordinator, "g", settle_time=0.5)
    partition._threads.open()  # what join() does besides publishing
    try:
        assert _zkpoll_threads() == before, "no thread before there is work"
        assert partition.plan_cycle("s", 1, time.time(), 10.0, ["a"]) is None  # skipped
        assert "zkpoll-ownership-g" in _zkpoll_threads() - before
    finally:
        partition.close()
    assert _zkpoll_threads() - before == set()
