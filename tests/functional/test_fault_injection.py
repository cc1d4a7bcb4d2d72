"""Fault injection: real ``zkpoll-polling`` agents on real ZooKeeper, faults from outside.

Every test starts 5 agents (separate OS processes running the real entry
point) on one static source of 1,000 resources polled every 2 s by the
``synthetic.constant`` pollster, with a 3 s ZooKeeper session timeout
(``?timeout=3`` in the backend URL), 0.2 s heartbeats and a 1 s settle time.
Each agent's file publisher records every poll as (resource, cycle start,
member, poll time); :func:`~tests.functional.agents.audit_cycles` gives, for
every cycle, the resources polled 0 times (gaps) and 2+ times (duplicates).

The audited cycles run from the first cycle in which all initial agents
polled to the end of the test, without the newest (it may be partially
written); a cycle in which nobody polled at all counts as all gaps.  Faults
are timed against the cycle phase so that each test exercises its worst
case deterministically (see each test), and a separate ZooKeeper client
(:class:`~tests.functional.agents.MemberWatch`) records when a member's
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

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.functional.agents import (
    AgentProcess,
    CycleAudit,
    MemberWatch,
    Poll,
    PollCollector,
    audit_cycles,
    clock,
    describe_cycles,
    first_cycle_polled_by_all,
    logs_tail,
    member_ids_of,
    wait_until,
    write_static_source,
)

pytestmark = pytest.mark.functional

INTERVAL = 2            # seconds between cycles
RESOURCES = 1000
INITIAL = 5             # agents started by every test
SESSION_TIMEOUT = 3.0   # seconds; ZooKeeper ticks every 200 ms in the fixtures
STEADY_CYCLES = 2       # complete cycles with every initial agent before a fault


class Fleet:
    """The agents of one test, their polls, a member watch and a fault timeline."""

    def __init__(self, workdir: Path, hosts: str, root: str,
                 session_timeout: float = SESSION_TIMEOUT) -> None:
        self.workdir = workdir
        self.root = root
        self.session_timeout = session_timeout
        self.url = self.url_for(hosts)
        self.polling = workdir / "polling.yaml"
        self.ids = write_static_source(self.polling, RESOURCES, interval=INTERVAL)
        self.agents: list[AgentProcess] = []
        self.collector = PollCollector()
        self.t0 = time.time()
        self.timeline: list[tuple[float, str]] = []
        self.frozen: set[str] = set()   # agents under SIGSTOP
        self.ended: set[str] = set()    # agents the test stopped or killed on purpose
        self.watch = MemberWatch(hosts, root)

    def url_for(self, hosts: str) -> str:
        return f"zookeeper://{hosts}{self.root}?timeout={self.session_timeout:g}"

    # --- agents --------------------------------------------------------------
    def start(self, name: str, hosts: str | None = None) -> AgentProcess:
        agent = AgentProcess(self.workdir, name, self.url_for(hosts) if hosts else self.url,
                             self.polling, extra=f"[coordination]\nmember_name = {name}\n")
        self.agents.append(agent)
        self.collector.add(agent)
        self.note(f"started {name} (pid {agent.proc.pid})")
        return agent

    def start_initial(self) -> list[AgentProcess]:
        return [self.start(f"agent{i}") for i in range(INITIAL)]

    def terminate(self, agent: AgentProcess) -> int:
        """SIGTERM one agent and wait for its exit (bounded); its exit code."""
        self.ended.add(agent.name)
        self.note(f"SIGTERM {agent.name}")
        rc = agent.terminate(timeout=20)
        self.note(f"{agent.name} exited {rc}")
        return rc

    def kill(self, agent: AgentProcess, what: str = "") -> float:
        """SIGKILL one agent; the time of the kill."""
        self.ended.add(agent.name)
        at = self.note(f"SIGKILL {agent.name} {what}".strip())
        agent.kill()
        return at

    def freeze(self, agent: AgentProcess) -> None:
        self.frozen.add(agent.name)
        os.kill(agent.proc.pid, signal.SIGSTOP)

    def thaw(self, agent: AgentProcess) -> None:
        os.kill(agent.proc.pid, signal.SIGCONT)
        self.frozen.discard(agent.name)

    def stop_all(self) -> None:
        """SIGTERM every running agent at once, then wait for each (bounded)."""
        self.ended.update(a.name for a in self.agents)
        for agent in self.agents:
            if agent.name in self.frozen:
                self.thaw(agent)
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.proc.wait(20)
            except subprocess.TimeoutExpired:  # reported as a bad exit code by finish()
                agent.kill()

    def cleanup(self) -> None:
        try:
            self.stop_all()
        finally:
            for agent in self.agents:
                agent.kill()
            self.watch.close()

    # --- time ----------------------------------------------------------------
    def note(self, what: str, at: float | None = None) -> float:
        at = time.time() if at is None else at
        self.timeline.append((at, what))
        return at

    def at_phase(self, phase: float) -> float:
        """Sleep until ``phase`` seconds into a cycle (cycles as the samples show them)."""
        polls = self.polls()
        assert polls, "no poll yet: cannot tell the cycle phase\n" + self.diagnostics()
        offset = polls[-1].cycle_at % INTERVAL
        now = time.time()
        target = offset + (now - offset) // INTERVAL * INTERVAL + phase
        while target < now + 0.05:
            target += INTERVAL
        time.sleep(target - now)
        return target

    # --- polls ---------------------------------------------------------------
    def polls(self) -> list[Poll]:
        return self.collector.refresh()

    def cycles_with(self, names: list[str], after: float | None = None,
                    member: Callable[[str], bool] | None = None) -> list[float]:
        """Starts of the cycles in which every agent of ``names`` polled (sorted)."""
        seen: dict[float, set[str]] = {}
        for poll in self.polls():
            if (after is None or poll.cycle_at > after) and (member is None or member(poll.member)):
                seen.setdefault(poll.cycle_at, set()).add(poll.agent)
        return sorted(c for c, who in seen.items() if set(names) <= who)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` (bounded); fail at once if an agent exits by itself."""
        def check() -> object:
            died = [f"{a.name} (exit {a.proc.returncode})" for a in self.agents
                    if a.name not in self.ended and a.proc.poll() is not None]
            assert not died, (f"agent(s) exited on their own while waiting until {what}: "
                              f"{', '.join(died)}\n{self.diagnostics()}")
            return predicate()
        assert wait_until(check, timeout, interval=0.25), \
            f"timed out after {timeout:g}s waiting until {what}\n{self.diagnostics()}"

    def wait_steady(self, names: list[str], timeout: float = 40.0) -> float:
        """Wait for STEADY_CYCLES complete cycles polled by all ``names``; their first cycle."""
        self.wait(lambda: len(self.cycles_with(names)) > STEADY_CYCLES, timeout,
                  f"{', '.join(names)} all polled in {STEADY_CYCLES} complete cycles")
        first = first_cycle_polled_by_all(self.polls(), names)
        assert first is not None
        self.note(f"first cycle polled by all of {', '.join(names)}", first)
        return first

    def wait_cycles_after(self, t: float, count: int, timeout: float | None = None) -> None:
        """Wait until ``count`` complete cycles starting after ``t`` were polled."""
        def done() -> bool:
            starts = {p.cycle_at for p in self.polls() if p.cycle_at > t}
            return len(starts) > count  # the newest may be incomplete
        self.wait(done, timeout or count * INTERVAL + 15.0,
                  f"{count} complete cycles starting after {clock(t)} were polled")

    def audit(self, since: float) -> list[CycleAudit]:
        return audit_cycles(self.polls(), self.ids, since=since, interval=INTERVAL)

    # --- verdict -------------------------------------------------------------
    def diagnostics(self) -> str:
        polls = self.collector.refresh()
        lines = [f"timeline (t0 = {clock(self.t0)}):"]
        lines += [f"  t{at - self.t0:+8.3f}s {clock(at)}  {what}"
                  for at, what in sorted(self.timeline)]
        lines.append("member ids per agent (in order of use): " + "; ".join(
            f"{a.name}: {member_ids_of(polls, a.name)}" for a in self.agents))
        lines.append("member znodes seen by the test's ZooKeeper client:")
        lines += ["  " + line for line in self.watch.describe(self.t0).splitlines()[-15:]]
        lines.append(logs_tail(self.agents, 25))
        return "\n".join(lines)

    def finish(self, failures: list[str], crashed: tuple[str, ...] = ()) -> None:
        """Stop every agent (SIGTERM), check exits and logs, assert no failure."""
        self.note("SIGTERM to every agent")
        self.stop_all()
        self.note("every agent exited")
        for agent in self.agents:
            if agent.name not in crashed and agent.proc.returncode != 0:
                failures.append(f"{agent.name} exited {agent.proc.returncode} after SIGTERM "
                                "(expected 0)")
            if "Traceback" in agent.log():
                failures.append(f"{agent.name}'s log contains a Traceback")
        if os.environ.get("ZKPOLL_TEST_VERBOSE"):  # with -s: the whole story, pass or fail
            audits = audit_cycles(self.polls(), self.ids, interval=INTERVAL)
            print(f"\n{describe_cycles(audits, self.t0, limit=100)}\n{self.diagnostics()}")
        assert not failures, "\n\n".join(failures) + "\n\n" + self.diagnostics()


