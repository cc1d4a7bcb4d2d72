"""Handoff inboxes (per-resource failover's transport) against real servers.

Two members of one group: A hands resources over to B.  What must hold, on
ZooKeeper and on Redis: B's callback gets exactly what A sent and A's id;
an acknowledged handoff is deleted and never delivered again; a handoff
sent before B watches is delivered when it starts; a send is confirmed only
when the backend applied it (no member, no inbox, no answer: False, never
an exception); inboxes go away with their member.  ZooKeeper also: the
sweep of a crashed member's inbox, one watch per inbox and none without.
Memcached has no inboxes (it says so).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from tests.functional.test_coordinator_contract import coordinator_for
from zkpoll.coordination import Coordinator, Handoff, SessionState
from zkpoll.coordination.zookeeper import ZooKeeperCoordinator, inbox
from zkpoll.exceptions import CoordinationError
from zkpoll.testing import TCPProxy, expire_session, four_letter_word
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

#: Member timeout: long enough for a member cut off a moment to keep its session.
TIMEOUT = 6.0


class Backend:
    """A server of one kind, a prefix of the test's own, and a look at the inboxes."""

    def __init__(self, kind: str, server: Any, root: str,
                 tcp_proxy: Callable[[str, int], TCPProxy]) -> None:
        self.kind, self.server, self.root, self._proxy = kind, server, root, tcp_proxy
        self.made: list[Coordinator] = []
        if kind == "zookeeper":
            self.zk = KazooClient(hosts=server.address + root)
            self.zk.start(10)
        else:
            self.redis = redis.Redis(host=server.host, port=server.port)

    def url(self, address: str | None = None) -> str:
        return f"{self.kind}://{address or f'{self.server.host}:{self.server.port}'}{self.root}"

    def start(self, *, cut_off: bool = False) -> Coordinator:
        """A started coordinator (with ``cut_off``: through :attr:`proxy`)."""
        if cut_off:
            self.proxy = self._proxy(self.server.host, self.server.port)
        coordinator = coordinator_for(self.url(self.proxy.address if cut_off else None),
                                      TIMEOUT)
        self.made.append(coordinator)
        coordinator.start(timeout=10)
        return coordinator

    def inbox(self, group: str, member_id: str) -> list[str] | None:
        """The ids in ``member_id``'s inbox (None: there is none)."""
        if self.kind == "zookeeper":
            try:
                return sorted(self.zk.get_children(f"/groups/{group}/inbox/{member_id}"))
            except NoNodeError:
                return None
        key = f"{self.root.strip('/')}/groups/{group}/inbox/{member_id}"
        if not self.redis.exists(key):
            return None
        return [entry.decode() for entry, _ in self.redis.xrange(key)]

    def end_session(self, coordinator: Coordinator, group: str) -> None:
        """Make the server end ``coordinator``'s session (its registration only)."""
        if self.kind == "zookeeper":
            expire_session(self.server.address, coordinator.client_id)
        else:
            self.redis.delete(f"{self.root.strip('/')}/groups/{group}/members/"
                              f"{coordinator.member_id}")

    def close(self) -> None:
        for coordinator in self.made:
            coordinator.stop()
        if self.kind == "zookeeper":
            self.zk.stop()
            self.zk.close()
        else:
            self.redis.close()


@pytest.fixture(params=["zookeeper", "redis"])
def backend(request: pytest.FixtureRequest, tcp_proxy) -> Iterator[Backend]:
    """Each backend with inboxes in turn."""
    if request.param == "zookeeper":
        server, root = request.getfixturevalue("zookeeper_server"), \
            request.getfixturevalue("zk_chroot")
    else:
        server, root = request.getfixturevalue("redis_server"), f"/test-{uuid.uuid4().hex}"
    made = Backend(request.param, server, root, tcp_proxy)
    yield made
    made.close()


def joined(*coordinators: Coordinator, group: str = "g") -> None:
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


def test_a_handoff_reaches_its_recipient_with_payload_and_sender_and_ack_deletes_it(
        backend: Backend) -> None:
    a, b = backend.start(), backend.start(cut_off=True)
    assert a.supports_handoffs and b.supports_handoffs
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
    wait_for(lambda: backend.inbox("g", b.member_id) == [], 10, "the acked handoff deleted")

    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5)
    second = wait_for(lambda: got.handoffs[1:], 10, "the second handoff")[0]
    states: list[SessionState] = []
    b.add_state_listener(states.append)
    member_id = b.member_id
    backend.proxy.cut("reset")  # the same session comes back; the inbox is listed again
    wait_for(lambda: SessionState.SUSPENDED in states, 20, "b disconnected")
    backend.proxy.restore()
    wait_for(lambda: states[-1] is SessionState.CONNECTED, 20, "b reconnected")
    assert b.member_id == member_id
    again = Inbox()
    b.watch_inbox("g", again)  # a new watcher gets what is still in the inbox
    wait_for(lambda: again.handoffs, 10, "the unacknowledged handoff delivered again")
    assert again.handoffs == [second]  # never the acknowledged one
    assert got.handoffs == [first, second]  # each once per watcher, reconnect or not


