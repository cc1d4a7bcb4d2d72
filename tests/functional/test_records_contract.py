"""Fenced compare-and-set records, run unchanged against real ZooKeeper, Redis and
Memcached servers (``backend_url``), and the standalone coordinator where it applies."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oslo_config import cfg

from tests.functional.test_coordinator_contract import SERVERS, expire, kind
from zkpoll.coordination import (
    Coordinator,
    get_coordinator,
    parse_backend_url,
    register_opts,
)
from zkpoll.coordination._records import EncodedWrite
from zkpoll.coordination.admin import forget_group
from zkpoll.coordination.base import Record, RecordWrite
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

GROUP = "evaluators"
KIND = "alarm"


def options(url: str | None) -> Any:
    """The ``[coordination]`` options for ``url`` (None: standalone)."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    if url is not None:
        conf.set_override("backend_url", url, "coordination")
    conf.set_override("retry_backoff", 0.1, "coordination")
    conf.set_override("max_retry_interval", 1.0, "coordination")
    return conf


@pytest.fixture
def coordinators() -> Iterator[Callable[..., Coordinator]]:
    """Factory: a started coordinator on a URL with this member timeout and
    heartbeat; every one is stopped after the test."""
    made: list[Coordinator] = []

    def make(url: str, timeout: float = 4.0, heartbeat: float = 0.2) -> Coordinator:
        coordinator = get_coordinator(options(f"{url}?timeout={timeout:g}"
                                              f"&heartbeat={heartbeat:g}"))
        made.append(coordinator)
        coordinator.start(timeout=10)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.stop()


def member(make: Callable[..., Coordinator], url: str, **kwargs: Any) -> Coordinator:
    """A started coordinator registered in the fence group."""
    coordinator = make(url, **kwargs)
    coordinator.join(GROUP, wait=10)
    return coordinator


def create(c: Coordinator, values: dict[str, dict[str, Any]]) -> dict[str, Record | None]:
    return c.write_records(KIND, [RecordWrite(k, v, None) for k, v in values.items()], GROUP)


