"""Smoke test of ``python -m benchmarks.scale_bench`` at tiny N on the real ZooKeeper fixture.

It checks what the benchmark prints and that every view converged, never
how fast (speed lives in the benchmark's own output).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zkpoll.testing import ManagedZooKeeper

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]  # benchmarks run from the repository root
MEMBERS = 6

#: Every line carries these; the ones in NULL_FOR_TOOZ are null for tooz.
FIELDS = {
    "bench", "impl", "members", "workers", "session_timeout_s", "settle_time_s",
    "join_converged_s", "watches", "watches_per_member", "zk_idle_requests_per_member_per_s",
    "claim_p99_s", "claims_unconfirmed", "claims_seen_s", "zk_requests_per_member_per_cycle",
    "zk_idle_requests_per_member_same_window", "zk_net_requests_per_member_per_cycle",
    "rss_mb_per_member", "leave_converged_s", "crash_converged_s", "timed_out", "loadavg",
}
NULL_FOR_TOOZ = {"claim_p99_s", "claims_unconfirmed", "claims_seen_s"}
CONVERGED = {"join_converged_s", "leave_converged_s", "crash_converged_s"}


def test_scale_bench_tiny_run_prints_one_converged_line_per_impl(
        zookeeper_server: ManagedZooKeeper) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_bench", "--members", str(MEMBERS),
         "--workers", "2",
         "--impl", "zkpoll,tooz", "--zk-hosts", zookeeper_server.address,
         "--session-timeout", "2", "--heartbeat", "0.2", "--settle-time", "1",
         "--idle-window", "1", "--converge-timeout", "20", "--member-nice", "1",
         "--switch-interval", "0.01"],
        cwd=ROOT, check=False, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [(line["impl"], line["members"]) for line in lines] == [
        ("zkpoll", MEMBERS), ("tooz", MEMBERS)], proc.stderr[-3000:]
    for line in lines:
        assert line["bench"] == "scale"
        assert FIELDS <= set(line), FIELDS - set(line)
        assert line["timed_out"] == [], line
        for field in CONVERGED:
            assert isinstance(line[field], float) and line[field] >= 0, (field, line)
        # Total watches on a shared server include other clients': only the type.
        assert isinstance(line["watches"], int)
        assert line["zk_requests_per_member_per_cycle"] > 0
        assert line["rss_mb_per_member"] > 0
        assert (line["member_nice"], line["switch_interval"]) == (1, 0.01)
        join_cpu = line["cpu_s"]["join"]  # where the cost goes; no server of ours here
        assert join_cpu["wall"] > 0 and join_cpu["members_user"] > 0, line
        assert join_cpu["zookeeper_user"] == 0, line
        assert "connected" in proc.stderr and "converged" in proc.stderr
    zkpoll, tooz = lines
    assert isinstance(zkpoll["claim_p99_s"], float)
    assert isinstance(zkpoll["claims_unconfirmed"], int)
    assert 0 <= zkpoll["claims_unconfirmed"] <= MEMBERS
    # Today's layout carries claims in member data: every view sees them.
    assert isinstance(zkpoll["claims_seen_s"], float | None)
    assert all(tooz[field] is None for field in NULL_FOR_TOOZ), tooz
