"""backend_url parsing, backend selection and the standalone coordinator."""

from __future__ import annotations

import importlib.util
import logging

import pytest
from oslo_config import cfg

from zkpoll.coordination import (
    Membership,
    SessionState,
    get_coordinator,
    parse_backend_url,
    register_opts,
)
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.coordination.url import redact
from zkpoll.coordination.zookeeper import ZooKeeperCoordinator
from zkpoll.exceptions import ConfigError, NotJoined


def make_conf(url: str | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="zkpoll", default_config_files=[])
    if url is not None:
        conf.set_override("backend_url", url, "coordination")
    return conf


def test_parse_zookeeper_url_with_hosts_root_and_timeout() -> None:
    url = parse_backend_url("zookeeper://zk1:2181,zk2:2182,[::1]:2183/tenant/zkpoll?timeout=7.5")
    assert url.scheme == "zookeeper"
    assert url.hosts == ("zk1:2181", "zk2:2182", "[::1]:2183")
    assert url.path == "/tenant/zkpoll"
    assert url.float_param("timeout", 10.0) == 7.5
    assert url.float_param("heartbeat", 1.0) == 1.0


def test_parse_url_without_path_and_with_credentials() -> None:
    url = parse_backend_url("kazoo://user:s%40cret@h:1?timeout=3")
    assert (url.path, url.username, url.password, url.query) == ("/", "user", "s@cret",
                                                                  {"timeout": "3"})
    assert "s%40cret" not in redact(url.raw) and "***" in redact(url.raw)


@pytest.mark.parametrize("bad, fragment", [
    ("127.0.0.1:2181", "is not a URL"),
    ("zoo keeper://h:1", "invalid scheme"),
    ("zookeeper://h:1:2/x", "invalid host"),
    ("zookeeper://h:1/?timeout=zero", "timeout='zero'"),
    ("zookeeper://h:1/?timeout=-1", "must be a number > 0"),
    ("zookeeper://h:1/?=x&&", "malformed query"),
])
def test_malformed_urls_name_the_option(bad: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_coordinator(make_conf(bad))
    assert "[coordination] backend_url" in str(info.value)
    assert fragment in str(info.value)


def test_unknown_scheme_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scheme 'etcd3'.*available: .*zookeeper"):
        get_coordinator(make_conf("etcd3://h:2379"))


def test_zookeeper_scheme_selects_the_kazoo_backend() -> None:
    coordinator = get_coordinator(make_conf("zookeeper://127.0.0.1:1/r?timeout=4"))
    assert isinstance(coordinator, ZooKeeperCoordinator)
    assert coordinator.session_timeout == 4.0
    assert coordinator.state is SessionState.CONNECTING


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"zookeeper_digest_auth": "alice-without-colon"},
     r"zookeeper_digest_auth: expected 'user:password' \(the value is not shown\)"),
    ({"zookeeper_digest_auth": ":secret"}, r"zookeeper_digest_auth: expected 'user:password'"),
    ({"zookeeper_sasl_mechanism": "DIGEST-MD5", "zookeeper_username": "alice"},
     r"DIGEST-MD5 needs zookeeper_username and zookeeper_password"),
    ({"zookeeper_use_ssl": True, "zookeeper_ca": "/nonexistent/ca.pem"},
     r"\[coordination\] zookeeper_ca: cannot read '/nonexistent/ca.pem'"),
])
def test_bad_zookeeper_credentials_name_the_option(overrides: dict, fragment: str) -> None:
    conf = make_conf("zookeeper://127.0.0.1:1/r")
    for name, value in overrides.items():
        conf.set_override(name, value, "coordination")
    with pytest.raises(ConfigError, match=fragment) as info:
        get_coordinator(conf)
    assert "secret" not in str(info.value)


def test_sasl_without_pure_sasl_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "puresasl" else real(name, *a))
    conf = make_conf("zookeeper://127.0.0.1:1/r")
    for name, value in {"zookeeper_sasl_mechanism": "DIGEST-MD5", "zookeeper_username": "a",
                        "zookeeper_password": "b"}.items():
        conf.set_override(name, value, "coordination")
    with pytest.raises(ConfigError, match=r"needs the pure-sasl package: pip install "
                                          r"'zkpoll\[sasl\]'"):
        get_coordinator(conf)


def test_no_backend_url_is_standalone_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    coordinator = get_coordinator(make_conf())
    assert isinstance(coordinator, StandaloneCoordinator)
    with caplog.at_level(logging.WARNING):
        coordinator.start()
    assert "only ONE agent" in caplog.text
    assert coordinator.state is SessionState.CONNECTED
    assert coordinator.lease_remaining(margin=1000) > 0


def test_standalone_membership_is_just_this_member() -> None:
    coordinator = get_coordinator(make_conf(), member_id="me.1.abc")
    coordinator.start()
    seen: list[Membership] = []
    coordinator.watch("central", seen.append)
    coordinator.join("central", {"weight": 2})
    coordinator.update("central", {"meters": ["a"]})
    assert seen[-1].member_ids == ("me.1.abc",)
    assert dict(seen[-1].members[0].data) == {"weight": 2, "meters": ["a"]}
    assert seen[-1].ring().owner("anything") == "me.1.abc"
    assert [m.version for m in seen] == sorted(m.version for m in seen)
    with pytest.raises(NotJoined):
        coordinator.update("compute", {})
    coordinator.stop()
    assert seen[-1].member_ids == ()
    assert coordinator.state is SessionState.STOPPED
