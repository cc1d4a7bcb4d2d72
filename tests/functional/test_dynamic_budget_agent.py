"""A real agent with a dynamic pollster whose expression would freeze it (issue 12).

``str([[0]*100000]*100000)`` once took an agent to 17 GB and 99 % CPU and
made it ignore SIGINT.  Here a standalone ``zkpoll-polling`` runs that
definition (reading a loopback HTTP API) next to a synthetic source: the
bad pollster fails each cycle with a clear error, the other source keeps
its cycles, memory stays small, and the agent stops on SIGTERM or SIGINT
within seconds.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.functional.agents import start_agent
from zkpoll.testing.waiting import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(120)]

#: The agent's resident memory must stay under this (its normal size is ~60 MB).
MAX_RSS_KB = 400 * 1024


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_expression_over_budget_never_freezes_the_agent(
        stats_api: str, tmp_path: Path, signum: signal.Signals) -> None:
    definitions = tmp_path / "pollsters.d"
    definitions.mkdir()
    (definitions / "bomb.yaml").write_text(
        "- name: dyn.bomb\n  sample_type: gauge\n  unit: B\n"
        f"  url_path: {stats_api}\n  response_entries_key: queue\n"
        "  value_attribute: \"depth | str([[0]*100000]*100000)\"\n"
        "  resource_id_attribute: name\n")
    polling = tmp_path / "polling.yaml"
    polling.write_text(
        "sources:\n"
        "  - name: bomb\n    interval: 1\n    meters: [dyn.bomb]\n"
        "  - name: steady\n    interval: 1\n    meters: [synthetic.constant]\n"
        "    resources: [r1]\n")
    agent = start_agent(tmp_path, "agent", "", polling, namespaces="central,synthetic",
                         extra=f"[polling]\npollsters_definitions_dirs = {definitions}\n")
    peak = 0
    try:
        def failed_bomb_cycles() -> int:
            return agent.log().count("pollster dyn.bomb failed: ExpressionBudgetError")

        wait_for(lambda: failed_bomb_cycles() >= 3, 30, "failed_bomb_cycles() >= 3", interval=0.2,
                 diagnostics=lambda: agent.log()[-3000:])

        # The steady source keeps polling: cycles after the bomb first went off.
        def steady_cycles_since() -> set[str]:
            return {s["cycle_start"] for s in agent.records()
                    if s["name"] == "synthetic.constant"}

        seen = len(steady_cycles_since())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(steady_cycles_since()) < seen + 3:
            peak = max(peak, _rss_kb(agent.proc.pid))
            time.sleep(0.2)
        assert len(steady_cycles_since()) >= seen + 3, agent.log()[-3000:]
        peak = max(peak, _rss_kb(agent.proc.pid))
        signalled = time.monotonic()
        agent.proc.send_signal(signum)
        status = agent.proc.wait(15)
        stopped_in = time.monotonic() - signalled
    finally:
        agent.kill()
    log = agent.log()
    assert status == 0, log[-3000:]
    assert stopped_in < 10, f"stopped {stopped_in:.1f}s after the signal"
    assert peak < MAX_RSS_KB, f"agent grew to {peak} kB"
    assert "went over its budget: '*' would build" in log
    assert "Traceback" not in log
    assert not [s for s in agent.records() if s["name"] == "dyn.bomb"]
