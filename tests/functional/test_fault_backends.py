"""Real ``zkpoll-polling`` agents on Redis and on Memcached: join, SIGTERM, kill -9.

One scenario per backend, in phases, on a static source of 300 resources
polled every 2 s: three agents, then a fourth joins (no duplicate, no gap),
one is stopped with SIGTERM (none either), one is killed with SIGKILL (no
gap in the cycles that start once its member timeout has run out).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.functional.agents import (
    AgentProcess,
    cycle_report,
    write_static_source,
)
from zkpoll.testing.waiting import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.slow]

TIMEOUT = 2.0
INTERVAL = 2
#: A killed member's key is gone at most this long after the kill (see
#: test_coordinator_contract.SLACK: memcached's clock has 1 s ticks).
GONE_AFTER = {"redis": TIMEOUT + 1.0, "memcached": TIMEOUT + 2.0}


def start_of(cycle: str) -> float:
    return dt.datetime.fromisoformat(cycle).timestamp()


def complete_cycles(agents: list[AgentProcess], after: float) -> list[str]:
    """Cycles that started after ``after`` and are surely finished and written."""
    now = time.time()
    seen = {s["cycle_start"] for a in agents for s in a.samples()}
    return sorted(c for c in seen if after <= start_of(c) <= now - 2 * INTERVAL)


def polled_by(agents: list[AgentProcess], cycle: str) -> set[str]:
    return {s["member_id"] for a in agents for s in a.samples() if s["cycle_start"] == cycle}


def assert_clean(agents: list[AgentProcess], ids: list[str], cycles: list[str],
                 what: str, dups_only: bool = False) -> None:
    for cycle, (gaps, dups) in cycle_report(agents, ids, cycles).items():
        assert not dups, f"{what}: cycle {cycle}: {len(dups)} duplicates"
        assert dups_only or not gaps, f"{what}: cycle {cycle}: {len(gaps)} gaps"


@pytest.fixture(params=["redis", "memcached"])
def server_url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue(f"{request.param}_server")
    return f"{server.url}/fault-{uuid.uuid4().hex}?timeout={TIMEOUT:g}"


def test_join_sigterm_and_kill9(server_url: str, tmp_path: Path) -> None:
    kind = server_url.split(":", 1)[0]
    polling = tmp_path / "polling.yaml"
    ids = write_static_source(polling, 300, interval=INTERVAL)
    agents = [AgentProcess(tmp_path, f"agent{i}", server_url, polling) for i in range(3)]
    logs = lambda: "\n".join(f"--- {a.name}\n{a.log()[-1500:]}" for a in agents)
    try:
        began = time.time()
        wait_for(lambda: [c for c in complete_cycles(agents, began)
                          if len(polled_by(agents, c)) == 3],
                 30, "a complete cycle polled by 3 agents", interval=0.2, diagnostics=logs)
        first = next(c for c in complete_cycles(agents, began) if len(polled_by(agents, c)) == 3)

        # Join: a fourth agent announces itself settle_time ahead.
        agents.append(AgentProcess(tmp_path, "agent3", server_url, polling))
        wait_for(lambda: sum(len(polled_by(agents, c)) == 4
                             for c in complete_cycles(agents, began)) >= 2,
                 30, "2 complete cycles polled by 4 agents", interval=0.2, diagnostics=logs)

        # SIGTERM: agent0 announces its leave, polls until then, and exits.
        assert agents[0].terminate() == 0, agents[0].log()[-2000:]
        left = time.time()
        wait_for(lambda: len(complete_cycles(agents, left)) >= 2, 20,
                 "len(complete_cycles(agents, left)) >= 2", interval=0.2,
                 diagnostics=lambda: logs())
        assert_clean(agents, ids, complete_cycles(agents, start_of(first)), "join/SIGTERM")

        # kill -9: agent1's key expires after its member timeout.
        agents[1].kill()
        killed = time.time()
        wait_for(lambda: len(complete_cycles(agents, killed + GONE_AFTER[kind])) >= 2,
                 30, "2 complete cycles after the victim is gone", interval=0.2,
                 diagnostics=logs)
        assert_clean(agents, ids, complete_cycles(agents, killed), "kill -9", dups_only=True)
        assert_clean(agents, ids, complete_cycles(agents, killed + GONE_AFTER[kind]),
                     "after the killed member's timeout")
    finally:
        for agent in agents:  # a no-op for the ones already gone
            try:
                agent.terminate()
            except subprocess.TimeoutExpired:
                agent.kill()
    for agent in (agents[0], *agents[2:]):
        assert agent.proc.returncode == 0, agent.log()[-2000:]
        assert "Traceback" not in agent.log(), agent.log()[-3000:]
