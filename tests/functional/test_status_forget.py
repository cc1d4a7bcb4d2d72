"""``zkpoll-status forget GROUP`` against real ZooKeeper, Redis and Memcached servers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from oslo_config import cfg

from zkpoll.coordination import Coordinator, get_coordinator, register_opts

pytestmark = pytest.mark.functional

STATUS = Path(sys.executable).with_name("zkpoll-status")


def forget(conf: Path, group: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STATUS), "--config-file", str(conf), "--timeout", "5",
                           "forget", group], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def member(backend_url: str) -> Iterator[Coordinator]:
    """A started coordinator on the test's backend (stopped after the test)."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", f"{backend_url}?timeout=2", "coordination")
    conf.set_override("heartbeat_interval", 0.2, "coordination")
    coordinator = get_coordinator(conf)
    coordinator.start(timeout=10)
    yield coordinator
    coordinator.stop()


def write_conf(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "zkpoll.conf"
    path.write_text(f"[coordination]\nbackend_url = {url}\n")
    return path


def test_forget_removes_an_empty_group_only(tmp_path: Path, backend_url: str,
                                            member: Coordinator) -> None:
    conf = write_conf(tmp_path, backend_url)
    member.join("retired", {"namespace": "central"}, wait=10)
    member.join("busy", {"namespace": "central"}, wait=10)
    member.leave("retired", wait=10)
    assert {"retired", "busy"} <= set(member.get_groups(timeout=5))

    refused = forget(conf, "busy")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (
        f"zkpoll-status: error: forget: group busy has 1 live member(s): {member.member_id}; "
        "stop them first (a group is forgotten only when empty)")
    assert member.get_members("busy", timeout=5).member_ids == (member.member_id,)

    done = forget(conf, "retired")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("forgot group retired (no live member)")
    groups = set(member.get_groups(timeout=5))
    assert "retired" not in groups and "busy" in groups

    again = forget(conf, "retired")
    assert again.returncode == 2 and "no group retired" in again.stderr
    assert "Traceback" not in again.stderr
