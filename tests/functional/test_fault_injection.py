"""Fault injection: real ``zkpoll-polling`` agents on real ZooKeeper, faults from outside.

Every test starts 5 agents (separate OS processes running the real entry
point) on one static source of 1,000 resources polled every 2 s by the
``synthetic.constant`` pollster, with a 3 s ZooKeeper session timeout
(``?timeout=3`` in the backend URL), 0.2 s heartbeats and a 1 s settle time.
Each agent's file publisher records every poll as (resource, cycle start,
member, poll time); :func:`~tests.functional.fleet.audit_cycles` gives, for
every cycle, the resources polled 0 times (gaps) and 2+ times (duplicates).

The audited cycles run from the first cycle in which all initial agents
polled to the end of the test, without the newest (it may be partially
written); a cycle in which nobody polled at all counts as all gaps.  Faults
are timed against the cycle phase so that each test exercises its worst
case deterministically (see each test), and a separate ZooKeeper client
(:class:`~tests.functional.fleet.MemberWatch`) records when a member's
znode disappears (the session expired: the survivors' takeover).

Expected semantics (docs/design.md, "Cycle semantics"):

- join, graceful leave (SIGTERM), rolling restart, leader loss: no gap and no
  duplicate in any cycle;
- kill -9: no gap in the cycles starting after the session timeout, and the
  orphans are polled in the cycle in flight at the session expiry;
  duplicates only among what the victim had polled in that cycle;
- SIGSTOP / connection cut for 2 x the session timeout: no duplicate at all
  (the victim fences itself), no gap once the survivors took over, and the
  victim rejoins under a new member id.

A failure names the rule, the offending cycles (counts, example resources,
who polled them when), the fault timeline, the member history and the tail
of every agent's log.  ``ZKPOLL_TEST_VERBOSE=1`` (with ``-s``) prints every
cycle's audit and that story for passing tests too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.functional.agents import Poll, polling_service, write_static_source
from tests.functional.audit import clock, exactly_once, require, rule
from tests.functional.fleet import Fleet, ServiceProcess, kill9_in_cycle_and_check

pytestmark = pytest.mark.functional

INTERVAL = 2            # seconds between cycles
RESOURCES = 1000
INITIAL = 5             # agents started by every test
SESSION_TIMEOUT = 3.0   # seconds; ZooKeeper ticks every 200 ms in the fixtures
STEADY_CYCLES = 2       # complete cycles with every initial agent before a fault


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet[Poll]]]:
    """Factory: ``make_fleet(hosts, root)``; every agent is stopped (or killed) after the test."""
    fleets: list[Fleet[Poll]] = []
    polling = tmp_path / "polling.yaml"
    service = polling_service(write_static_source(polling, RESOURCES, interval=INTERVAL),
                              polling, INTERVAL)

    def make(hosts: str, root: str, session_timeout: float = SESSION_TIMEOUT) -> Fleet[Poll]:
        fleet = Fleet(service, tmp_path, hosts, root, session_timeout, STEADY_CYCLES)
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.cleanup()


def start_initial(fleet: Fleet[Poll]) -> list[ServiceProcess]:
    return [fleet.start(f"agent{i}") for i in range(INITIAL)]


# --- graceful changes: exact in every cycle -------------------------------------------


def test_sixth_agent_joins_without_gap_or_duplicate(zookeeper_server, zk_chroot,
                                                    make_fleet) -> None:
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    names = [a.name for a in start_initial(fleet)]
    first = fleet.wait_steady(names)
    t_join = time.time()
    joiner = fleet.start("agent5")
    fleet.wait(lambda: len(fleet.cycles_with([joiner.name])) > 2, 25,
               f"{joiner.name} polled in 2 complete cycles")
    audits = fleet.audit(first)

    failures: list[str] = []
    exactly_once(failures, audits, t_join)
    before = [a for a in audits if a.cycle_at < t_join]
    joined = [a for a in audits if a.by_agent[joiner.name]]
    require(failures, len(before) >= STEADY_CYCLES,
            f"only {len(before)} audited cycle(s) before the join")
    require(failures, len(joined) >= 2,
            f"{joiner.name} polled in only {len(joined)} audited cycle(s)")
    fleet.finish(failures)


def test_sigterm_of_one_agent_hands_over_without_gap_or_duplicate(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    agents = start_initial(fleet)
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[1]
    t_term = time.time()
    fleet.terminate(victim)
    t_exit = time.time()
    fleet.wait_cycles_after(t_exit, 3)
    audits = fleet.audit(first)

    failures: list[str] = []
    exactly_once(failures, audits, t_term)
    after = [a for a in audits if a.cycle_at > t_exit]
    require(failures, len(after) >= 3, f"only {len(after)} audited cycle(s) after the exit")
    require(failures, not any(a.by_agent[victim.name] for a in after),
            f"{victim.name} polled after it exited?")
    fleet.finish(failures)


def test_rolling_restart_of_all_agents_without_gap_or_duplicate(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    initial = start_initial(fleet)
    first = fleet.wait_steady([a.name for a in initial])
    t_roll = time.time()
    replacements = []
    for old in initial:
        fleet.terminate(old)
        new = fleet.start(f"{old.name}-new")
        replacements.append(new)
        fleet.wait(lambda new=new: bool(fleet.cycles_with([new.name])), 25,
                   f"{new.name} polled")
        fleet.note(f"{new.name} polled")
    t_rolled = time.time()
    fleet.wait_cycles_after(t_rolled, 2)
    audits = fleet.audit(first)

    failures: list[str] = []
    exactly_once(failures, audits, t_roll)
    require(failures, bool(audits) and audits[0].cycle_at < t_roll < t_rolled
            < audits[-1].cycle_at, "the audited cycles do not cover the whole rolling restart")
    final = fleet.cycles_with([a.name for a in replacements])
    require(failures, bool(final), "no cycle was polled by all replacements together")
    fleet.finish(failures)


# --- crash: orphans polled in the cycle in flight at the expiry ----------------------


def test_kill9_orphans_are_polled_in_the_cycle_in_flight_at_session_expiry(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    """kill -9 at 1.9 s into a cycle: the victim polled that cycle, not the next ones.

    Its session expires about 3 s later, in the middle of a cycle that the
    survivors started with the victim still in the ring (so that, without a
    catch-up, its share of that cycle would be a gap).
    """
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    agents = start_initial(fleet)
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[2]
    failures = kill9_in_cycle_and_check(fleet, first, victim)
    fleet.finish(failures, crashed=(victim.name,))


# --- cut off: the victim fences itself, survivors take over, it rejoins ---------------


def check_fenced_and_rejoined(fleet: Fleet[Poll], failures: list[str], first: float,
                              victim: ServiceProcess, victim_member: str, t_fault: float,
                              t_end_fault: float) -> None:
    """Checks shared by SIGSTOP and the connection cut (victim polled before ``t_fault``)."""
    t_expire = fleet.watch.gone_at(victim_member)
    require(failures, t_expire is not None,
            f"ZooKeeper never removed {victim_member}: its session did not expire")
    if t_expire is None:
        return
    fleet.note(f"{victim_member} gone from ZooKeeper (session expired)", t_expire)
    polls = fleet.records()
    audits = fleet.audit(first)
    rule(failures, "0 duplicates in every cycle (the cut-off agent fenced itself)", audits,
         lambda a: bool(a.duplicates), t_fault)
    rule(failures, "0 gaps in the cycles that ended before the fault",
         [a for a in audits if a.cycle_at + INTERVAL <= t_fault], lambda a: bool(a.gaps),
         t_fault)
    rule(failures, f"0 gaps in every cycle after the survivors' takeover ({clock(t_expire)})",
         [a for a in audits if a.cycle_at > t_expire], lambda a: bool(a.gaps), t_fault)
    stale = [p for p in polls if p.member == victim_member and p.at >= t_expire]
    if stale:
        failures.append(
            f"RULE BROKEN: no poll under a member id whose session expired (fencing): "
            f"{victim.name} polled {len(stale)} resource(s) as {victim_member} after its "
            f"expiry at {clock(t_expire)}, e.g. " + ", ".join(
                f"{p.resource} of cycle {clock(p.cycle_at)} at {clock(p.at)}" for p in stale[:5]))
    new_ids = [m for m in fleet.member_ids(victim.name) if m != victim_member]
    rejoined = [a for a in audits if a.cycle_at > t_end_fault
                and any(a.by_member[m] for m in new_ids)]
    require(failures, len(rejoined) >= 2,
            f"{victim.name} polled under a new member id in only {len(rejoined)} audited "
            f"cycle(s) after the fault ended (member ids {fleet.member_ids(victim.name)})")


def wait_rejoined(fleet: Fleet, victim: ServiceProcess, old_member: str) -> None:
    fleet.wait(lambda: len(fleet.cycles_with([victim.name],
                                             member=lambda m: m != old_member)) > 2, 30,
               f"{victim.name} polled in 2 complete cycles under a new member id")
    fleet.note(f"{victim.name} polled under {fleet.member_ids(victim.name)[-1]}")
    fleet.wait_cycles_after(time.time(), 1)


def test_sigstop_for_two_session_timeouts_fences_then_rejoins(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    """SIGSTOP 0.4 s into a cycle for 2 x the session timeout, then SIGCONT."""
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    agents = start_initial(fleet)
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[3]
    victim_member = fleet.member_ids(victim.name)[0]
    fleet.at_phase(0.4)
    t_stop = fleet.note(f"SIGSTOP {victim.name} ({victim_member})")
    fleet.freeze(victim)
    time.sleep(2 * SESSION_TIMEOUT)
    fleet.thaw(victim)
    t_cont = fleet.note(f"SIGCONT {victim.name}")
    wait_rejoined(fleet, victim, victim_member)

    failures: list[str] = []
    check_fenced_and_rejoined(fleet, failures, first, victim, victim_member, t_stop, t_cont)
    fleet.finish(failures)


@pytest.mark.parametrize(("phase", "session_timeout"), [(0.4, SESSION_TIMEOUT), (1.5, 2.0)])
def test_zookeeper_connection_blackholed_fences_then_rejoins(
        zookeeper_server, zk_chroot, tcp_proxy, make_fleet, phase: float,
        session_timeout: float) -> None:
    """One agent reaches ZooKeeper through a proxy blackholed for 2 x the session timeout.

    At phase 0.4 (timeout 3 s) the victim's lease still holds at the next
    cycle start while its session expires in the middle of that next cycle.
    At phase 1.5 (timeout 2 s) the cut comes 0.5 s before a cycle start: its
    view is still fresh then, and its session expires inside that very
    cycle, so only the write-ahead confirmation of the cycle keeps the
    victim and the survivors' catch-up from both polling it.  The agent
    keeps running throughout.
    """
    fleet = make_fleet(zookeeper_server.address, zk_chroot, session_timeout)
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    agents = [fleet.start(f"agent{i}") for i in range(INITIAL - 1)]
    victim = fleet.start(f"agent{INITIAL - 1}", hosts=proxy.address)
    agents.append(victim)
    first = fleet.wait_steady([a.name for a in agents])
    victim_member = fleet.member_ids(victim.name)[0]
    fleet.at_phase(phase)
    t_cut = fleet.note(f"blackhole {victim.name}'s ZooKeeper connection ({victim_member})")
    proxy.cut("blackhole")
    time.sleep(2 * session_timeout)
    proxy.restore()
    t_restore = fleet.note(f"restore {victim.name}'s ZooKeeper connection")
    wait_rejoined(fleet, victim, victim_member)

    failures: list[str] = []
    require(failures, victim.proc.poll() is None, f"{victim.name} died during the cut")
    check_fenced_and_rejoined(fleet, failures, first, victim, victim_member, t_cut, t_restore)
    fleet.finish(failures)


# --- ZooKeeper itself fails ---------------------------------------------------------------


@pytest.mark.parametrize("phase", [0.2, 1.0])
def test_ensemble_leader_killed_without_gap_or_duplicate(zookeeper_ensemble,
                                                         make_fleet, phase: float) -> None:
    """kill -9 of the ZooKeeper leader 0.2 s or 1.0 s into a cycle.

    Every client loses its server during the election (the followers drop
    their clients too) and reconnects with its session intact.  At 1.0 s
    some agents are still reconnecting at the next cycle start: fenced,
    they skip it, and must poll their own share of it once they hear from
    ZooKeeper again in the same session (nobody else takes it over).
    """
    fleet = make_fleet(zookeeper_ensemble.hosts, f"/test-{uuid.uuid4().hex}")
    agents = start_initial(fleet)
    first = fleet.wait_steady([a.name for a in agents])
    leader = zookeeper_ensemble.leader()
    fleet.at_phase(phase)
    t_kill = fleet.note(f"kill -9 ZooKeeper leader (server {leader})")
    zookeeper_ensemble.kill(leader)
    new_leader = zookeeper_ensemble.leader(timeout=30)
    fleet.note(f"server {new_leader} leads")
    fleet.wait_cycles_after(t_kill, 4)
    audits = fleet.audit(first)

    failures: list[str] = []
    exactly_once(failures, audits, t_kill)
    require(failures, len([a for a in audits if a.cycle_at > t_kill]) >= 4,
            "fewer than 4 audited cycles after the leader was killed")
    fleet.finish(failures)
