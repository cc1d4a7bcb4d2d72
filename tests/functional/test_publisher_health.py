"""Publishing failures show in /healthz, /metrics, the cycle log line and the member data.

A real agent process in a ZooKeeper group publishes through remote write
to a real Prometheus that is stopped, then started again (spooled: degraded
after ``degraded_after``), or to a file it cannot write, then can
(no spool: degraded at the first lost batch).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.functional.agents import start_agent, write_static_source
from zkpoll.testing import free_port
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def healthz(api: str, query: str = "") -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://{api}/healthz{query}")
    return status, json.loads(body) if body else {}


def metric(api: str, name: str) -> float | None:
    _, body = get(f"http://{api}/metrics")
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.MULTILINE)
    return float(found.group(1)) if found else None


def member_publishers(hosts: str) -> dict[str, Any]:
    """The ``publishers`` report of the (only) member, found in its claims record
    in ZooKeeper (``report``), where zkpoll-status reads it."""
    client = KazooClient(hosts=hosts)
    client.start(timeout=10)
    try:
        stack = ["/"]
        while stack:
            path = stack.pop()
            data, _ = client.get(path)
            try:
                decoded = json.loads(data) if data else None
            except ValueError:
                decoded = None
            report = decoded.get("report") if isinstance(decoded, dict) else None
            if isinstance(report, dict) and "publishers" in report:
                return report["publishers"]
            stack.extend(f"{path.rstrip('/')}/{child}" for child in client.get_children(path))
        return {}
    finally:
        client.stop()
        client.close()


def test_a_failing_sink_degrades_the_agent_and_recovers(zookeeper_server, zk_chroot,
                                                        managed_prometheus, tmp_path: Path):
    prom = managed_prometheus()
    write_static_source(tmp_path / "polling.yaml", 20, interval=1)
    api = f"127.0.0.1:{free_port()}"
    sink = f"{prom.remote_write_url}?retry_backoff=0.2&max_backoff=1"
    agent = start_agent(tmp_path, "agent", f"zookeeper://{zookeeper_server.address}"
                         f"{zk_chroot}?timeout=4", tmp_path / "polling.yaml",
                         extra=f"[publisher]\ndefault_publishers = {sink}\n"
                               f"spool_dir = {tmp_path / 'spool'}\ndegraded_after = 2\n"
                               f"[api]\nbind = {api}\n")
    hosts = zookeeper_server.address + zk_chroot
    try:
        wait_for(lambda: (metric(api, "zkpoll_samples_published_total") or 0) > 20, 30,
                 '(metric(api, "zkpoll_samples_published_total") or 0) > 20', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        assert healthz(api) == (200, healthz(api)[1]) and healthz(api)[1]["status"] == "ok"
        prom.stop()
        wait_for(lambda: healthz(api)[1].get("status") == "degraded", 20,
                 'healthz(api)[1].get("status") == "degraded"', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        status, body = healthz(api)
        assert status == 200 and body["problems"] == []  # degraded, not withdrawn
        [(url, summary)] = body["publishers"].items()
        assert url.startswith("prometheus+remote-write://") and summary["state"] == "degraded"
        assert summary["backlog_samples"] > 0 and summary["oldest_undelivered_age_s"] > 0
        assert summary["last_success"] and "Connection" in summary["last_error"]
        assert body["degraded"] and "failing for" in body["degraded"][0]
        assert healthz(api, "?degraded=503")[0] == 503
        assert metric(api, "zkpoll_publisher_degraded") == 1.0
        assert metric(api, "zkpoll_degraded") == 1.0
        assert (metric(api, "zkpoll_publisher_backlog_samples") or 0) > 0
        assert (metric(api, "zkpoll_publisher_oldest_undelivered_age_seconds") or 0) > 0
        assert metric(api, "zkpoll_publisher_last_success_timestamp_seconds")
        wait_for(lambda: member_publishers(hosts).get(url, {}).get("state") == "degraded",
                 40, "the member data to say the publisher is degraded", interval=0.2)
        assert re.search(r"WARNING .*source static cycle \d+: .*, [1-9]\d* publish errors",
                         agent.log())
        prom.start()
        wait_for(lambda: healthz(api)[1].get("status") == "ok", 30,
                 'healthz(api)[1].get("status") == "ok"', interval=0.2)
        wait_for(lambda: metric(api, "zkpoll_publisher_backlog_samples") == 0, 20,
                 'metric(api, "zkpoll_publisher_backlog_samples") == 0', interval=0.2)
        assert metric(api, "zkpoll_publisher_degraded") == 0.0
        wait_for(lambda: member_publishers(hosts).get(url, {}).get("state") == "ok", 40,
                 'member_publishers(hosts).get(url, {}).get("state") == "ok"', interval=0.2)
    finally:
        agent.terminate()
    assert "Traceback" not in agent.log()


def test_a_file_publisher_that_cannot_write_degrades_at_its_first_lost_batch(
        zookeeper_server, zk_chroot, tmp_path: Path):
    """No spool: a failed batch is lost, so /healthz says degraded at once (the
    hour of degraded_after, meant for spooled publishers, never elapses here),
    and ok again at the next batch written."""
    write_static_source(tmp_path / "polling.yaml", 5, interval=1)
    blocker = tmp_path / "blocker"
    blocker.write_text("")  # a regular file: not even root makes a directory of it
    target = blocker / "samples.jsonl"
    api = f"127.0.0.1:{free_port()}"
    agent = start_agent(tmp_path, "agent", f"zookeeper://{zookeeper_server.address}"
                         f"{zk_chroot}?timeout=4", tmp_path / "polling.yaml",
                         extra=f"[publisher]\ndefault_publishers = file://{target}\n"
                               f"degraded_after = 3600\n[api]\nbind = {api}\n")
    hosts = zookeeper_server.address + zk_chroot
    try:
        wait_for(lambda: healthz(api)[1].get("status") == "degraded", 30,
                 'healthz(api)[1].get("status") == "degraded"', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        status, body = healthz(api)
        assert status == 200 and body["problems"] == []  # degraded, not withdrawn
        [(url, summary)] = body["publishers"].items()
        assert url == f"file://{target}" and summary["state"] == "degraded"
        assert summary["spooled"] is False and summary["failing_for_s"] < 3600
        assert summary["lost_batches"]["write_failed"] >= 1
        assert summary["dropped"]["write_failed"] >= 1
        assert f"cannot write {target}" in summary["last_error"]
        assert "no spool: its failed batches are lost" in body["degraded"][0]
        assert healthz(api, "?degraded=503")[0] == 503
        assert (metric(api, "zkpoll_publisher_lost_batches_total") or 0) >= 1
        assert metric(api, "zkpoll_publisher_degraded") == 1.0
        assert metric(api, "zkpoll_degraded") == 1.0
        wait_for(lambda: member_publishers(hosts).get(url, {}).get("state") == "degraded",
                 40, "the member data to say the publisher is degraded", interval=0.2)
        assert re.search(r"WARNING .*source static cycle \d+: .*, [1-9]\d* publish errors",
                         agent.log())
        blocker.unlink()  # the directory can be made now: the next batch is written
        wait_for(lambda: healthz(api)[1].get("status") == "ok", 30,
                 'healthz(api)[1].get("status") == "ok"', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        summary = healthz(api)[1]["publishers"][url]
        assert summary["last_success"] and summary["lost_batches"]["write_failed"] >= 1
        assert metric(api, "zkpoll_publisher_degraded") == 0.0
        assert target.read_text().count("\n") >= 1
    finally:
        agent.terminate()
    assert "Traceback" not in agent.log()


def test_two_agents_never_share_a_spool(zookeeper_server, zk_chroot, tmp_path: Path):
    write_static_source(tmp_path / "polling.yaml", 5, interval=1)
    backend = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=4"
    extra = (f"[publisher]\ndefault_publishers = http://127.0.0.1:{free_port()}/\n"
             f"spool_dir = {tmp_path / 'spool'}\n")
    first = start_agent(tmp_path, "first", backend, tmp_path / "polling.yaml", extra=extra)
    try:
        wait_for(lambda: "polling 1 source(s)" in first.log(), 20,
                 '"polling 1 source(s)" in first.log()', interval=0.2,
                 diagnostics=lambda: first.log())
        second = start_agent(tmp_path, "second", backend, tmp_path / "polling.yaml",
                              extra=extra)
        assert second.proc.wait(30) == 2
        assert f"is in use by pid {first.proc.pid}" in second.log()
        assert "must not share a spool" in second.log() and "Traceback" not in second.log()
    finally:
        first.terminate()
