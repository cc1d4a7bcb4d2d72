"""The whole coordination backend down for longer than the lease.

This is where ``[coordination] on_backend_loss`` decides (docs/design.md):
``fence`` (default) stops partitioned polling once the lease runs out (gaps,
never duplicates); ``keep_last_ring`` keeps polling the last slice (no gaps,
and no duplicates when every agent lost the backend at once). Either way,
once ZooKeeper is back, every cycle is polled exactly once again.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.functional.agents import parse_poll, start_agent, write_static_source
from tests.functional.audit import (
    Collector,
    audit_cycles,
    describe_cycles,
    first_cycle_done_by_all,
)
from tests.functional.fleet import ServiceProcess, logs_tail
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional
INTERVAL = 1
SESSION_TIMEOUT = 2.0
OUTAGE = 3 * SESSION_TIMEOUT
#: Longest wait for every agent to poll again once the server answers (a
#: busy machine: the server's JVM, kazoo's backoff, the new sessions, settle).
MAX_RECOVERY = 90.0
_FENCE_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ "
                        r"zkpoll\.ownership\.partition \[[^]]*\] group \S+: (FENCED|unfenced): ")


def _resumed_at(agents: list[ServiceProcess], since: float) -> float | None:
    """When the last agent logged polling partitioned work again after ``since``.

    None while an agent has not, or has fenced again since (the agents log
    in local time, as ``time.time()`` is read here).
    """
    latest = []
    for agent in agents:
        events = []
        for line in agent.log().splitlines():
            match = _FENCE_LOG.match(line)
            if match:
                at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if at >= since:
                    events.append((at, match.group(2) == "FENCED"))
        if not events or events[-1][1]:
            return None
        latest.append(events[-1][0])
    return max(latest)


@pytest.mark.parametrize("policy", ["fence", "keep_last_ring"])
def test_zookeeper_down_longer_than_the_lease(managed_zookeeper, tmp_path: Path,
                                              policy: str) -> None:
    server = managed_zookeeper()
    url = f"zookeeper://{server.address}/loss?timeout={SESSION_TIMEOUT}"
    ids = write_static_source(tmp_path / "polling.yaml", 60, interval=INTERVAL)
    agents = [start_agent(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml",
                           extra=f"[coordination]\non_backend_loss = {policy}\n"
                                 # reconnect within 0.5 s of the restart
                                 "retry_backoff = 0.1\nmax_retry_interval = 0.5\n")
              for i in range(2)]
    collector = Collector(parse_poll, agents)
    try:
        wait_for(lambda: first_cycle_done_by_all(collector.refresh(),
                                                   [a.name for a in agents]) is not None,
                 30, "a cycle polled by every agent", interval=0.2,
                 diagnostics=lambda: logs_tail(agents))
        first = first_cycle_done_by_all(collector.refresh(), [a.name for a in agents])
        assert first is not None
        time.sleep(3 * INTERVAL)

        # What the test observed of the server, on a busy machine too: it may
        # still answer until kill() returns (``dead``), it cannot answer before
        # start() is called (``restarting``), it answers once start() returns
        # (``up``; start() may return seconds after agents already reconnected).
        down = time.time()
        server.kill()
        dead = time.time()
        time.sleep(OUTAGE)
        restarting = time.time()
        server.start()
        up = time.time()

        # Recovered: every agent logged that it polls partitioned work again
        # (and has not fenced since), and two cycles after that are audited.
        def recovered() -> bool:
            resumed = _resumed_at(agents, restarting)
            return resumed is not None and len(audit_cycles(
                collector.refresh(), ids, since=resumed + INTERVAL / 2,
                interval=INTERVAL)) >= 2

        wait_for(recovered, MAX_RECOVERY, "recovered", interval=0.2,
                 diagnostics=lambda: logs_tail(agents))
        resumed = _resumed_at(agents, restarting)
        assert resumed is not None

        audits = audit_cycles(collector.refresh(), ids, since=first + INTERVAL,
                              interval=INTERVAL)
        context = (f"\nserver killed at t+{dead - down:.2f}s, restarted at "
                   f"t+{restarting - down:.2f}s, answering by t+{up - down:.2f}s, every "
                   f"agent polling again by t+{resumed - down:.2f}s\n"
                   f"{describe_cycles(audits, down, limit=60)}\n{logs_tail(agents)}")
        assert all(a.proc.poll() is None for a in agents), context
        before = [a for a in audits if a.cycle_at + INTERVAL <= down]
        outage = [a for a in audits if down <= a.cycle_at < up]
        # Cycles the lease had run out for and that were over before the server
        # process was even started again: nobody could have polled them.
        lease_gone = [a for a in outage if a.cycle_at >= dead + SESSION_TIMEOUT
                      and a.cycle_at + INTERVAL <= restarting]
        recovery = [a for a in audits if restarting <= a.cycle_at < resumed + INTERVAL / 2]
        after = [a for a in audits if a.cycle_at >= resumed + INTERVAL / 2]
        assert before and lease_gone and len(after) >= 2, context
        exact = before + after + (outage if policy == "keep_last_ring" else [])
        assert not [a for a in exact if a.gaps or a.duplicates], "not exactly once" + context
        assert not [a for a in outage if a.duplicates], "duplicates in the outage" + context
        if policy == "fence":
            assert all(a.gaps == set(ids) for a in lease_gone), "polled while fenced" + context
            assert not [a for a in recovery if a.duplicates], "duplicates" + context
        else:
            # Agents reconnect one by one; one still cut off keeps its old
            # slice while another already polls the new ring: a bounded
            # overlap (docs/design.md, "Whole backend down").
            troubled = [a for a in recovery if a.gaps or a.duplicates]
            print(f"keep_last_ring recovery: {len(troubled)} cycle(s) with "
                  f"{sum(len(a.duplicates) for a in recovery)} duplicate(s), "
                  f"{sum(len(a.gaps) for a in recovery)} gap(s)")
            assert len(troubled) <= 3, "recovery longer than 3 cycles" + context
    finally:
        for agent in agents:
            agent.kill()
