"""Every zookeeper.* pollster against a real ZooKeeper, and the plugin contract."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from zkpoll_zookeeper import pollsters as zp

from zkpoll.plugin import Pollster
from zkpoll.pollsters.reading import ReadingPollster
from zkpoll.sample import CUMULATIVE, GAUGE
from zkpoll.testing import ManagedZooKeeper, ZooKeeperEnsemble
from zkpoll.testing.plugins import (
    PollsterContract,
    SilentServer,
    make_context,
    poll,
    require_zookeeper,
)

pytestmark = pytest.mark.functional


class _Contract(PollsterContract):
    @pytest.fixture
    def resources(self, zookeeper_server: ManagedZooKeeper) -> list[Any]:
        return [zookeeper_server.address]

    @pytest.fixture
    def unresponsive_resources(self, silent_server: SilentServer) -> list[Any]:
        return [silent_server.address]


class TestUp(_Contract):
    meter, sample_type, unit, pollster_class = "zookeeper.up", GAUGE, "status", zp.UpPollster


class TestLatencyAvg(_Contract):
    meter, sample_type, unit = "zookeeper.latency.avg", GAUGE, "ms"
    pollster_class = zp.AvgLatencyPollster


class TestLatencyMax(_Contract):
    meter, sample_type, unit = "zookeeper.latency.max", GAUGE, "ms"
    pollster_class = zp.MaxLatencyPollster


class TestOutstandingRequests(_Contract):
    meter, sample_type, unit = "zookeeper.requests.outstanding", GAUGE, "request"
    pollster_class = zp.OutstandingRequestsPollster


class TestZnodes(_Contract):
    meter, sample_type, unit = "zookeeper.znodes", GAUGE, "znode"
    pollster_class = zp.ZnodesPollster


class TestWatches(_Contract):
    meter, sample_type, unit = "zookeeper.watches", GAUGE, "watch"
    pollster_class = zp.WatchesPollster


class TestEphemerals(_Contract):
    meter, sample_type, unit = "zookeeper.ephemerals", GAUGE, "znode"
    pollster_class = zp.EphemeralsPollster


class TestConnections(_Contract):
    meter, sample_type, unit = "zookeeper.connections", GAUGE, "connection"
    pollster_class = zp.ConnectionsPollster


class TestFollowers(_Contract):
    meter, sample_type, unit = "zookeeper.followers", GAUGE, "server"
    pollster_class = zp.FollowersPollster


class TestServerState(_Contract):
    meter, sample_type, unit = "zookeeper.server.state", GAUGE, "state"
    pollster_class = zp.ServerStatePollster


class TestPacketsReceived(_Contract):
    meter, sample_type, unit = "zookeeper.packets.received", CUMULATIVE, "packet"
    pollster_class = zp.PacketsReceivedPollster


class TestPacketsSent(_Contract):
    meter, sample_type, unit = "zookeeper.packets.sent", CUMULATIVE, "packet"
    pollster_class = zp.PacketsSentPollster


@pytest.fixture
def client(zookeeper_server: ManagedZooKeeper) -> Iterator[KazooClient]:
    zk = KazooClient(hosts=zookeeper_server.address)
    zk.start(timeout=10)
    yield zk
    zk.stop()
    zk.close()


def _volume(pollster: Pollster, server: str) -> Any:
    [sample] = poll(pollster, [server])
    return sample.volume


def test_values_follow_the_server(zookeeper_server: ManagedZooKeeper,
                                  client: KazooClient) -> None:
    server = zookeeper_server.address
    znodes, ephemerals, watches = (_volume(cls(None), server) for cls in (
        zp.ZnodesPollster, zp.EphemeralsPollster, zp.WatchesPollster))
    root = f"/plugin-{uuid.uuid4().hex}"
    client.create(root)
    client.create(f"{root}/e", ephemeral=True)
    client.exists(root, watch=lambda event: None)
    assert _volume(zp.ZnodesPollster(None), server) == znodes + 2
    assert _volume(zp.EphemeralsPollster(None), server) == ephemerals + 1
    assert _volume(zp.WatchesPollster(None), server) == watches + 1
    assert _volume(zp.ConnectionsPollster(None), server) >= 1
    [state] = poll(zp.ServerStatePollster(None), [server])
    assert (state.volume, state.resource_metadata["state"]) == (0, "standalone")
    assert _volume(zp.FollowersPollster(None), server) == 0
    assert _volume(zp.UpPollster(None), server) == 1
    client.delete(root, recursive=True)


def test_one_mntr_per_server_per_cycle(zookeeper_server: ManagedZooKeeper,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = zp.mntr
    monkeypatch.setattr(zp, "mntr", lambda r, t: calls.append(r) or real(r, t))
    context = make_context()
    for cls in (zp.ZnodesPollster, zp.WatchesPollster, zp.AvgLatencyPollster):
        assert poll(cls(None), [zookeeper_server.address], context=context)
    assert calls == [zookeeper_server.address]


def test_a_dead_server_does_not_hide_the_others(zookeeper_server: ManagedZooKeeper,
                                                silent_server: SilentServer) -> None:
    live, dead = zookeeper_server.address, silent_server.address
    samples = poll(zp.ZnodesPollster(None), [live, dead], context=make_context(timeout=1.0))
    assert [s.resource_id for s in samples] == [live]
    up = {s.resource_id: s for s in poll(zp.UpPollster(None), [live, dead],
                                         context=make_context(timeout=1.0))}
    assert up[live].volume == 1
    assert up[dead].volume == 0 and "no answer" in up[dead].resource_metadata["error"]


def test_every_server_failing_is_an_error(silent_server: SilentServer) -> None:
    with pytest.raises(Exception, match="every resource failed"):
        poll(zp.ZnodesPollster(None), [silent_server.address], context=make_context(timeout=0.5))


def test_every_pollster_shares_the_family_base() -> None:
    for name in zp.__all__:
        cls = getattr(zp, name)
        if isinstance(cls, type):
            assert issubclass(cls, ReadingPollster) and cls.default_discovery == \
                "zookeeper_servers", name


@pytest.mark.slow
def test_leader_and_followers_of_an_ensemble() -> None:
    require_zookeeper()
    with ZooKeeperEnsemble(size=3) as ensemble:
        leader = ensemble.leader()
        servers = [s.address for s in ensemble.servers]
        states = {s.resource_id: s.volume for s in poll(zp.ServerStatePollster(None), servers)}
        assert sorted(states.values()) == [1, 2, 2]
        assert states[servers[leader]] == 1
        followers = {s.resource_id: s.volume for s in poll(zp.FollowersPollster(None), servers)}
        assert followers[servers[leader]] == 2
        assert sum(followers.values()) == 2
