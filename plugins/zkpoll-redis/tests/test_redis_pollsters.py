"""Every redis.* pollster against real Redis servers, and the plugin contract."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from zkpoll_redis import pollsters as rp
from zkpoll_redis.client import connection_url, display_id
from zkpoll_redis.discovery import ReplicationDiscovery

from zkpoll.pollsters.reading import ReadingPollster
from zkpoll.sample import CUMULATIVE, GAUGE
from zkpoll.testing import ManagedRedis
from zkpoll.testing.plugins import (
    PollsterContract,
    SilentServer,
    discover,
    make_context,
    make_test_plugins,
    poll,
)

pytestmark = pytest.mark.functional


class _Contract(PollsterContract):
    @pytest.fixture
    def resources(self, redis_server: ManagedRedis) -> list[Any]:
        return [redis_server.url, f"{redis_server.host}:{redis_server.port}"]

    @pytest.fixture
    def unresponsive_resources(self, silent_server: SilentServer) -> list[Any]:
        return [silent_server.address]


class TestConnectedClients(_Contract):
    meter, sample_type, unit = "redis.clients.connected", GAUGE, "client"
    pollster_class = rp.ConnectedClientsPollster


class TestUsedMemory(_Contract):
    meter, sample_type, unit = "redis.memory.used", GAUGE, "B"
    pollster_class = rp.UsedMemoryPollster


class TestOpsPerSecond(_Contract):
    meter, sample_type, unit = "redis.ops.per_second", GAUGE, "op/s"
    pollster_class = rp.OpsPerSecondPollster


class TestKeyspaceHits(_Contract):
    meter, sample_type, unit = "redis.keyspace.hits", CUMULATIVE, "lookup"
    pollster_class = rp.KeyspaceHitsPollster


class TestKeyspaceMisses(_Contract):
    meter, sample_type, unit = "redis.keyspace.misses", CUMULATIVE, "lookup"
    pollster_class = rp.KeyspaceMissesPollster


class TestReplicationRole(_Contract):
    meter, sample_type, unit = "redis.replication.role", GAUGE, "role"
    pollster_class = rp.ReplicationRolePollster


class TestReplicationLag(_Contract):
    meter, sample_type, unit = "redis.replication.lag", GAUGE, "s"
    pollster_class = rp.ReplicationLagPollster

    @pytest.fixture
    def resources(self, redis_server: ManagedRedis,
                  redis_replica: ManagedRedis) -> list[Any]:
        return [redis_server.url, redis_replica.url]


def _one(pollster: ReadingPollster, resource: str) -> Any:
    [sample] = poll(pollster, [resource])
    return sample


def test_values_follow_the_server(redis_server: ManagedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url)
    key = f"plugin-{uuid.uuid4().hex}"
    hits = _one(rp.KeyspaceHitsPollster(None), redis_server.url).volume
    misses = _one(rp.KeyspaceMissesPollster(None), redis_server.url).volume
    memory = _one(rp.UsedMemoryPollster(None), redis_server.url).volume
    client.set(key, "x" * 100_000)
    client.get(key)
    client.get(key + "-missing")
    assert _one(rp.KeyspaceHitsPollster(None), redis_server.url).volume == hits + 1
    assert _one(rp.KeyspaceMissesPollster(None), redis_server.url).volume == misses + 1
    assert _one(rp.UsedMemoryPollster(None), redis_server.url).volume > memory + 50_000
    assert _one(rp.ConnectedClientsPollster(None), redis_server.url).volume >= 1
    client.delete(key)
    client.close()


def test_replication_role_and_lag(redis_server: ManagedRedis,
                                  redis_replica: ManagedRedis) -> None:
    master, replica = redis_server.url, redis_replica.url
    role = {s.resource_id: s for s in poll(rp.ReplicationRolePollster(None), [master, replica])}
    assert role[master].volume == 0 and role[master].resource_metadata["connected_replicas"] == 1
    assert role[replica].volume == 1
    assert role[replica].resource_metadata["master"] == f"127.0.0.1:{redis_server.port}"
    assert role[replica].resource_metadata["link"] == "up"
    lag = {s.resource_id: s for s in poll(rp.ReplicationLagPollster(None), [master, replica])}
    assert 0 <= lag[replica].volume < 10 and 0 <= lag[master].volume < 10
    assert lag[master].resource_metadata == {"role": "master", "replicas": 1}


def test_a_master_without_replicas_has_no_lag() -> None:
    with ManagedRedis() as lone:
        assert poll(rp.ReplicationLagPollster(None), [lone.url]) == []


def test_replication_discovery(redis_server: ManagedRedis,
                               redis_replica: ManagedRedis) -> None:
    found = discover(ReplicationDiscovery(None), redis_server.url)
    assert found == [redis_server.url, f"redis://127.0.0.1:{redis_replica.port}"]
    plain = f"127.0.0.1:{redis_server.port}"
    assert discover(ReplicationDiscovery(None), plain) == [plain, f"127.0.0.1:{redis_replica.port}"]
    with pytest.raises(Exception, match="redis_replication"):
        discover(ReplicationDiscovery(None), "127.0.0.1:1")


def test_password_is_used_and_hidden() -> None:
    with ManagedRedis() as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        sample = _one(rp.UsedMemoryPollster(None), url)
        assert sample.resource_id == f"redis://:***@127.0.0.1:{server.port}/0"
        with pytest.raises(Exception, match="every resource failed"):
            poll(rp.UsedMemoryPollster(None), [server.url])


def test_one_info_per_server_per_cycle(redis_server: ManagedRedis,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = rp.info
    monkeypatch.setattr(rp, "info", lambda r, t: calls.append(r) or real(r, t))
    context = make_context()
    for cls in (rp.UsedMemoryPollster, rp.KeyspaceHitsPollster, rp.ReplicationRolePollster):
        assert poll(cls(None), [redis_server.url], context=context)
    assert calls == [redis_server.url]


def test_client_helpers() -> None:
    assert connection_url("h:6380") == "redis://h:6380"
    assert connection_url("rediss://h:6380/1") == "rediss://h:6380/1"
    with pytest.raises(ValueError, match="host:port"):
        connection_url("http://h")
    assert display_id("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert display_id("h:1") == "h:1"


def test_the_plugin_loads_in_memory() -> None:
    plugins = make_test_plugins(pollsters={"redis.memory.used": rp.UsedMemoryPollster,
                                           "broken": object()},
                                discoveries={"redis_replication": ReplicationDiscovery})
    assert set(plugins.pollsters) == {"redis.memory.used"}
    assert plugins.failures == {"zkpoll.poll.central:broken": "not a Pollster"}
