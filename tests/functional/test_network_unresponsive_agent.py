"""A real agent polls a healthy URL and one that never answers, every 4 s (issue 12).

The unresponsive endpoint (accepts TCP, never replies) costs only its own
sample (``http.status`` 0 with the error); the healthy URL of the same
source has its ``http.status`` and ``http.response.time`` in every cycle,
and no pollster call times out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.functional.agents import start_agent
from zkpoll.testing.plugins import SilentServer
from zkpoll.testing.waiting import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(120)]


@pytest.fixture
def healthy_url(healthy_http: str) -> str:
    return f"http://{healthy_http}/health"

def test_one_dead_url_costs_only_its_own_sample(healthy_url: str, tmp_path: Path) -> None:
    silent = SilentServer()
    dead_url = f"http://{silent.address}/health"
    polling = tmp_path / "polling.yaml"
    polling.write_text(
        "sources:\n  - name: web\n    interval: 4\n"
        "    meters: [http.status, http.response.time]\n"
        f"    resources: ['{healthy_url}', '{dead_url}']\n")
    agent = start_agent(tmp_path, "agent", "", polling, namespaces="central")
    try:
        def cycles() -> dict[str, list[dict[str, Any]]]:
            by_cycle: dict[str, list[dict[str, Any]]] = {}
            for sample in agent.records():
                by_cycle.setdefault(sample["cycle_start"], []).append(sample)
            return by_cycle

        wait_for(lambda: len(cycles()) >= 4, 60, "len(cycles()) >= 4", interval=0.2,
                 diagnostics=lambda: agent.log()[-3000:])
        assert agent.terminate() == 0
    finally:
        agent.kill()
        silent.close()
    log = agent.log()
    observed = sorted(cycles().items())[:-1]  # the last cycle may be cut by the stop
    assert len(observed) >= 3
    for start, samples in observed:
        got = {(s["name"], s["resource_id"]): s for s in samples}
        assert got[("http.status", healthy_url)]["volume"] == 200, start
        assert ("http.response.time", healthy_url) in got, start
        dead = got[("http.status", dead_url)]
        assert dead["volume"] == 0 and dead["resource_metadata"]["error"], start
        assert ("http.response.time", dead_url) not in got, start
    assert "did not return within" not in log
    assert "overran its interval" not in log
