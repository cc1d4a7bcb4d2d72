"""Redis and Memcached backends without a server: URLs, validation, session logic."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.coordination import (
    SessionState,
    get_coordinator,
    parse_backend_url,
    register_opts,
)
from zkpoll.coordination.kv._heartbeat import HeartbeatCoordinator
from zkpoll.coordination.kv._store import MemberStore, host_port
from zkpoll.coordination.kv.memcached import MemcachedCoordinator, MemcachedStore
from zkpoll.coordination.kv.redis import RedisCoordinator, RedisStore
from zkpoll.exceptions import ConfigError
from zkpoll.testing.waiting import wait_for


def make_conf(url: str, **overrides: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="zkpoll", default_config_files=[])
    conf.set_override("backend_url", url, "coordination")
    for name, value in overrides.items():
        conf.set_override(name, value, "coordination")
    return conf


@pytest.mark.parametrize("url, cls", [("redis://h:1/p?timeout=3", RedisCoordinator),
                                      ("memcached://h:2?timeout=3", MemcachedCoordinator)])
def test_scheme_selects_the_backend_without_connecting(url: str, cls: type) -> None:
    coordinator = get_coordinator(make_conf(url))
    assert type(coordinator) is cls
    assert coordinator.session_timeout == 3.0
    assert coordinator.state is SessionState.CONNECTING
    assert coordinator.lease_remaining() < 0


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:7000", ("127.0.0.1:7000/0", "zkpoll")),
    ("redis://h", ("h:6379/0", "zkpoll")),
    ("redis://:pw@h:1/3", ("h:1/3", "zkpoll")),
    ("redis://h:1/3/tenant/zk", ("h:1/3", "tenant/zk")),
    ("redis://h:1/tenant?db=2", ("h:1/2", "tenant")),
    ("redis://[::1]:7000/x", ("::1:7000/0", "x")),
])
def test_redis_url_database_and_prefix(url: str, expected: tuple[str, str]) -> None:
    store = RedisStore(parse_backend_url(url), 1.0)
    assert (store.address, store._prefix) == expected


def test_memcached_url_prefix_and_default_port() -> None:
    store = MemcachedStore(parse_backend_url("memcached://h/a b"), 1.0)
    assert (store.address, store._prefix) == ("h:11211", "a%20b")
    assert store._key("g 1", "m") == "a%20b/groups/g%201/members/m"


@pytest.mark.parametrize("url, fragment", [
    ("redis://a:1,b:2", "redis takes one server, not 2"),
    ("memcached://a:1,b:2", "memcached takes one server, not 2"),
    ("redis://h:1/x?db=two", "db='two'"),
])
def test_bad_urls_name_the_option(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="coordination\\] backend_url") as info:
        get_coordinator(make_conf(url))
    assert fragment in str(info.value)


@pytest.mark.parametrize("scheme", ["redis", "memcached"])
@pytest.mark.parametrize("url_query, overrides, timeout, heartbeat", [
    ("", {"session_timeout": 1.0, "heartbeat_interval": 1.0},
     "1 s, [coordination] session_timeout", "1 s, [coordination] heartbeat_interval"),
    ("?timeout=0.5", {"heartbeat_interval": 2.0},
     "0.5 s, 'timeout' in [coordination] backend_url", "2 s, [coordination] heartbeat_interval"),
    ("?heartbeat=12", {},
     "10 s, [coordination] session_timeout", "12 s, 'heartbeat' in [coordination] backend_url"),
])
def test_member_timeout_must_exceed_heartbeat(scheme: str, url_query: str,
                                              overrides: dict[str, float],
                                              timeout: str, heartbeat: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_coordinator(make_conf(f"{scheme}://h:1{url_query}", **overrides))
    assert str(info.value) == (f"{scheme}: the member timeout ({timeout}) must be greater "
                               f"than the heartbeat interval ({heartbeat})")


def test_host_port_forms() -> None:
    assert host_port(parse_backend_url("redis://h"), 9) == ("h", 9)
    assert host_port(parse_backend_url("redis://[::1]"), 9) == ("::1", 9)


class MemoryStore(MemberStore):
    """An in-process store with TTLs; ``down`` makes every call fail."""

    name = "memory"
    address = "here"
    pushes = False

    def __init__(self, url: Any, op_timeout: float) -> None:
        self.keys: dict[tuple[str, str], tuple[bytes, float]] = {}
        self.claims: dict[tuple[str, str], bytes] = {}
        self.down = False
        self.lock = threading.Lock()

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("down")
        now = time.monotonic()
        for key in [k for k, (_, exp) in self.keys.items() if exp <= now]:
            del self.keys[key]

    def ping(self) -> None:
        with self.lock:
            self._check()

    def register(self, group: str, member_id: str, payload: bytes, ttl: float) -> None:
        with self.lock:
            self._check()
            self.keys[group, member_id] = (payload, time.monotonic() + ttl)

    def replace(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        with self.lock:
            self._check()
            if (group, member_id) not in self.keys:
                return False
            self.keys[group, member_id] = (payload, time.monotonic() + ttl)
            return True

    def _touch(self, keys: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        found = [k in self.keys for k in keys]
        for key in keys:
            if key in self.keys:
                self.keys[key] = (self.keys[key][0], time.monotonic() + ttl)
        return found

    def touch(self, keys: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        with self.lock:
            self._check()
            return self._touch(keys, ttl)

    def write_claims(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        with self.lock:
            self._check()
            self.claims[group, member_id] = payload
            return self._touch([(group, member_id)], ttl)[0]

    def read_claims(self, group: str, member_ids: Sequence[str]) -> dict[str, bytes | None]:
        with self.lock:
            self._check()
            return {m: self.claims.get((group, m)) for m in member_ids}

    def remove(self, group: str, member_id: str) -> None:
        with self.lock:
            self._check()
            self.keys.pop((group, member_id), None)

    def members(self, group: str) -> dict[str, bytes]:
        with self.lock:
            self._check()
            return {m: v for (g, m), (v, _) in self.keys.items() if g == group}

    def groups(self) -> list[str]:
        with self.lock:
            self._check()
            return sorted({g for g, _ in self.keys})


class MemoryCoordinator(HeartbeatCoordinator):
    store_class = MemoryStore


@pytest.fixture
def memory() -> Any:
    conf = make_conf("memory://here?timeout=0.6&heartbeat=0.05", retry_backoff=0.05,
                     max_retry_interval=0.2)
    coordinator = MemoryCoordinator(parse_backend_url(conf.coordination.backend_url),
                                    conf.coordination, "m.1.aaaa")
    coordinator.start(timeout=2)
    yield coordinator
    coordinator._store.down = False
    coordinator.stop()


def test_outage_suspends_then_loses_then_reregisters_under_a_new_id(memory: Any) -> None:
    states: list[SessionState] = []
    memory.add_state_listener(states.append)
    memory.set_registration_hook("g", lambda group, data: dict(data, reg=data.get("reg", 0) + 1))
    memory.join("g", {"x": 1}, wait=2)
    first = memory.member_id
    memory._store.down = True
    wait_for(lambda: memory.state is SessionState.LOST, 5.0, "memory.state is SessionState.LOST")
    assert memory.lease_remaining() <= 0
    assert states[:2] == [SessionState.SUSPENDED, SessionState.LOST]
    memory._store.keys.clear()  # the server forgot us meanwhile
    memory._store.down = False
    wait_for(lambda: memory.state is SessionState.CONNECTED, 5.0,
             "memory.state is SessionState.CONNECTED")
    assert memory.member_id != first
    wait_for(lambda: memory.get_members("g").member_ids == (memory.member_id,), 5.0,
             'memory.get_members("g").member_ids == (memory.member_id,)')
    assert memory.get_members("g").get(memory.member_id).data["reg"] == 2
    assert memory.lease_remaining() > 0


def test_a_short_blip_keeps_the_session(memory: Any) -> None:
    memory.join("g", wait=2)
    first = memory.member_id
    memory._store.down = True
    wait_for(lambda: memory.state is SessionState.SUSPENDED, 5.0,
             "memory.state is SessionState.SUSPENDED")
    memory._store.down = False
    wait_for(lambda: memory.state is SessionState.CONNECTED, 5.0,
             "memory.state is SessionState.CONNECTED")
    assert memory.member_id == first


def test_an_expired_key_starts_a_new_session(memory: Any) -> None:
    memory.join("g", wait=2)
    first = memory.member_id
    with memory._store.lock:
        memory._store.keys.clear()
    wait_for(lambda: memory.member_id != first and memory.state is SessionState.CONNECTED,
             5.0, "CONNECTED under a new member id")
    wait_for(lambda: memory.get_members("g").member_ids == (memory.member_id,), 5.0,
             'memory.get_members("g").member_ids == (memory.member_id,)')


def test_an_update_that_finds_its_key_gone_reregisters_at_once() -> None:
    conf = make_conf("memory://here?timeout=30&heartbeat=10")
    coordinator = MemoryCoordinator(parse_backend_url(conf.coordination.backend_url),
                                    conf.coordination, "m.1.bbbb")
    coordinator.start(timeout=2)
    try:
        coordinator.join("g", {"x": 1}, wait=2)
        first = coordinator.member_id
        with coordinator._store.lock:
            coordinator._store.keys.clear()
        started = time.monotonic()
        coordinator.update("g", {"x": 2}, wait=2)  # long before the next heartbeat
        assert time.monotonic() - started < 1
        assert coordinator.member_id != first
        members = coordinator.get_members("g")
        assert members.member_ids == (coordinator.member_id,)
        assert members.get(coordinator.member_id).data["x"] == 2
        assert coordinator.state is SessionState.CONNECTED
    finally:
        coordinator.stop()