def rule(failures: list[str], title: str, audits: list[CycleAudit],
         bad: Callable[[CycleAudit], bool], origin: float) -> None:
    """Record a failure naming every audited cycle for which ``bad`` holds."""
    offending = [a for a in audits if bad(a)]
    if offending:
        failures.append(f"RULE BROKEN: {title}: {len(offending)} of {len(audits)} audited "
                        f"cycle(s) (t relative to {clock(origin)}):\n"
                        + describe_cycles(offending, origin))


def require(failures: list[str], condition: bool, message: str) -> None:
    """Record a failure when the scenario did not happen as it must for the test to mean anything."""
    if not condition:
        failures.append(f"SCENARIO: {message}")


@pytest.fixture
def make_fleet(tmp_path: Path) -> Iterator[Callable[[str, str], Fleet]]:
    """Factory: ``make_fleet(hosts, root)``; every agent is stopped (or killed) after the test."""
    fleets: list[Fleet] = []

    def make(hosts: str, root: str, session_timeout: float = SESSION_TIMEOUT) -> Fleet:
        fleet = Fleet(tmp_path, hosts, root, session_timeout)
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.cleanup()


def exact_every_cycle(failures: list[str], audits: list[CycleAudit], origin: float) -> None:
    rule(failures, "every cycle polls every resource (0 gaps)", audits,
         lambda a: bool(a.gaps), origin)
    rule(failures, "no resource is polled twice in a cycle (0 duplicates)", audits,
         lambda a: bool(a.duplicates), origin)


