"""Three real agents scrape 300 generated targets into a real VictoriaMetrics
through join, SIGTERM, a rolling restart of all and a kill -9.

How the count is made (``docs/design.md``, "Scraping exactly once: the
proof"): every agent writes the ``up`` sample of each target it scraped
into VictoriaMetrics, timestamped with the start of the cycle that scraped
it, and VictoriaMetrics keeps every write (no deduplication).  For every
target and every cycle of the audited window, the number of stored ``up``
samples at that cycle's timestamp must be exactly 1 (0 is a gap, 2+ a
duplicate), except in the kill -9 window, where the rules of
:func:`~tests.functional.fleet.kill9_in_cycle_and_check` apply (no gap from
the cycle after kill + session timeout, the victim's orphans scraped in the
cycle in flight at its session expiry).  The agents' own sample files are
audited the same way by the fleet harness; the two counts must agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.agents import Poll, parse_poll, start_agent
from tests.functional.audit import clock, rule
from tests.functional.fleet import (
    Fleet,
    Service,
    ServiceProcess,
    kill9_in_cycle_and_check,
)
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics

pytestmark = pytest.mark.functional

TARGETS = 300
SERIES = 100           # per target (the generator's smallest mix); plus up and scrape_*
INTERVAL = 2
SESSION_TIMEOUT = 3.0
JOB = "faults"


@pytest.fixture
def generator() -> Iterator[ManagedExpositionServer]:
    with ManagedExpositionServer(targets=TARGETS, series=SERIES) as server:
        yield server


def parse_up(sample: dict[str, Any], agent: str) -> Poll | None:
    """An agent's ``up`` sample is its scrape of a target in a cycle; others are not audited."""
    return parse_poll(sample, agent) if sample.get("name") == "up" else None


def scrape_service(generator: ManagedExpositionServer, vm: ManagedVictoriaMetrics,
                   workdir: Path) -> Service[Poll]:
    polling = workdir / "polling.yaml"
    polling.write_text(
        f"sources:\n  - name: {JOB}\n    interval: {INTERVAL}\n    meters: [prometheus.scrape]\n"
        "    scrape: {scrape_timeout: 1500ms}\n"
        "    resources:\n" + "".join(f"      - '{t}'\n" for t in generator.targets))

    def spawn(path: Path, name: str, url: str) -> ServiceProcess:
        agent = start_agent(path, name, url, polling, namespaces="central",
                            extra=f"[coordination]\nmember_name = {name}\n")
        conf = agent.conf_path.read_text().replace(
            "default_publishers = ", f"spool_dir = {path / name}-spool\n"
                                     f"default_publishers = {vm.remote_write_url}, ")
        agent.conf_path.write_text(conf)
        return agent
    return Service(noun="agent", group="central", interval=INTERVAL, ids=list(generator.targets),
                   spawn=spawn, parse=parse_up, stop_timeout=20.0, steady_timeout=45.0,
                   cycle_slack=20.0)


def stored_up(vm: ManagedVictoriaMetrics, since: float) -> dict[str, Counter[int]]:
    """target -> {cycle start ms: up samples stored at it}."""
    vm.flush()
    out: dict[str, Counter[int]] = {}
    for labels, points in vm.export(f'up{{job="{JOB}"}}', start=since).items():
        instance = dict(labels)["instance"]
        out.setdefault(instance, Counter()).update(ts for ts, _ in points)
    return out


def test_join_sigterm_rolling_restart_and_kill9_into_victoria_metrics(
        zookeeper_server, zk_chroot, generator: ManagedExpositionServer,
        victoria_metrics_server: ManagedVictoriaMetrics, tmp_path: Path) -> None:
    vm = victoria_metrics_server
    fleet = Fleet(scrape_service(generator, vm, tmp_path), tmp_path, zookeeper_server.address,
                  zk_chroot, SESSION_TIMEOUT, steady_cycles=2)
    try:
        agents = [fleet.start(f"agent{i}") for i in range(3)]
        first = fleet.wait_steady([a.name for a in agents])
        joiner = fleet.start("agent3")
        fleet.wait(lambda: len(fleet.cycles_with([joiner.name])) > 2, 30, "agent3 scraped")
        fleet.terminate(agents[0])
        fleet.wait_cycles_after(fleet.note("after SIGTERM"), 2)
        live = [*agents[1:], joiner]
        replacements = []
        for old in live:
            fleet.terminate(old)
            new = fleet.start(f"{old.name}-new")
            fleet.wait(lambda new=new: bool(fleet.cycles_with([new.name])), 30,
                       f"{new.name} scraped")
            replacements.append(new)
        t_rolled = fleet.note("rolling restart done")
        fleet.wait_cycles_after(t_rolled, 2)
        victim = replacements[1]
        failures = kill9_in_cycle_and_check(fleet, first, victim)
        t_kill = next(at for at, what in fleet.timeline if what.startswith("SIGKILL"))
        t_expire = fleet.watch.gone_at(fleet.member_ids(victim.name)[0]) or t_kill
        audits = fleet.audit(first)
        rule(failures, "0 duplicates and 0 gaps in every cycle before the kill (join, SIGTERM, "
             "rolling restart), in the agents' files",
             [a for a in audits if a.cycle_at + INTERVAL <= t_kill],
             lambda a: bool(a.gaps or a.duplicates), first)

        # the same count from what VictoriaMetrics stored
        stored = stored_up(vm, first - 1)
        cycles = sorted(a.cycle_at for a in audits)
        checked = [c for c in cycles if c + INTERVAL <= t_kill or c > t_kill + SESSION_TIMEOUT]
        counts = {(t, c): stored.get(t, Counter())[round(c * 1000)]
                  for t in generator.targets for c in checked}
        gaps = sorted(k for k, n in counts.items() if n == 0)
        duplicates = sorted(k for k, n in counts.items() if n > 1)
        in_flight = [c for c in cycles if c <= t_expire < c + INTERVAL]
        kill_window = [(t, c) for t in generator.targets for c in cycles
                       if t_kill - INTERVAL < c <= t_kill + SESSION_TIMEOUT]
        kill_dups = sum(max(0, stored.get(t, Counter())[round(c * 1000)] - 1)
                        for t, c in kill_window)
        print(f"\nVictoriaMetrics: {len(checked)} cycles x {TARGETS} targets checked, "
              f"{len(gaps)} gaps, {len(duplicates)} duplicates; kill -9 window "
              f"({len(in_flight)} cycle in flight at expiry {clock(t_expire)}): "
              f"{kill_dups} duplicate(s)")
        if gaps or duplicates:
            failures.append(f"VictoriaMetrics stored {len(gaps)} gaps {gaps[:5]} and "
                            f"{len(duplicates)} duplicates {duplicates[:5]} of up outside "
                            "the kill -9 window")
        if len(checked) < 12:
            failures.append(f"SCENARIO: only {len(checked)} cycles checked in VictoriaMetrics")
        fleet.finish(failures, crashed=(victim.name,))
    finally:
        fleet.cleanup()