def test_a_handoff_sent_before_the_watch_starts_is_delivered_when_it_starts(
        backend: Backend) -> None:
    a, b = backend.start(), backend.start()
    joined(a, b)
    for n in range(3):
        assert a.send_handoff("g", b.member_id, {"n": n}, timeout=5)
    got = Inbox()
    b.watch_inbox("g", got)
    wait_for(lambda: len(got.handoffs) == 3, 10, "three handoffs")
    assert [h.payload["n"] for h in got.handoffs] == [0, 1, 2]  # in the order sent


def test_a_handoff_to_no_member_is_not_confirmed(backend: Backend) -> None:
    a, b = backend.start(), backend.start()
    joined(a, b)
    lone = backend.start()  # lists no group (ZooKeeper: a plain create into the inbox)
    lone.join("g", wait=5)
    assert lone.send_handoff("g", b.member_id, {"n": 1}, timeout=5)  # B exists
    for sender in (a, lone):
        started = time.monotonic()
        assert sender.send_handoff("g", "nobody.1.x", {"n": 1}, timeout=5) is False
        assert time.monotonic() - started < 2.0  # refused by the server, not timed out
    gone = b.member_id
    b.leave("g", wait=5)  # a's listing may still show b (ZooKeeper: its check fails then)
    assert a.send_handoff("g", gone, {"n": 1}, timeout=5) is False
    assert lone.send_handoff("g", gone, {"n": 1}, timeout=5) is False


def test_a_handoff_without_an_answer_is_not_confirmed_within_its_timeout(
        backend: Backend) -> None:
    a, b = backend.start(cut_off=True), backend.start()
    joined(a, b)
    backend.proxy.cut("blackhole")  # a still believes it is connected: the request is sent
    started = time.monotonic()
    assert a.send_handoff("g", b.member_id, {"n": 1}, timeout=1.0) is False
    assert time.monotonic() - started < 1.0 + 1.0
    wait_for(lambda: a.state is not SessionState.CONNECTED, 20, "a disconnected")
    started = time.monotonic()
    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5.0) is False
    assert time.monotonic() - started < 1.0  # not connected: not even sent
    backend.proxy.restore()


def test_oversized_and_malformed_payloads_are_refused(backend: Backend) -> None:
    a, b = backend.start(), backend.start()
    joined(a, b)
    with pytest.raises(CoordinationError, match="at most"):
        a.send_handoff("g", b.member_id, {"keys": ["x" * 100] * 6000}, timeout=5)
    with pytest.raises(TypeError):
        a.send_handoff("g", b.member_id, ["not", "an", "object"], timeout=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        a.send_handoff("g", "no/such", {}, timeout=5)


def test_inboxes_go_away_with_their_member(backend: Backend) -> None:
    a, b = backend.start(), backend.start()
    joined(a, b)
    got = Inbox()
    b.watch_inbox("g", got)
    first_id = b.member_id
    assert a.send_handoff("g", first_id, {"n": 1}, timeout=5)
    assert backend.inbox("g", first_id) is not None
    # a new session: a new member id and a new inbox, watched by the same callback;
    # the old one is deleted with what is left in it
    backend.end_session(b, "g")
    wait_for(lambda: b.member_id != first_id and b.state is SessionState.CONNECTED
             and b.member_id in a.get_members("g").member_ids, 20, "b registered again")
    wait_for(lambda: backend.inbox("g", first_id) is None, 10, "the old inbox deleted")
    joined(a, b)
    assert a.send_handoff("g", b.member_id, {"n": 2}, timeout=5)
    wait_for(lambda: got.handoffs and got.handoffs[-1].payload == {"n": 2}, 10,
             "delivery in the new session")
    assert got.handoffs[-1].handoff_id.startswith(f"{b.member_id}/")

    # a graceful leave deletes the inbox, unread handoffs included
    assert a.send_handoff("g", b.member_id, {"n": 3}, timeout=5)
    left = b.member_id
    b.leave("g", wait=5)
    wait_for(lambda: backend.inbox("g", left) is None, 10, "the inbox deleted at leave")


def test_a_crashed_members_inbox_is_swept_on_zookeeper(
        zookeeper_server, zk_chroot: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}"
    a = coordinator_for(url, TIMEOUT)
    a.start(timeout=10)
    admin = KazooClient(hosts=zookeeper_server.address + zk_chroot)
    admin.start(10)
    try:
        joined(a)
        ghost = "ghost.1.dead"  # what a crashed member leaves behind
        admin.create(f"/groups/g/inbox/{ghost}/h-", b"{}", sequence=True, makepath=True)
        monkeypatch.setattr(inbox, "INBOX_GRACE", 0.0)
        a._next_sweep = 0.0  # at the next heartbeat instead of in 10 minutes
        wait_for(lambda: admin.exists(f"/groups/g/inbox/{ghost}") is None, 10,
                 "the ghost's inbox swept")
        assert admin.get_children("/groups/g/inbox") == [a.member_id]  # a live one is kept
    finally:
        a.stop()
        admin.stop()
        admin.close()


def test_forget_deletes_the_inboxes_crashed_members_left(zookeeper_server,
                                                         zk_chroot: str) -> None:
    from oslo_config import cfg

    from zkpoll.coordination import parse_backend_url, register_opts
    from zkpoll.coordination.zookeeper.admin import forget_group

    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}"
    admin = KazooClient(hosts=zookeeper_server.address + zk_chroot)
    admin.start(10)
    try:
        admin.create("/groups/retired/members", makepath=True)
        admin.create("/groups/retired/inbox/ghost.1.dead/h-", b"{}", sequence=True,
                     makepath=True)
        forget_group(parse_backend_url(url), conf.coordination, "retired", 5.0)
        assert admin.exists("/groups/retired") is None
    finally:
        admin.stop()
        admin.close()


