"""Parsing: endpoints, connect strings and mntr answers."""

from __future__ import annotations

import pytest
from oslo_config import cfg
from zkpoll_zookeeper.client import parse_endpoint, parse_mntr
from zkpoll_zookeeper.discovery import ZooKeeperServersDiscovery, servers_of

from zkpoll.exceptions import PluginError
from zkpoll.testing.plugins import discover, make_test_plugins


@pytest.mark.parametrize(("text", "expected"), [
    ("zk1:2181", ("zk1", 2181)),
    ("zk1", ("zk1", 2181)),
    (" 10.0.0.1:2182 ", ("10.0.0.1", 2182)),
    ("[::1]:2183", ("::1", 2183)),
    ("[::1]", ("::1", 2181)),
])
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "zk1:0", "zk1:70000", "zk1:x", "zk/1:2181", "a:b:c"])
def test_parse_endpoint_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="port|host"):
        parse_endpoint(text)


def test_parse_mntr_types() -> None:
    stats = parse_mntr("zk_version\t3.8.0-abc, built on x\nzk_avg_latency\t0.5\n"
                       "zk_znode_count\t5\nzk_server_state\tleader\nnoise\n")
    assert stats == {"zk_version": "3.8.0-abc, built on x", "zk_avg_latency": 0.5,
                     "zk_znode_count": 5, "zk_server_state": "leader"}


def test_parse_mntr_not_whitelisted_says_how_to_fix() -> None:
    with pytest.raises(PluginError, match="4lw.commands.whitelist=mntr,ruok"):
        parse_mntr("mntr is not executed because it is not in the whitelist.\n")


@pytest.mark.parametrize(("connect", "expected"), [
    ("zk1:2181,zk2:2182,zk3/chroot", ["zk1:2181", "zk2:2182", "zk3:2181"]),
    ("zookeeper://u:p@zk1,zk2:2190/zkpoll?timeout=3", ["zk1:2181", "zk2:2190"]),
    ("kazoo://[::1]:2181", ["[::1]:2181"]),
    ("zk1:2181,zk1:2181,", ["zk1:2181"]),
])
def test_servers_of(connect: str, expected: list[str]) -> None:
    assert servers_of(connect) == expected


def test_servers_of_refuses_garbage() -> None:
    with pytest.raises(PluginError, match="zookeeper_servers"):
        servers_of("zk1:notaport")


def _conf(backend_url: str | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts([cfg.StrOpt("backend_url")], group="coordination")
    conf([])
    if backend_url:
        conf.set_override("backend_url", backend_url, group="coordination")
    return conf


def test_discovery_without_param_uses_the_backend_url() -> None:
    discovery = ZooKeeperServersDiscovery(_conf("zookeeper://a:1,b:2/zkpoll?timeout=5"))
    assert discover(discovery) == ["a:1", "b:2"]
    assert discover(discovery, "c:3") == ["c:3"]


@pytest.mark.parametrize("url", [None, "redis://r:6379"])
def test_discovery_without_zookeeper_backend_finds_nothing(url: str | None) -> None:
    assert discover(ZooKeeperServersDiscovery(_conf(url))) == []
    assert discover(ZooKeeperServersDiscovery(None)) == []


def test_the_plugin_loads_in_memory() -> None:
    from zkpoll_zookeeper.pollsters import ZnodesPollster

    plugins = make_test_plugins(pollsters={"zookeeper.znodes": ZnodesPollster},
                                discoveries={"zookeeper_servers": ZooKeeperServersDiscovery})
    assert set(plugins.pollsters) == {"zookeeper.znodes"}
    assert set(plugins.discoveries) == {"zookeeper_servers"}
    assert not plugins.failures
