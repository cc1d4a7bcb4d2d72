"""Claims records written from the caller's thread (ZooKeeper), against a real server.

The write skips the coordinator's worker; what must still hold: the record
never goes back to an older generation, a claim counts only if it was
answered in the session in which the member is registered, and whatever
cannot be written at once is written by the worker later.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import SessionExpiredError

from tests.functional.test_coordination_zk import coordinator_for, url_for
from zkpoll.coordination.zookeeper import ZooKeeperCoordinator
from zkpoll.coordination.zookeeper._claims_writer import ClaimsWriter
from zkpoll.testing import expire_session
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture
def coordinator(zookeeper_server, zk_chroot: str) -> Iterator[ZooKeeperCoordinator]:
    made = coordinator_for(url_for(zookeeper_server.address, zk_chroot, timeout=6.0))
    made.start(timeout=10)
    yield made
    made.stop()


def stored(coordinator: ZooKeeperCoordinator, group: str) -> dict:
    return coordinator.read_claims(group, [coordinator.member_id])[coordinator.member_id]


def test_claims_from_many_threads_end_on_the_newest_record(
        coordinator: ZooKeeperCoordinator) -> None:
    coordinator.join("g", {"weight": 1}, wait=5)
    lock = threading.Lock()  # the partition's lock: one record built per generation
    confirmed: list[int] = []
    counter = [0]

    def claimer() -> None:
        for _ in range(30):
            with lock:
                counter[0] += 1
                gen = coordinator.put_claims("g", {"n": counter[0]})
            if coordinator.wait_claims("g", gen, 10.0):
                confirmed.append(gen)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(confirmed) == 120  # every claim confirmed: the first one was a create
    assert stored(coordinator, "g") == {"n": 120}  # the newest, never an older one


def test_a_claim_before_registration_is_written_once_registered(
        zookeeper_server, zk_chroot: str) -> None:
    coordinator = coordinator_for(url_for(zookeeper_server.address, zk_chroot, timeout=6.0))
    coordinator.start(timeout=10)
    try:
        coordinator.join("fresh", {"weight": 1})  # no wait: not registered yet
        gen = coordinator.put_claims("fresh", {"cycles": {"s": 7}})
        assert coordinator.wait_claims("fresh", gen, 10.0)
        assert stored(coordinator, "fresh") == {"cycles": {"s": 7}}
        gen = coordinator.put_claims("fresh", {"cycles": {"s": 8}})  # then: directly
        assert coordinator.wait_claims("fresh", gen, 10.0)
        assert stored(coordinator, "fresh") == {"cycles": {"s": 8}}
    finally:
        coordinator.stop()


def test_a_deleted_record_is_created_again(coordinator: ZooKeeperCoordinator,
                                           zookeeper_server, zk_chroot: str) -> None:
    coordinator.join("g", {"weight": 1}, wait=5)
    assert coordinator.wait_claims("g", coordinator.put_claims("g", {"n": 1}), 10.0)
    other = KazooClient(hosts=zookeeper_server.address)
    other.start(10)
    try:
        other.delete(f"{zk_chroot}/groups/g/claims/{coordinator.member_id}")
    finally:
        other.stop()
        other.close()
    gen = coordinator.put_claims("g", {"n": 2})  # a set: NoNode, then the worker creates it
    assert coordinator.wait_claims("g", gen, 10.0)
    assert stored(coordinator, "g") == {"n": 2}


def test_an_answer_in_another_session_confirms_nothing(zookeeper_server,
                                                       zk_chroot: str) -> None:
    client = KazooClient(hosts=zookeeper_server.address + zk_chroot, timeout=4.0)
    client.start(10)
    try:
        client.ensure_path("/c")
        writer = ClaimsWriter(client)
        first = client.client_id
        assert writer.session() == first[0]
        writer.allow("g", first[0], "/c/me")
        sent = writer.send("g", json.dumps({"n": 1}).encode(), 1)
        assert sent is not None and sent.created
        sent.result.wait(10)
        expire_session(zookeeper_server.address, first)
        wait_for(lambda: client.client_id is not None and client.client_id[0] != first[0],
                   20, "a new session")
        # answered, but the session it was meant for is gone: no confirmation
        assert isinstance(writer.settle("g", sent), SessionExpiredError)
        # and nothing is sent any more for the old registration
        assert writer.send("g", b"{}", 2) is None
        writer.allow("g", client.client_id[0], "/c/me2")
        again = writer.send("g", b"{}", 3)
        assert again is not None and again.result.wait(10)
        assert writer.settle("g", again) is None
    finally:
        client.stop()
        client.close()


def test_a_claim_counts_as_contact(coordinator: ZooKeeperCoordinator) -> None:
    coordinator.join("g", {"weight": 1}, wait=5)
    before = time.monotonic()
    gen = coordinator.put_claims("g", {"n": 1})
    assert coordinator.wait_claims("g", gen, 10.0)
    assert coordinator.last_contact >= before


def test_records_of_members_gone_long_ago_are_swept(zookeeper_server, zk_chroot: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from zkpoll.coordination.zookeeper import claims

    url = url_for(zookeeper_server.address, zk_chroot, timeout=6.0)
    stays, goes = coordinator_for(url), coordinator_for(url)
    stays.start(timeout=10)
    goes.start(timeout=10)
    seen: list[list[str]] = []
    # the sweeper is the first member of the view it holds
    stays.watch("g", lambda membership: seen.append(list(membership.member_ids)))
    try:
        for c in (stays, goes):
            c.join("g", {"weight": 1}, wait=5)
            assert c.wait_claims("g", c.put_claims("g", {"n": 1}), 10.0)
        gone_id = goes.member_id
        goes.stop()
        assert stays.read_claims("g", [gone_id])[gone_id] == {"n": 1}  # kept for late readers
        # a sweep from a view that still holds the member would find nothing to sweep
        wait_for(lambda: seen and seen[-1] == [stays.member_id], 10,
                   "the view of the member that stays to drop the one gone")
        monkeypatch.setattr(claims, "CLAIMS_RETENTION", 0.0)
        stays._next_sweep = 0.0  # sweep at the next heartbeat instead of in 10 minutes
        wait_for(lambda: stays.read_claims("g", [gone_id])[gone_id] == {}, 10,
                   "the record of the member gone to be swept")
        assert stays.read_claims("g", [stays.member_id])[stays.member_id] == {"n": 1}
    finally:
        stays.stop()
        goes.stop()


def test_claims_written_often_stand_in_for_heartbeats(
        coordinator: ZooKeeperCoordinator) -> None:
    coordinator.join("g", {"weight": 1}, wait=5)
    client = coordinator._client
    beats: list[str] = []
    real_exists = client.exists_async

    def counting_exists(path: str, *args: object, **kwargs: object) -> object:
        beats.append(path)  # the heartbeat is an exists() of the root
        return real_exists(path, *args, **kwargs)

    client.exists_async = counting_exists
    try:
        deadline = time.monotonic() + 2.0  # ten heartbeat intervals (0.2 s)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            assert coordinator.wait_claims("g", coordinator.put_claims("g", {"n": n}), 10.0)
            assert time.monotonic() - coordinator.last_contact < 1.0  # the lease stays fresh
            time.sleep(0.05)
        assert len(beats) <= 2  # at most one beat that raced a claim, at either end
        beats.clear()
        time.sleep(1.0)  # no claims: heartbeats again
        assert len(beats) >= 2
    finally:
        client.exists_async = real_exists
