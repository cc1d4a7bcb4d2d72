"""ZooKeeper credentials against a real server: digest ACLs and SASL DIGEST-MD5.

Members with the right credentials coordinate as usual; anyone else is kept
out of their znodes; wrong credentials give one explained warning (not one
per heartbeat) and the agent keeps retrying until they are fixed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from oslo_config import cfg

from zkpoll.coordination import SessionState, get_coordinator, register_opts
from zkpoll.coordination.zookeeper import ZooKeeperCoordinator
from zkpoll.exceptions import CoordinatorUnreachable
from zkpoll.testing import wait_for
from zkpoll.testing.tls import make_certificates

pytestmark = pytest.mark.functional
LOGGER = "zkpoll.coordination.zookeeper.session"  # where authentication failures are logged


def coordinator(url: str, **options: Any) -> ZooKeeperCoordinator:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", url, "coordination")
    conf.set_override("heartbeat_interval", 0.1, "coordination")
    conf.set_override("retry_backoff", 0.1, "coordination")
    conf.set_override("max_retry_interval", 0.5, "coordination")
    for name, value in options.items():
        conf.set_override(name, value, "coordination")
    result = get_coordinator(conf)
    assert isinstance(result, ZooKeeperCoordinator)
    return result


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()]


def test_digest_acl_admits_members_and_keeps_others_out(zookeeper_server, zk_chroot,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}/acl?timeout=2"
    members = [coordinator(url, zookeeper_digest_auth="alice:secret") for _ in range(2)]
    intruder = coordinator(url, zookeeper_digest_auth="alice:wrong")
    outsider = KazooClient(hosts=zookeeper_server.address)
    try:
        for member in members:
            member.start(timeout=10)
            member.join("g", {"weight": 1}, wait=10)
        ids = {m.member_id for m in members}
        assert set(members[0].get_members("g").member_ids) == ids
        assert set(members[1].get_members("g").member_ids) == ids

        # Without the credentials: no reading, no deleting another agent's member.
        outsider.start(timeout=10)
        path = f"{zk_chroot}/acl/groups/g/members"
        with pytest.raises(NoAuthError):
            outsider.get_children(path)
        with pytest.raises(NoAuthError):
            outsider.delete(f"{path}/{members[0].member_id}")

        # Wrong password: refused, explained, said once, not at every heartbeat.
        intruder.start(timeout=10)
        with pytest.raises(CoordinatorUnreachable, match="not confirmed"):
            intruder.join("g", {}, wait=2.0)   # about 20 heartbeats of retries
        with pytest.raises(CoordinatorUnreachable,
                           match=r"refused access .*NoAuth.*zookeeper_digest_auth"):
            intruder.get_members("g", timeout=5)
        refused = warnings_about(caplog, f"publish member {intruder.member_id}")
        assert len(refused) == 1, refused
        assert "zookeeper_digest_auth" in refused[0] and "secret" not in refused[0]
        assert set(members[0].get_members("g").member_ids) == ids   # nobody was disturbed
    finally:
        outsider.stop()
        outsider.close()
        for c in (intruder, *members):
            c.stop(timeout=2)
        _delete_as(zookeeper_server.address, "alice:secret", f"{zk_chroot}/acl")


def _delete_as(hosts: str, credentials: str, path: str) -> None:
    """Remove the test's ACL-protected nodes (zk_chroot's cleanup has no credentials)."""
    admin = KazooClient(hosts=hosts, auth_data=[("digest", credentials)])
    admin.start(timeout=10)
    try:
        admin.delete(path, recursive=True)
    finally:
        admin.stop()
        admin.close()


def test_sasl_digest_md5_and_recovery_once_credentials_match(
        managed_zookeeper, caplog: pytest.LogCaptureFixture) -> None:
    if importlib.util.find_spec("puresasl") is None and os.environ.get("CI") != "true":
        pytest.skip("needs pure-sasl: pip install -e '.[test]'")
    caplog.set_level(logging.INFO, LOGGER)
    server = managed_zookeeper(sasl_users={"alice": "secret"})
    url = f"zookeeper://{server.address}/sasl?timeout=2"
    sasl = {"zookeeper_sasl_mechanism": "DIGEST-MD5", "zookeeper_username": "alice"}
    good = coordinator(url, zookeeper_password="secret", **sasl)
    late = coordinator(url, zookeeper_password="rotated", **sasl)
    try:
        good.start(timeout=10)
        good.join("g", {}, wait=10)
        assert good.get_members("g").member_ids == (good.member_id,)

        # kazoo alone would stop (or kill its connection thread) here for good.
        late.start()
        with pytest.raises(CoordinatorUnreachable):
            late.join("g", {}, wait=2.0)
        refused = warnings_about(caplog, "could not authenticate to ZooKeeper")
        assert len(refused) == 1, refused
        assert "zookeeper_username and zookeeper_password" in refused[0]
        assert late.state is not SessionState.STOPPED

        # The operator rotates the server's password: the agent gets in by itself.
        server.sasl_users = {"alice": "rotated"}
        server.restart()
        wait_for(lambda: late.member_id in _ids(late), 20, "the agent back in its group",
                 interval=0.1)
        assert late.state is SessionState.CONNECTED
    finally:
        for c in (late, good):
            c.stop(timeout=2)


def _ids(c: ZooKeeperCoordinator) -> tuple[str, ...]:
    try:
        return c.get_members("g", timeout=2).member_ids
    except CoordinatorUnreachable:
        return ()


def test_tls_with_client_certificates_and_an_untrusted_server(managed_zookeeper,
                                                               tmp_path) -> None:
    server = managed_zookeeper(tls=True)
    certs = server.certificates
    url = f"zookeeper://{server.secure_address}/tls?timeout=2&ssl=true"
    tls = {"zookeeper_ca": str(certs.ca), "zookeeper_certfile": str(certs.client_cert),
           "zookeeper_keyfile": str(certs.client_key)}
    member = coordinator(url, **tls)   # zookeeper_check_hostname is on by default
    # A CA that did not sign the server's certificate: verification must fail.
    stranger = make_certificates(tmp_path / "other-ca", ca_name="some-other-ca")
    fooled = coordinator(url, **dict(tls, zookeeper_ca=str(stranger.ca)))
    try:
        member.start(timeout=10)
        member.join("g", {}, wait=10)
        assert member.get_members("g").member_ids == (member.member_id,)
        with pytest.raises(CoordinatorUnreachable, match="cannot reach ZooKeeper"):
            fooled.start(timeout=3)
        assert fooled.state is not SessionState.CONNECTED
    finally:
        for c in (fooled, member):
            c.stop(timeout=2)
