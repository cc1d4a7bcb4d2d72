"""The real ``zkpoll-status`` console script against real agents on a real ZooKeeper."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.functional.agents import start_agent, write_static_source
from tests.functional.fleet import ServiceProcess
from zkpoll.testing import free_port
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

STATUS = Path(sys.executable).with_name("zkpoll-status")


def status(conf: Path, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    """Run the console script; never lets it hang the test."""
    return subprocess.run([str(STATUS), "--config-file", str(conf), "--timeout", str(timeout),
                           *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def status_json(conf: Path, *args: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    run = status(conf, "--format", "json", *args, timeout=timeout)
    return run.returncode, json.loads(run.stdout)


def write_conf(path: Path, url: str | None) -> Path:
    path.write_text("[coordination]\n" + (f"backend_url = {url}\n" if url else ""))
    return path


def healthy(conf: Path, agents: list[ServiceProcess], resources: int,
            interval: float) -> dict[str, Any] | None:
    """The JSON report once every agent is an active member with a stable split.

    "Active" is judged at the report's ``now``; the cycle in flight may have
    started before the last member's ``active_at``, so also wait until one
    whole ``interval`` has passed since then: the in-flight ring is the full one.
    """
    code, doc = status_json(conf)
    if code != 0 or len(doc["groups"]) != 1:
        return None
    group = doc["groups"][0]
    active = [m for m in group["members"] if m["state"] == "active"]
    pids = {m["pid"] for m in active}
    stable = [s["total"] for s in group["sources"]] == [resources]
    settled = bool(active) and max(m["active_at"] or 0.0 for m in active) <= (
        time.time() - interval)
    return doc if pids == {a.proc.pid for a in agents} and stable and settled else None


def polled_by(agents: list[ServiceProcess], resource: str, start: float) -> set[str]:
    """Member ids that wrote a sample of ``resource`` for the cycle starting at ``start``."""
    return {s["member_id"] for a in agents for s in a.records()
            if s["resource_id"] == resource and abs(iso_to_epoch(s["cycle_start"]) - start) < 0.01}


def iso_to_epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def stop_all(agents: list[ServiceProcess]) -> None:
    for agent in agents:
        if agent.proc.poll() is None:
            agent.proc.send_signal(signal.SIGCONT)
            agent.kill()


def test_report_owner_and_takeover_with_three_agents(zookeeper_server, zk_chroot,
                                                     tmp_path: Path) -> None:
    write_static_source(tmp_path / "polling.yaml", 60, interval=2)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    conf = write_conf(tmp_path / "status.conf", url)
    agents = [start_agent(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml")
              for i in range(3)]
    try:
        report: dict[str, Any] | None = None

        def ready() -> bool:
            nonlocal report
            report = healthy(conf, agents, 60, 2)
            return report is not None
        wait_for(ready, 40, "ready", interval=0.5, diagnostics=lambda: status(conf).stdout)
        assert report is not None and report["status"] == "ok" and report["problems"] == []
        group = report["groups"][0]
        assert group["group"] == "synthetic" and len(group["ring_members"]) == 3
        assert all(m["sources"]["static"]["stale"] is False for m in group["members"])

        table = status(conf)
        assert table.returncode == 0, table.stdout + table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].startswith("OK: 0 critical, 0 warning(s); 1 group(s)")
        header = next(line for line in lines if line.lstrip().startswith("MEMBER"))
        rows = [line for line in lines if any(m in line for m in group["ring_members"])
                and "active" in line]
        assert len(rows) == 3
        assert {row.index("active") for row in rows} == {header.index("STATE")}

        # owner: agrees with what the agents actually polled, now and next cycle.
        code, owner = status_json(conf, "owner", "res-00007", "--source", "static")
        assert code == 0
        [row] = owner["owners"]
        assert row["owner"] in group["ring_members"]
        assert row["successor"] in group["ring_members"] and row["successor"] != row["owner"]
        wait_for(lambda: polled_by(agents, "res-00007", row["next_start"]), 15,
                 'polled_by(agents, "res-00007", row["next_start"])', interval=0.2)
        assert polled_by(agents, "res-00007", row["cycle_start"]) == {row["owner"]}
        assert polled_by(agents, "res-00007", row["next_start"]) == {row["next_owner"]}
        text = status(conf, "owner", "res-00007")
        assert text.returncode == 0 and row["successor"] in text.stdout

        # If the owner dies, the announced successor takes the resource over.
        owner_agent = next(a for a in agents if any(
            s["member_id"] == row["owner"] for s in a.records()))
        owner_agent.kill()
        killed = time.time()

        def taken_over() -> set[str]:
            return {s["member_id"] for a in agents for s in a.records()
                    if s["resource_id"] == "res-00007"
                    and iso_to_epoch(s["cycle_start"]) > killed}
        wait_for(lambda: taken_over(), 20, "taken_over()", interval=0.2)
        assert taken_over() == {row["successor"]}

        # Graceful stops leave an empty group: critical.
        for agent in agents:
            if agent is not owner_agent:
                assert agent.terminate() == 0
        code, doc = status_json(conf)
        assert code == 2 and doc["groups"][0]["members"] == []
        assert any("empty group" in p["message"] for p in doc["problems"])
    finally:
        stop_all(agents)


def test_a_stopped_agent_is_reported_stale(zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    write_static_source(tmp_path / "polling.yaml", 20, interval=1)
    # A long session: the stopped agent stays a member while it is stale.
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=20"
    conf = write_conf(tmp_path / "status.conf", url)
    agents = [start_agent(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml")
              for i in range(2)]
    try:
        wait_for(lambda: healthy(conf, agents, 20, 1) is not None, 40,
                 "healthy(conf, agents, 20, 1) is not None", interval=0.5,
                 diagnostics=lambda: status(conf).stdout)
        agents[0].proc.send_signal(signal.SIGSTOP)
        found: dict[str, Any] = {}

        def stale() -> bool:
            code, doc = status_json(conf)
            found.update(doc, code=code)
            return code == 2 and any(p["message"].startswith("stale") for p in doc["problems"])
        wait_for(stale, 10, "stale", interval=0.5, diagnostics=lambda: found)
        [problem] = found["problems"]
        members = {m["member_id"]: m for m in found["groups"][0]["members"]}
        assert members[problem["member"]]["pid"] == agents[0].proc.pid
        assert members[problem["member"]]["session"] == "live, silent"
        assert (problem["severity"], problem["source"]) == ("critical", "static")
        table = status(conf)
        assert table.returncode == 2 and "STALE" in table.stdout and "CRITICAL" in table.stdout
    finally:
        stop_all(agents)


def test_unreachable_coordinator_is_one_line_and_critical(tmp_path: Path) -> None:
    conf = write_conf(tmp_path / "status.conf", f"zookeeper://127.0.0.1:{free_port()}/zkpoll")
    started = time.monotonic()
    run = status(conf, timeout=1.0)
    assert time.monotonic() - started < 15
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "unreachable" in run.stderr, run.stderr
    code, doc = status_json(conf, "owner", "res-1", timeout=1.0)
    assert (code, doc["status"]) == (2, "critical")


def test_standalone_configuration_is_a_warning(tmp_path: Path) -> None:
    run = status(write_conf(tmp_path / "status.conf", None))
    assert run.returncode == 1 and "standalone" in run.stdout and run.stderr == ""