# --- graceful changes: exact in every cycle -------------------------------------------


def test_sixth_agent_joins_without_gap_or_duplicate(zookeeper_server, zk_chroot,
                                                    make_fleet) -> None:
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    names = [a.name for a in fleet.start_initial()]
    first = fleet.wait_steady(names)
    t_join = time.time()
    joiner = fleet.start("agent5")
    fleet.wait(lambda: len(fleet.cycles_with([joiner.name])) > 2, 25,
               f"{joiner.name} polled in 2 complete cycles")
    audits = fleet.audit(first)

    failures: list[str] = []
    exact_every_cycle(failures, audits, t_join)
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
    agents = fleet.start_initial()
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[1]
    t_term = time.time()
    fleet.terminate(victim)
    t_exit = time.time()
    fleet.wait_cycles_after(t_exit, 3)
    audits = fleet.audit(first)

    failures: list[str] = []
    exact_every_cycle(failures, audits, t_term)
    after = [a for a in audits if a.cycle_at > t_exit]
    require(failures, len(after) >= 3, f"only {len(after)} audited cycle(s) after the exit")
    require(failures, not any(a.by_agent[victim.name] for a in after),
            f"{victim.name} polled after it exited?")
    fleet.finish(failures)


def test_rolling_restart_of_all_agents_without_gap_or_duplicate(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    initial = fleet.start_initial()
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
    exact_every_cycle(failures, audits, t_roll)
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
    agents = fleet.start_initial()
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[2]
    victim_member = member_ids_of(fleet.polls(), victim.name)[0]
    fleet.at_phase(1.9)
    t_kill = fleet.kill(victim, f"({victim_member})")
    fleet.wait(lambda: fleet.watch.gone_at(victim_member) is not None, SESSION_TIMEOUT + 10,
               f"ZooKeeper removed {victim_member} (session expiry)")
    t_expire = fleet.note(f"{victim_member} gone from ZooKeeper (session expired)",
                          fleet.watch.gone_at(victim_member))
    fleet.wait_cycles_after(t_expire, 3)
    audits = fleet.audit(first)

    failures: list[str] = []
    in_flight = [a for a in audits if a.cycle_at <= t_expire < a.cycle_at + INTERVAL]
    victim_last = max((a for a in audits if a.by_agent[victim.name]),
                      key=lambda a: a.cycle_at, default=None)
    orphans = victim_last.polled_by(victim.name) if victim_last else set()
    require(failures, len(in_flight) == 1,
            f"no audited cycle was in flight at the session expiry {clock(t_expire)}")
    require(failures, bool(orphans), f"{victim.name} polled nothing before the kill")
    require(failures, len([a for a in audits if a.cycle_at > t_expire]) >= 3,
            "fewer than 3 audited cycles after the session expiry")
    rule(failures, f"0 gaps in every cycle starting after kill + session timeout "
         f"({clock(t_kill + SESSION_TIMEOUT)})",
         [a for a in audits if a.cycle_at > t_kill + SESSION_TIMEOUT],
         lambda a: bool(a.gaps), t_kill)
    rule(failures, "0 gaps in the cycles that ended before the kill",
         [a for a in audits if a.cycle_at + INTERVAL <= t_kill], lambda a: bool(a.gaps), t_kill)
    rule(failures, f"the victim's {len(orphans)} orphans are polled by a survivor in the cycle "
         f"in flight at its session expiry ({clock(t_expire)}), with that cycle's start",
         in_flight, lambda a: bool(orphans - set(a.polls)), t_kill)
    rule(failures, "0 gaps in the cycle in flight at the session expiry",
         in_flight, lambda a: bool(a.gaps), t_kill)
    rule(failures, "duplicates only among resources the victim had polled in that cycle, "
         "at most twice", audits,
         lambda a: any(len(ps) > 2 or not any(p.agent == victim.name for p in ps)
                       for ps in a.duplicates.values()), t_kill)
    fleet.finish(failures, crashed=(victim.name,))


# --- cut off: the victim fences itself, survivors take over, it rejoins ---------------


def check_fenced_and_rejoined(fleet: Fleet, failures: list[str], first: float,
                              victim: AgentProcess, victim_member: str, t_fault: float,
                              t_end_fault: float) -> None:
    """Checks shared by SIGSTOP and the connection cut (victim polled before ``t_fault``)."""
    t_expire = fleet.watch.gone_at(victim_member)
    require(failures, t_expire is not None,
            f"ZooKeeper never removed {victim_member}: its session did not expire")
    if t_expire is None:
        return
    fleet.note(f"{victim_member} gone from ZooKeeper (session expired)", t_expire)
    polls = fleet.polls()
    audits = audit_cycles(polls, fleet.ids, since=first, interval=INTERVAL)
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
    new_ids = [m for m in member_ids_of(polls, victim.name) if m != victim_member]
    rejoined = [a for a in audits if a.cycle_at > t_end_fault
                and any(a.by_member[m] for m in new_ids)]
    require(failures, len(rejoined) >= 2,
            f"{victim.name} polled under a new member id in only {len(rejoined)} audited "
            f"cycle(s) after the fault ended (member ids {member_ids_of(polls, victim.name)})")


def wait_rejoined(fleet: Fleet, victim: AgentProcess, old_member: str) -> None:
    fleet.wait(lambda: len(fleet.cycles_with([victim.name],
                                             member=lambda m: m != old_member)) > 2, 30,
               f"{victim.name} polled in 2 complete cycles under a new member id")
    fleet.note(f"{victim.name} polled under {member_ids_of(fleet.polls(), victim.name)[-1]}")
    fleet.wait_cycles_after(time.time(), 1)


def test_sigstop_for_two_session_timeouts_fences_then_rejoins(
        zookeeper_server, zk_chroot, make_fleet) -> None:
    """SIGSTOP 0.4 s into a cycle for 2 x the session timeout, then SIGCONT."""
    fleet = make_fleet(zookeeper_server.address, zk_chroot)
    agents = fleet.start_initial()
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[3]
    victim_member = member_ids_of(fleet.polls(), victim.name)[0]
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
    victim_member = member_ids_of(fleet.polls(), victim.name)[0]
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
    agents = fleet.start_initial()
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
    exact_every_cycle(failures, audits, t_kill)
    require(failures, len([a for a in audits if a.cycle_at > t_kill]) >= 4,
            "fewer than 4 audited cycles after the leader was killed")
    fleet.finish(failures)