# --- compare-and-set ---------------------------------------------------------------
def test_create_read_and_compare_and_set(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    assert a.read_records(KIND, ["x", "y"]) == {}  # missing keys are absent
    assert a.read_records(KIND, []) == {}

    created = create(a, {"x": {"state": "ok", "n": 1}})["x"]
    assert created is not None and created.value == {"state": "ok", "n": 1}
    assert a.read_records(KIND, ["x", "y"]) == {"x": created}
    assert create(a, {"x": {"state": "alarm"}}) == {"x": None}  # exists: create loses

    updated = a.write_records(KIND, [RecordWrite("x", {"state": "alarm"}, created.version)],
                              GROUP)["x"]
    assert updated is not None and updated.version != created.version
    assert updated.value == {"state": "alarm"}
    stale = a.write_records(KIND, [RecordWrite("x", {"state": "ok"}, created.version)], GROUP)
    assert stale == {"x": None}  # the version read is no longer current
    assert a.read_records(KIND, ["x"])["x"] == updated

    # a version read for a record that was since deleted loses too
    assert a.delete_records(KIND, ["x"]) == 1
    assert a.write_records(KIND, [RecordWrite("x", {"s": 1}, updated.version)], GROUP) \
        == {"x": None}
    assert a.read_records(KIND, ["x"]) == {}


def test_a_new_owner_continues_where_the_old_one_stopped(backend_url: str,
                                                         coordinators) -> None:
    old, new = member(coordinators, backend_url), member(coordinators, backend_url)
    first = create(old, {"web-cpu": {"cycle": 1, "owner": old.member_id}})["web-cpu"]
    assert first is not None
    seen = new.read_records(KIND, ["web-cpu"])["web-cpu"]
    assert seen == first
    taken = new.write_records(KIND, [RecordWrite("web-cpu", {"cycle": 2}, seen.version)],
                              GROUP)["web-cpu"]
    assert taken is not None and taken.value == {"cycle": 2}
    # the old owner, writing late with what it had read, loses
    assert old.write_records(KIND, [RecordWrite("web-cpu", {"cycle": 2}, first.version)],
                             GROUP) == {"web-cpu": None}
    assert old.read_records(KIND, ["web-cpu"])["web-cpu"] == taken


def test_concurrent_writers_exactly_one_wins_per_version(backend_url: str,
                                                         coordinators) -> None:
    writers = [member(coordinators, backend_url) for _ in range(2)]
    keys = [f"alarm-{i}" for i in range(50)]
    base = create(writers[0], {k: {"round": 0} for k in keys})
    assert all(base.values())
    for round_ in range(1, 4):
        current = writers[0].read_records(KIND, keys)
        barrier = threading.Barrier(len(writers))
        results: list[dict[str, Record | None]] = [{} for _ in writers]

        def write(i: int, current: dict[str, Record] = current, round_: int = round_,
                  barrier: threading.Barrier = barrier,
                  results: list[dict[str, Record | None]] = results) -> None:
            barrier.wait(10)
            results[i] = writers[i].write_records(
                KIND, [RecordWrite(k, {"round": round_, "by": i}, current[k].version)
                       for k in keys], GROUP, timeout=30)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(len(r) == len(keys) for r in results)
        final = writers[1].read_records(KIND, keys)
        for key in keys:
            winners = [i for i, r in enumerate(results) if r[key] is not None]
            assert len(winners) == 1, (round_, key, winners)
            assert final[key].value == {"round": round_, "by": winners[0]}
            assert final[key] == results[winners[0]][key]


# --- the fence -------------------------------------------------------------------
def test_a_member_not_in_the_fence_group_loses(backend_url: str, coordinators) -> None:
    inside = member(coordinators, backend_url)
    outside = coordinators(backend_url)
    outside.join("another-group", wait=10)
    record = create(inside, {"k": {"v": 1}})["k"]
    assert create(outside, {"new": {"v": 1}}) == {"new": None}
    assert outside.write_records(KIND, [RecordWrite("k", {"v": 2}, record.version)],
                                 GROUP) == {"k": None}
    assert outside.read_records(KIND, ["k", "new"]) == {"k": record}  # reads are not fenced


def test_writes_win_while_the_member_republishes_its_data(backend_url: str,
                                                          coordinators) -> None:
    """ZooKeeper renames the member znode on every update: a write whose fence
    check lost to a rename is retried, so none is lost for it (updates are rare;
    here 20 a second)."""
    a = member(coordinators, backend_url)
    keys = [f"k{i}" for i in range(300)]
    records = create(a, {k: {"n": 0} for k in keys})
    stop = threading.Event()

    def republish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            a.update(GROUP, {"n": n}, wait=10)
            stop.wait(0.05)

    thread = threading.Thread(target=republish)
    thread.start()
    try:
        for n in range(1, 6):
            records = a.write_records(KIND, [RecordWrite(k, {"n": n}, records[k].version)
                                             for k in keys], GROUP, timeout=60)
            assert all(records.values()), [k for k, r in records.items() if r is None][:5]
    finally:
        stop.set()
        thread.join(30)


def test_zookeeper_fence_is_checked_in_the_same_transaction(zk_hosts: str,
                                                            coordinators) -> None:
    """The check op fails the whole multi when the member znode is gone by commit
    time (here: a fence path that does not exist), and nothing is written."""
    a = member(coordinators, f"zookeeper://{zk_hosts}")
    record = create(a, {"k": {"v": 1}})["k"]
    records = a._records  # the ZooKeeper implementation behind write_records
    parent = records._kind_path(KIND)
    won: dict[str, Any] = {}
    writes = [EncodedWrite("k", b'{"v":2}', record.version), EncodedWrite("n", b"{}", None)]
    fenced = records._commit(parent, writes, {"k": record.version, "n": None},
                             f"{parent}-no-such-member", time.monotonic() + 10, won)
    assert fenced == writes and won == {}
    assert a.read_records(KIND, ["k", "n"]) == {"k": record}


def test_a_member_that_left_loses(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    record = create(a, {"k": {"v": 1}})["k"]
    a.leave(GROUP, wait=10)
    assert a.write_records(KIND, [RecordWrite("k", {"v": 2}, record.version)], GROUP) \
        == {"k": None}
    a.join(GROUP, wait=10)  # back in the group: it wins again
    assert a.write_records(KIND, [RecordWrite("k", {"v": 2}, record.version)], GROUP)["k"]


def test_a_member_whose_registration_is_gone_loses(backend_url: str, coordinators) -> None:
    """After the backend dropped this member's registration (session expired), its
    writes lose until it has re-registered under a new member id."""
    a = member(coordinators, backend_url, timeout=20.0, heartbeat=5.0)
    observer = coordinators(backend_url)
    record = create(a, {"k": {"v": 1}})["k"]
    before = a.member_id
    expire(backend_url, a, GROUP)
    try:
        result = a.write_records(KIND, [RecordWrite("k", {"v": 2}, record.version)], GROUP,
                                 timeout=5)
    except CoordinationError:  # ZooKeeper: the expired session's client, not yet renewed
        result = {"k": None}
    # either it lost, or the coordinator had already re-registered as someone new
    assert result == {"k": None} or a.member_id != before
    if result == {"k": None}:
        assert observer.read_records(KIND, ["k"])["k"] == record

    def registered_again() -> bool:
        return a.member_id != before and a.member_id in observer.get_members(GROUP).member_ids
    wait_for(registered_again, 30, "re-registration under a new id")
    current = observer.read_records(KIND, ["k"])["k"]
    assert a.write_records(KIND, [RecordWrite("k", {"v": 3}, current.version)], GROUP)["k"]


def test_a_stopped_coordinator_raises(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    create(a, {"k": {"v": 1}})
    a.stop()
    for call in (lambda: create(a, {"j": {}}), lambda: a.read_records(KIND, ["k"]),
                 lambda: a.list_records(KIND), lambda: a.delete_records(KIND, ["k"])):
        with pytest.raises(CoordinationError):
            call()


# --- listing, deleting, batches ------------------------------------------------------
def test_list_and_delete(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    assert a.list_records(KIND) == []
    assert a.delete_records(KIND, ["nothing"]) == 0
    create(a, {"b": {}, "a": {}, "c.1_x-y": {}})
    a.write_records("other", [RecordWrite("z", {}, None)], GROUP)
    assert a.list_records(KIND) == ["a", "b", "c.1_x-y"]
    assert a.list_records("other") == ["z"]
    assert a.delete_records(KIND, ["a", "zz"]) == 1
    assert a.list_records(KIND) == ["b", "c.1_x-y"]
    assert a.read_records(KIND, ["a", "b"]).keys() == {"b"}
    assert create(a, {"a": {"again": True}})["a"].value == {"again": True}
    assert a.list_records(KIND) == ["a", "b", "c.1_x-y"]
    assert a.delete_records("other", []) == 0


def test_a_batch_of_2000_writes(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    keys = [f"alarm-{i:04d}" for i in range(2000)]
    created = a.write_records(KIND, [RecordWrite(k, {"i": i}, None) for i, k in
                                     enumerate(keys)], GROUP, timeout=120)
    assert len(created) == 2000 and all(created.values())
    read = a.read_records(KIND, keys, timeout=120)
    assert read == created
    updated = a.write_records(KIND, [RecordWrite(k, {"i": -i}, read[k].version) for i, k in
                                     enumerate(keys)], GROUP, timeout=120)
    assert all(r is not None and r.value == {"i": -i}
               for i, r in enumerate(updated[k] for k in keys))
    assert a.list_records(KIND, timeout=120) == keys
    assert a.delete_records(KIND, keys, timeout=120) == 2000


def test_invalid_input_is_refused_before_writing(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    for key in ("", ".x", "a/b", "a b", "x" * 129, "é"):
        with pytest.raises(ValueError, match="invalid record key"):
            create(a, {"ok": {}, key: {}})
    with pytest.raises(ValueError, match="given twice"):
        a.write_records(KIND, [RecordWrite("d", {}, None), RecordWrite("d", {}, None)], GROUP)
    with pytest.raises(ValueError, match="invalid record kind"):
        a.read_records("a/b", ["k"])
    with pytest.raises(ValueError, match="the limit is 65536"):
        create(a, {"ok": {}, "big": {"x": "y" * 70_000}})
    with pytest.raises(ValueError, match="was not read from"):
        a.write_records(KIND, [RecordWrite("ok", {}, None), RecordWrite("v", {}, "seven")],
                        GROUP)
    if kind(backend_url) == "memcached":  # prefix/records/kind/key must fit 250 bytes
        with pytest.raises(ValueError, match="longer than 250 bytes"):
            a.write_records("k" * 128, [RecordWrite("x" * 128, {}, None)], GROUP)
    assert a.list_records(KIND) == []  # nothing of a refused call was written


# --- groups and the operator's tools ----------------------------------------------------
def test_records_are_no_group_and_survive_forget(backend_url: str, coordinators) -> None:
    a = member(coordinators, backend_url)
    a.join("records", wait=10)  # a group may even be called so
    record = create(a, {"k": {"v": 1}})["k"]
    in_records = a.write_records("records", [RecordWrite("k", {}, None)], "records")["k"]
    assert in_records is not None
    assert a.get_groups() == [GROUP, "records"]
    for group in (GROUP, "records"):
        a.leave(group, wait=10)
        forget_group(parse_backend_url(backend_url), options(backend_url).coordination, group,
                     timeout=10)
    assert a.get_groups() == []
    assert a.read_records(KIND, ["k"]) == {"k": record}
    assert a.read_records("records", ["k"]) == {"k": in_records}


# --- an unreachable backend -------------------------------------------------------------
@pytest.fixture(params=sorted(SERVERS))
def private_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """A private server of each kind (to stop) and a URL on it."""
    request.getfixturevalue(f"{request.param}_server")  # skip/fail as the shared one does
    server = SERVERS[request.param]()
    server.start()
    try:
        if request.param == "zookeeper":
            yield f"zookeeper://{server.address}/records", server
        else:
            yield f"{server.url}/records", server
    finally:
        server.close()


def test_an_unreachable_backend_raises_within_the_timeout(private_url, coordinators) -> None:
    url, server = private_url
    a = member(coordinators, url, timeout=30.0)
    record = create(a, {"k": {"v": 1}})["k"]
    server.stop()
    calls = {
        "write": lambda: a.write_records(KIND, [RecordWrite("k", {}, record.version)],
                                         GROUP, timeout=1.0),
        "read": lambda: a.read_records(KIND, ["k"], timeout=1.0),
        "list": lambda: a.list_records(KIND, timeout=1.0),
        "delete": lambda: a.delete_records(KIND, ["k"], timeout=1.0),
    }
    for what, call in calls.items():
        started = time.monotonic()
        with pytest.raises(CoordinatorUnreachable):
            call()
        # generous: the bound is the timeout, not how fast a busy machine answers
        assert time.monotonic() - started < 1.0 + 10, what


# --- standalone ------------------------------------------------------------------------
def test_standalone_records_in_memory() -> None:
    a = get_coordinator(options(None))
    a.start()
    assert create(a, {"k": {}}) == {"k": None}  # not joined: fenced out
    a.join(GROUP)
    first = create(a, {"k": {"v": 1}})["k"]
    assert first is not None and create(a, {"k": {}}) == {"k": None}
    second = a.write_records(KIND, [RecordWrite("k", {"v": 2}, first.version)], GROUP)["k"]
    assert second is not None and second.version != first.version
    assert a.write_records(KIND, [RecordWrite("k", {}, first.version)], GROUP) == {"k": None}
    assert a.read_records(KIND, ["k", "m"]) == {"k": second}
    assert a.list_records(KIND) == ["k"] and a.delete_records(KIND, ["k", "m"]) == 1
    a.stop()
    with pytest.raises(CoordinationError, match="stopped"):
        a.read_records(KIND, ["k"])
