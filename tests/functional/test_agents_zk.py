"""Real zkpoll-polling agents on a real ZooKeeper split a static source exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.agents import (
    AgentProcess,
    polls_by_cycle,
    wait_until,
    write_static_source,
)

pytestmark = pytest.mark.functional


def test_three_agents_split_500_resources_with_no_gap_and_no_overlap(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    ids = write_static_source(tmp_path / "polling.yaml", 500, interval=2)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    agents = [AgentProcess(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml")
              for i in range(3)]
    try:
        # Wait for 4 cycles in which all three agents polled.
        def full_cycles() -> list[str]:
            members: dict[str, set[str]] = {}
            for agent in agents:
                for sample in agent.samples():
                    members.setdefault(sample["cycle_start"], set()).add(sample["member_id"])
            return sorted(c for c, m in members.items() if len(m) == 3)

        assert wait_until(lambda: len(full_cycles()) >= 5, 40), \
            "\n".join(a.log()[-2000:] for a in agents)
        checked = full_cycles()[:-1]  # the newest may still be being written
        cycles = polls_by_cycle(agents)
        for cycle in checked:
            polled = cycles[cycle]
            assert set(polled) == set(ids), f"cycle {cycle}: gaps {set(ids) - set(polled)}"
            assert max(polled.values()) == 1, \
                f"cycle {cycle}: duplicates {[r for r, n in polled.items() if n > 1]}"
        shares = [sum(1 for s in a.samples() if s["cycle_start"] == checked[-1]) for a in agents]
        assert all(100 < share < 240 for share in shares), shares
    finally:
        for agent in agents:
            agent.terminate()
    for agent in agents:
        assert agent.proc.returncode == 0, agent.log()[-2000:]
        assert "Traceback" not in agent.log()
