"""Real ``zkpoll-polling`` agents on Redis and on Memcached: join, SIGTERM, kill -9.

One scenario per backend, in phases, on a static source of 300 resources
polled every 2 s: three agents, then a fourth joins (no duplicate, no gap),
one is stopped with SIGTERM (none either), one is killed with SIGKILL (no
gap in the cycles that start once its member timeout has run out).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.functional.agents import Poll, parse_poll, start_agent, write_static_source
from tests.functional.audit import Collector, audit_cycles
from zkpoll.testing.waiting import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.slow]

TIMEOUT = 2.0
INTERVAL = 2
#: A killed member's key is gone at most this long after the kill (see
#: test_coordinator_contract.SLACK: memcached's clock has 1 s ticks).
GONE_AFTER = {"redis": TIMEOUT + 1.0, "memcached": TIMEOUT + 2.0}


def complete_cycles(collector: Collector[Poll], after: float) -> list[float]:
    """Cycles that started after ``after`` and are surely finished and written."""
    now = time.time()
    return sorted({p.cycle_at for p in collector.refresh()
                   if after <= p.cycle_at <= now - 2 * INTERVAL})


def polled_by(collector: Collector[Poll], cycle: float) -> set[str]:
    """The member ids that polled in ``cycle``."""
    return {p.member for p in collector.refresh() if p.cycle_at == cycle}


def assert_clean(collector: Collector[Poll], ids: list[str], cycles: list[float],
                 what: str, dups_only: bool = False) -> None:
    """No duplicate (and, unless ``dups_only``, no gap) from the first to the last of
    ``cycles``, a cycle in between that nobody polled included."""
    assert cycles, f"{what}: no complete cycle to audit"
    audits = audit_cycles(collector.refresh(), ids, since=cycles[0], until=cycles[-1],
                          skip_newest=False, interval=INTERVAL)
    for audit in audits:
        assert not audit.duplicates, f"{what}: {audit.describe()}"
        assert dups_only or not audit.gaps, f"{what}: {audit.describe()}"


@pytest.fixture(params=["redis", "memcached"])
def server_url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue(f"{request.param}_server")
    return f"{server.url}/fault-{uuid.uuid4().hex}?timeout={TIMEOUT:g}"


def test_join_sigterm_and_kill9(server_url: str, tmp_path: Path) -> None:
    kind = server_url.split(":", 1)[0]
    polling = tmp_path / "polling.yaml"
    ids = write_static_source(polling, 300, interval=INTERVAL)
    agents = [start_agent(tmp_path, f"agent{i}", server_url, polling) for i in range(3)]
    collector = Collector(parse_poll, agents)
    logs = lambda: "\n".join(f"--- {a.name}\n{a.log()[-1500:]}" for a in agents)
    try:
        began = time.time()
        wait_for(lambda: [c for c in complete_cycles(collector, began)
                          if len(polled_by(collector, c)) == 3],
                 30, "a complete cycle polled by 3 agents", interval=0.2, diagnostics=logs)
        first = next(c for c in complete_cycles(collector, began)
                     if len(polled_by(collector, c)) == 3)

        # Join: a fourth agent announces itself settle_time ahead.
        agents.append(start_agent(tmp_path, "agent3", server_url, polling))
        collector.add(agents[-1])
        wait_for(lambda: sum(len(polled_by(collector, c)) == 4
                             for c in complete_cycles(collector, began)) >= 2,
                 30, "2 complete cycles polled by 4 agents", interval=0.2, diagnostics=logs)

        # SIGTERM: agent0 announces its leave, polls until then, and exits.
        assert agents[0].terminate() == 0, agents[0].log()[-2000:]
        left = time.time()
        wait_for(lambda: len(complete_cycles(collector, left)) >= 2, 20,
                 "len(complete_cycles(collector, left)) >= 2", interval=0.2,
                 diagnostics=lambda: logs())
        assert_clean(collector, ids, complete_cycles(collector, first), "join/SIGTERM")

        # kill -9: agent1's key expires after its member timeout.
        agents[1].kill()
        killed = time.time()
        wait_for(lambda: len(complete_cycles(collector, killed + GONE_AFTER[kind])) >= 2,
                 30, "2 complete cycles after the victim is gone", interval=0.2,
                 diagnostics=logs)
        assert_clean(collector, ids, complete_cycles(collector, killed), "kill -9", dups_only=True)
        assert_clean(collector, ids, complete_cycles(collector, killed + GONE_AFTER[kind]),
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
