"""Built-in discoveries: local host, static list, file."""

from __future__ import annotations

import socket
import types
from importlib.metadata import entry_points

import pytest
from oslo_config import cfg

import zkpoll.discovery
from zkpoll.discovery.local import LocalHostDiscovery, host_id
from zkpoll.discovery.static import FileDiscovery, StaticDiscovery
from zkpoll.exceptions import PluginError
from zkpoll.plugin import Discovery, PollingContext

pytestmark = pytest.mark.timeout(5)


@pytest.fixture
def context() -> PollingContext:
    return PollingContext(conf=None)


def test_public_api() -> None:
    assert sorted(zkpoll.discovery.__all__) == [
        "FileDiscovery", "LocalHostDiscovery", "StaticDiscovery", "host_id"]


@pytest.mark.parametrize(("namespace", "names"), [
    ("zkpoll.discover.compute", {"local_host"}),
    ("zkpoll.discover.central", {"static", "file"}),
])
def test_entry_points_load(namespace: str, names: set[str]) -> None:
    eps = {ep.name: ep for ep in entry_points(group=namespace)}
    assert names <= set(eps)
    for name in names:
        assert issubclass(eps[name].load(), Discovery)


@pytest.mark.parametrize("conf", [
    None,
    types.SimpleNamespace(),
    types.SimpleNamespace(host=""),
    types.SimpleNamespace(host="   "),
    types.SimpleNamespace(host=None),
])
def test_host_id_falls_back_to_hostname(conf: object) -> None:
    assert host_id(conf) == socket.gethostname()


def test_host_id_from_conf() -> None:
    assert host_id(types.SimpleNamespace(host=" node-7 ")) == "node-7"


def test_host_id_with_oslo_config() -> None:
    conf = cfg.ConfigOpts()
    conf([], project="zkpoll-test")
    assert host_id(conf) == socket.gethostname()  # option not registered
    conf.register_opt(cfg.StrOpt("host"))
    conf.set_override("host", "compute-3")
    assert host_id(conf) == "compute-3"


def test_local_host_discovery(context: PollingContext) -> None:
    assert LocalHostDiscovery().discover(context) == [socket.gethostname()]
    conf = types.SimpleNamespace(host="node-1")
    assert LocalHostDiscovery(conf).discover(context) == ["node-1"]
    assert LocalHostDiscovery().discover(PollingContext(conf)) == ["node-1"]


@pytest.mark.parametrize(("param", "expected"), [
    ("a,b,c", ["a", "b", "c"]),
    (" a , b,, ,a, c ,b", ["a", "b", "c"]),
    ("http://x:8080/p?q=1", ["http://x:8080/p?q=1"]),
    ("", []),
    (None, []),
    (" , ", []),
])
def test_static_discovery(context: PollingContext, param: str | None,
                          expected: list[str]) -> None:
    assert StaticDiscovery().discover(context, param) == expected


def test_file_discovery(context: PollingContext, tmp_path) -> None:
    path = tmp_path / "targets"
    path.write_text("# targets\n\nhttp://a/\n  # indented comment\n  http://b/  \n"
                    "http://a/\nhttp://c/#frag\n", encoding="utf-8")
    assert FileDiscovery().discover(context, str(path)) == [
        "http://a/", "http://b/", "http://c/#frag"]


def test_file_discovery_rereads(context: PollingContext, tmp_path) -> None:
    path = tmp_path / "targets"
    path.write_text("a\n", encoding="utf-8")
    assert FileDiscovery().discover(context, str(path)) == ["a"]
    path.write_text("a\nb\n", encoding="utf-8")
    assert FileDiscovery().discover(context, str(path)) == ["a", "b"]


def test_file_discovery_missing_file(context: PollingContext, tmp_path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(PluginError, match="nope.txt") as info:
        FileDiscovery().discover(context, missing)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_file_discovery_unreadable(context: PollingContext, tmp_path) -> None:
    with pytest.raises(PluginError, match=str(tmp_path)):
        FileDiscovery().discover(context, str(tmp_path))  # a directory


@pytest.mark.parametrize("param", [None, ""])
def test_file_discovery_needs_a_path(context: PollingContext, param: str | None) -> None:
    with pytest.raises(PluginError, match="path"):
        FileDiscovery().discover(context, param)
