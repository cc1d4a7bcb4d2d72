"""Handoff inboxes (per-resource failover's transport) against a real ZooKeeper.

Two members of one group: A hands resources over to B.  What must hold: B's
callback gets exactly what A sent and A's id; an acknowledged handoff is
deleted and never delivered again; a handoff sent before B watches is
delivered when it starts; a send is confirmed only when the backend applied
it (no member, no inbox, no answer: False, never an exception); inboxes go
away with their member; and B holds one watch per inbox, and none without.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.functional.test_coordination_zk import coordinator_for, url_for
from zkpoll.coordination import Handoff, SessionState
from zkpoll.coordination.zookeeper import ZooKeeperCoordinator, inbox
from zkpoll.exceptions import CoordinationError
from zkpoll.testing import expire_session, four_letter_word
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture
def make(zookeeper_server, zk_chroot: str) -> Iterator[Callable[..., ZooKeeperCoordinator]]:
    """Factory: a started ZooKeeper coordinator (through ``hosts`` if given)."""
    made: list[ZooKeeperCoordinator] = []

    def start(hosts: str | None = None, timeout: float = 6.0) -> ZooKeeperCoordinator:
        coordinator = coordinator_for(url_for(hosts or zookeeper_server.address, zk_chroot,
                                              timeout=timeout))
        made.append(coordinator)
        coordinator.start(timeout=10)
        return coordinator

    yield start
    for coordinator in made:
        coordinator.stop()


@pytest.fixture
def admin(zookeeper_server, zk_chroot: str) -> Iterator[KazooClient]:
    """A plain kazoo client chrooted to the test's root, to look at the tree."""
    client = KazooClient(hosts=zookeeper_server.address + zk_chroot)
    client.start(10)
    yield client
    client.stop()
    client.close()


def joined(*coordinators: ZooKeeperCoordinator, group: str = "g") -> None:
    """Join ``group`` with each, and have each list it (as partitions do)."""
    for coordinator in coordinators:
        coordinator.join(group, {"weight": 1}, wait=5)
    ids = {c.member_id for c in coordinators}
    for coordinator in coordinators:
        seen: list[set[str]] = []
        coordinator.watch(group, lambda m, seen=seen: seen.append(set(m.member_ids)),
                          with_data=False)
        wait_for(lambda seen=seen: seen and ids <= seen[-1], 10, "the group listed")