def test_memcached_has_no_inbox(memcached_server) -> None:
    coordinator = coordinator_for(f"{memcached_server.url}/test-{uuid.uuid4().hex}", TIMEOUT)
    assert coordinator.supports_handoffs is False
    with pytest.raises(CoordinationError, match="no handoff inbox"):
        coordinator.send_handoff("g", "m", {}, 1.0)


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
    a, b = (coordinator_for(f"zookeeper://{server.address}/w", TIMEOUT) for _ in range(2))
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


def test_redis_requests_per_handoff_and_none_without(redis_server) -> None:
    url = f"{redis_server.url}/test-{uuid.uuid4().hex}"
    a, b = (coordinator_for(url, TIMEOUT) for _ in range(2))
    for coordinator in (a, b):
        coordinator.start(timeout=10)
    try:
        joined(a, b)
        calls: list[str] = []
        for coordinator, name in ((a, "send_handoff"), (b, "read_inbox"), (b, "ack_handoffs")):
            store: Any = coordinator._store  # type: ignore[attr-defined]
            setattr(store, name, recorded(getattr(store, name), name, calls))
        got = Inbox()
        b.watch_inbox("g", got)
        wait_for(lambda: "read_inbox" in calls, 10, "the first listing of the inbox")
        calls.clear()
        time.sleep(1.0)  # five heartbeats without a handoff: no inbox request at all
        assert calls == []
        for n in range(5):
            assert a.send_handoff("g", b.member_id, {"n": n}, timeout=5)
        wait_for(lambda: len(got.handoffs) == 5, 10, "five handoffs")
        b.ack_handoffs("g", [h.handoff_id for h in got.handoffs])
        wait_for(lambda: "ack_handoffs" in calls, 10, "the acknowledgement")
        assert calls.count("send_handoff") == 5  # one script each
        assert 1 <= calls.count("read_inbox") <= 5  # one XRANGE per (coalesced) notice
        assert calls.count("ack_handoffs") == 1  # one XDEL per inbox and call
    finally:
        a.stop()
        b.stop()


def recorded(call: Callable[..., Any], name: str, calls: list[str]) -> Callable[..., Any]:
    """``call``, appending ``name`` to ``calls`` at each call."""
    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return call(*args, **kwargs)
    return recording


def test_a_redis_inbox_that_cannot_be_read_does_not_end_the_session(
        redis_server, caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"test-{uuid.uuid4().hex}"
    b = coordinator_for(f"{redis_server.url}/{prefix}", TIMEOUT)
    b.start(timeout=10)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        b.join("g", wait=5)
        client.set(f"{prefix}/groups/g/inbox/{b.member_id}", b"not a stream")
        b.watch_inbox("g", Inbox())
        wait_for(lambda: "could not read the inbox" in caplog.text, 10, "the failure logged")
        assert b.state is SessionState.CONNECTED
    finally:
        b.stop()
        client.close()