class Inbox:
    """What one ``watch_inbox`` callback received, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Handoff]] = []

    def __call__(self, handoffs: list[Handoff]) -> None:
        self.batches.append(list(handoffs))

    @property
    def handoffs(self) -> list[Handoff]:
        return [h for batch in self.batches for h in batch]


def inbox_names(admin: KazooClient, group: str, member_id: str) -> list[str] | None:
    path = f"/groups/{group}/inbox/{member_id}"
    return sorted(admin.get_children(path)) if admin.exists(path) else None


def test_a_handoff_reaches_its_recipient_with_payload_and_sender_and_ack_deletes_it(
        make, admin: KazooClient, tcp_proxy, zookeeper_server) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    a, b = make(), make(proxy.address)
    joined(a, b)
    got = Inbox()
    b.watch_inbox("g", got)
    payload = {"source": "cpu", "cycle": 7, "keys": ["r1", "r2"], "tried": [a.member_id]}
    assert a.send_handoff("g", b.member_id, payload, timeout=5) is True
    wait_for(lambda: got.handoffs, 10, "the handoff delivered")
    [first] = got.handoffs
    assert (first.sender, dict(first.payload)) == (a.member_id, payload)
    assert first.handoff_id.startswith(f"{b.member_id}/")
    b.ack_handoffs("g", [first.handoff_id])
    wait_for(lambda: inbox_names(admin, "g", b.member_id) == [], 10, "the acked handoff deleted")

    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5)
    second = wait_for(lambda: got.handoffs[1:], 10, "the second handoff")[0]
    states: list[SessionState] = []
    b.add_state_listener(states.append)
    proxy.cut("reset")  # the same session comes back: watches re-armed, inbox listed again
    wait_for(lambda: SessionState.SUSPENDED in states, 20, "b disconnected")
    proxy.restore()
    wait_for(lambda: states[-1] is SessionState.CONNECTED, 20, "b reconnected")
    again = Inbox()
    b.watch_inbox("g", again)  # a new watcher gets what is still in the inbox
    wait_for(lambda: again.handoffs, 10, "the unacknowledged handoff delivered again")
    assert again.handoffs == [second]  # never the acknowledged one
    assert got.handoffs == [first, second]  # each once per watcher, reconnect or not


def test_a_handoff_sent_before_the_watch_starts_is_delivered_when_it_starts(make) -> None:
    a, b = make(), make()
    joined(a, b)
    for n in range(3):
        assert a.send_handoff("g", b.member_id, {"n": n}, timeout=5)
    got = Inbox()
    b.watch_inbox("g", got)
    wait_for(lambda: len(got.handoffs) == 3, 10, "three handoffs")
    assert [h.payload["n"] for h in got.handoffs] == [0, 1, 2]  # in the order sent


def test_a_handoff_to_no_member_is_not_confirmed(make) -> None:
    a, b = make(), make()
    joined(a, b)
    lone = make()  # lists no group: sends a plain create into the inbox
    lone.join("g", wait=5)
    assert lone.send_handoff("g", b.member_id, {"n": 1}, timeout=5)  # B exists
    for sender in (a, lone):
        started = time.monotonic()
        assert sender.send_handoff("g", "nobody.1.x", {"n": 1}, timeout=5) is False
        assert time.monotonic() - started < 2.0  # refused by the server, not timed out
    gone = b.member_id
    b.leave("g", wait=5)  # a's listing may still show b: its check fails then
    assert a.send_handoff("g", gone, {"n": 1}, timeout=5) is False
    assert lone.send_handoff("g", gone, {"n": 1}, timeout=5) is False


def test_a_handoff_without_an_answer_is_not_confirmed_within_its_timeout(
        make, tcp_proxy, zookeeper_server) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    a, b = make(proxy.address), make()
    joined(a, b)
    proxy.cut("blackhole")  # a still believes it is connected: the request is sent
    started = time.monotonic()
    assert a.send_handoff("g", b.member_id, {"n": 1}, timeout=1.0) is False
    assert time.monotonic() - started < 1.0 + 1.0
    wait_for(lambda: a.state is not SessionState.CONNECTED, 20, "a disconnected")
    started = time.monotonic()
    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5.0) is False
    assert time.monotonic() - started < 1.0  # not connected: not even sent
    proxy.restore()


def test_oversized_and_malformed_payloads_are_refused(make) -> None:
    a, b = make(), make()
    joined(a, b)
    with pytest.raises(CoordinationError, match="at most"):
        a.send_handoff("g", b.member_id, {"keys": ["x" * 100] * 6000}, timeout=5)
    with pytest.raises(TypeError):
        a.send_handoff("g", b.member_id, ["not", "an", "object"], timeout=5)  # type: ignore[arg-type]


def test_inboxes_go_away_with_their_member(make, admin: KazooClient, zookeeper_server,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = make(), make()
    joined(a, b)
    got = Inbox()
    b.watch_inbox("g", got)
    first_id = b.member_id
    assert a.send_handoff("g", first_id, {"n": 1}, timeout=5)
    assert inbox_names(admin, "g", first_id) is not None
    # a new session: a new member id and a new inbox, watched by the same callback;
    # the old one is deleted with what is left in it
    expire_session(zookeeper_server.address, b.client_id)
    wait_for(lambda: b.member_id != first_id and b.state is SessionState.CONNECTED
             and inbox_names(admin, "g", b.member_id) is not None, 20, "b registered again")
    wait_for(lambda: inbox_names(admin, "g", first_id) is None, 10, "the old inbox deleted")
    joined(a, b)
    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5)
    wait_for(lambda: got.handoffs[-1].payload == {"n": 2}, 10, "delivery in the new session")
    assert got.handoffs[-1].handoff_id.startswith(f"{b.member_id}/")

    # a graceful leave deletes the inbox, unread handoffs included
    assert a.send_handoff("g", b.member_id, {"n": 3}, timeout=5)
    left = b.member_id
    b.leave("g", wait=5)
    wait_for(lambda: inbox_names(admin, "g", left) is None, 10, "the inbox deleted at leave")

    # a crashed member's inbox is swept by the group's first member
    ghost = "ghost.1.dead"
    admin.create(f"/groups/g/inbox/{ghost}/h-", b"{}", sequence=True, makepath=True)
    monkeypatch.setattr(inbox, "INBOX_GRACE", 0.0)
    wait_for(lambda: a.get_members("g").member_ids == (a.member_id,), 10, "b gone")
    seen: list[tuple[str, ...]] = []
    a.watch("g", lambda m: seen.append(m.member_ids))
    wait_for(lambda: seen and seen[-1] == (a.member_id,), 10, "a's view without b")
    a._next_sweep = 0.0  # at the next heartbeat instead of in 10 minutes
    wait_for(lambda: inbox_names(admin, "g", ghost) is None, 10, "the ghost's inbox swept")
    assert inbox_names(admin, "g", a.member_id) == []  # a live member's inbox is kept


def watch_count(server: Any) -> int:
    """Every watch the server holds, data and children (``mntr``; ``wchc`` shows
    data watches only)."""
    for line in four_letter_word(server.host, server.port, "mntr").splitlines():
        if line.startswith("zk_watch_count"):
            return int(line.split()[1])
    raise AssertionError("no zk_watch_count in mntr")


def test_one_watch_per_watched_inbox_and_no_requests_without_handoffs(
        managed_zookeeper) -> None:
    server = managed_zookeeper()  # private: its watch count is this test's alone
    a, b = (coordinator_for(url_for(server.address, "/w", timeout=6.0)) for _ in range(2))
    for coordinator in (a, b):
        coordinator.start(timeout=10)
    try:
        check_watches_and_requests(server, a, b)
    finally:
        a.stop()
        b.stop()


def counted(call: Callable[..., Any], name: str,
            calls: list[tuple[str, str]]) -> Callable[..., Any]:
    """``call``, recording ``(name, path)`` of each call on an inbox path."""
    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        if "/inbox/" in path:
            calls.append((name, path))
        return call(path, *args, **kwargs)
    return counting


def check_watches_and_requests(server: Any, a: ZooKeeperCoordinator,
                               b: ZooKeeperCoordinator) -> None:
    for group in ("g", "h"):
        joined(a, b, group=group)
    members_only = wait_for(lambda: (n := watch_count(server)) == 4 and n, 10,
                            "one membership watch per member and group")
    calls: list[tuple[str, str]] = []  # (request, path) of b's inbox requests
    client: Any = b._client
    for name in ("get_children_async", "get_async", "delete_async", "create_async"):
        setattr(client, name, counted(getattr(client, name), name, calls))
    got = Inbox()
    b.watch_inbox("g", got)
    b.watch_inbox("g", Inbox())  # a second callback: no second watch
    b.watch_inbox("h", got)
    inbox_g, inbox_h = (f"/w/groups/{g}/inbox/{b.member_id}" for g in ("g", "h"))

    def inbox_watchers() -> dict[str, int]:  # kazoo's registry: path -> watch functions
        return {p: len(w) for p, w in client._child_watchers.items() if "/inbox/" in p and w}
    wait_for(lambda: watch_count(server) == members_only + 2, 10, "two inbox watches")
    assert inbox_watchers() == {inbox_g: 1, inbox_h: 1}
    for n in range(5):
        assert a.send_handoff("g", b.member_id, {"n": n}, timeout=5)
    wait_for(lambda: len(got.handoffs) == 5, 10, "five handoffs")
    b.ack_handoffs("g", [h.handoff_id for h in got.handoffs])
    wait_for(lambda: not b._client.get_children(inbox_g), 10, "the acked handoffs deleted")
    wait_for(lambda: inbox_watchers() == {inbox_g: 1, inbox_h: 1}
             and watch_count(server) == members_only + 2, 10, "the inbox watch re-armed")
    kinds = [k for k, p in calls if p.startswith(inbox_g)]
    assert kinds.count("get_async") == 5  # each handoff read once, for both callbacks
    assert kinds.count("delete_async") == 5  # one delete per acknowledgement
    assert 1 <= kinds.count("get_children_async") <= 1 + 5 + 5  # one per (coalesced) fire
    calls.clear()
    time.sleep(1.0)  # five heartbeats without a handoff: no inbox request at all
    assert calls == []
