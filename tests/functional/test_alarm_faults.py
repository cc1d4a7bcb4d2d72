"""Fault suite of the alarm evaluator: real ``zkpoll-alarm`` processes, a real
ZooKeeper, a real Prometheus and a webhook receiver that records every delivery.

Three evaluators share ALARMS flipping alarms (``alarm_fleet``), evaluated
every 2 s; each test changes the group and then audits, per alarm and
cycle, who evaluated it (the evaluation logs) and what the receiver got:

- a fourth evaluator joins / one gets SIGTERM / all three restart one
  after the other: every alarm evaluated exactly once in every cycle (no
  gap, no second attempt), every state as the schedule says, and every
  transition notified exactly once (no duplicate delivery at all);
- kill -9: the victim's alarms are evaluated by the survivors in the cycle
  in flight when its session expires (catch-up); no state is ever written
  twice for one cycle; every transition notified, at most twice, with the
  same key;
- the victim's ZooKeeper connection blackholed for 2 x the session
  timeout: it fences itself (no write under its expired session), the
  survivors take over, it rejoins; no duplicate delivery at all.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.functional.agents import clock
from tests.functional.alarm_fleet import (
    INTERVAL,
    AlarmCycleAudit,
    Evaluation,
    EvaluationCollector,
    EvaluatorProcess,
    MemberWatch,
    audit_alarm_cycles,
    cycle_starts_after,
    delivery_counts,
    transitions,
    wait_for,
    write_flip_alarms,
)
from zkpoll.testing.webhook import WebhookReceiver

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALARMS = 200
INITIAL = 3
SESSION_TIMEOUT = 3.0
STEADY_CYCLES = 2


class AlarmFleet:
    """The evaluators of one test, their evaluations, deliveries and a fault timeline."""

    def __init__(self, workdir: Path, hosts: str, root: str, prometheus_url: str,
                 receiver: WebhookReceiver) -> None:
        self.workdir = workdir
        self.root = root
        self.prometheus_url = prometheus_url
        self.receiver = receiver
        self.url = self.url_for(hosts)
        self.definitions = workdir / "alarms"
        self.ids = write_flip_alarms(self.definitions, ALARMS, receiver.url_for("/alarm"))
        self.agents: list[EvaluatorProcess] = []
        self.collector = EvaluationCollector()
        self.t0 = time.time()
        self.timeline: list[tuple[float, str]] = []
        self.ended: set[str] = set()
        self.watch = MemberWatch(hosts, root, group="alarm")

    def url_for(self, hosts: str) -> str:
        return f"zookeeper://{hosts}{self.root}?timeout={SESSION_TIMEOUT:g}"

    # --- evaluators ----------------------------------------------------------
    def start(self, name: str, hosts: str | None = None) -> EvaluatorProcess:
        agent = EvaluatorProcess(self.workdir, name, self.url_for(hosts) if hosts else self.url,
                                 self.prometheus_url, self.definitions)
        self.agents.append(agent)
        self.collector.add(agent)
        self.note(f"started {name} (pid {agent.proc.pid})")
        return agent

    def terminate(self, agent: EvaluatorProcess) -> int:
        self.ended.add(agent.name)
        self.note(f"SIGTERM {agent.name}")
        rc = agent.terminate(timeout=30)
        self.note(f"{agent.name} exited {rc}")
        return rc

    def kill(self, agent: EvaluatorProcess) -> float:
        self.ended.add(agent.name)
        at = self.note(f"SIGKILL {agent.name}")
        agent.kill()
        return at

    def stop_all(self) -> None:
        self.ended.update(a.name for a in self.agents)
        for agent in self.agents:
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.proc.wait(30)
            except Exception:  # noqa: BLE001 - reported by finish() as a bad exit code
                agent.kill()

    def cleanup(self) -> None:
        try:
            self.stop_all()
        finally:
            for agent in self.agents:
                agent.kill()
            self.watch.close()

    # --- time and evaluations --------------------------------------------------
    def note(self, what: str, at: float | None = None) -> float:
        at = time.time() if at is None else at
        self.timeline.append((at, what))
        return at

    def evaluations(self) -> list[Evaluation]:
        return self.collector.refresh()

    def cycles_with(self, names: list[str], after: float | None = None,
                    member: Callable[[str], bool] | None = None) -> list[float]:
        """Starts of the cycles in which every agent of ``names`` wrote evaluations."""
        seen: dict[float, set[str]] = {}
        for e in self.evaluations():
            if e.result == "written" and (after is None or e.cycle_at > after) \
                    and (member is None or member(e.member)):
                seen.setdefault(e.cycle_at, set()).add(e.agent)
        return sorted(c for c, who in seen.items() if set(names) <= who)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        def check() -> object:
            died = [f"{a.name} (exit {a.proc.returncode})" for a in self.agents
                    if a.name not in self.ended and a.proc.poll() is not None]
            assert not died, (f"evaluator(s) exited on their own while waiting until {what}: "
                              f"{', '.join(died)}\n{self.diagnostics()}")
            return predicate()
        wait_for(check, timeout, what, self.diagnostics)

    def wait_steady(self, names: list[str], timeout: float = 60.0) -> float:
        """STEADY_CYCLES complete cycles written by all ``names``; the first of them."""
        self.wait(lambda: len(self.cycles_with(names)) > STEADY_CYCLES, timeout,
                  f"{', '.join(names)} all evaluated in {STEADY_CYCLES} complete cycles")
        first = self.cycles_with(names)[0]
        self.note(f"first cycle evaluated by all of {', '.join(names)}", first)
        return first

    def wait_cycles_after(self, t: float, count: int) -> None:
        def done() -> bool:
            return len({e.cycle_at for e in self.evaluations() if e.cycle_at > t}) > count
        self.wait(done, count * INTERVAL + 30.0,
                  f"{count} complete cycles starting after {clock(t)} were evaluated")

    def at_phase(self, phase: float) -> float:
        """Sleep until ``phase`` seconds into an alarm cycle."""
        now = time.time()
        target = cycle_starts_after(now) - INTERVAL + phase
        while target < now + 0.05:
            target += INTERVAL
        time.sleep(target - now)
        return target

    def audit(self, since: float) -> list[AlarmCycleAudit]:
        return audit_alarm_cycles(self.evaluations(), self.ids, since)

    def member_ids(self, agent: str) -> list[str]:
        seen: dict[str, float] = {}
        for e in self.evaluations():
            if e.agent == agent and e.member not in seen:
                seen[e.member] = e.at
        return sorted(seen, key=seen.__getitem__)

    # --- notifications ---------------------------------------------------------
    def wait_delivered(self) -> dict[str, Evaluation]:
        """Every transition recorded so far delivered at least once; the transitions."""
        def delivered() -> bool:
            wanted = set(transitions(self.evaluations()))
            return wanted <= set(delivery_counts(self.receiver.keys()))
        self.wait(delivered, 60.0, "every recorded transition was delivered to the webhook")
        return transitions(self.evaluations())

    # --- verdict ---------------------------------------------------------------
    def diagnostics(self) -> str:
        lines = [f"timeline (t0 = {clock(self.t0)}):"]
        lines += [f"  t{at - self.t0:+8.3f}s {clock(at)}  {what}"
                  for at, what in sorted(self.timeline)]
        lines.append("member ids per evaluator: " + "; ".join(
            f"{a.name}: {self.member_ids(a.name)}" for a in self.agents))
        lines.append("evaluator group members seen by the test's ZooKeeper client:")
        lines += ["  " + line for line in self.watch.describe(self.t0).splitlines()[-12:]]
        for agent in self.agents:
            tail = agent.log().splitlines()[-20:]
            lines.append(f"----- {agent.name} (pid {agent.proc.pid}, exit "
                         f"{agent.proc.returncode}) log tail -----")
            lines += tail
        return "\n".join(lines)

    def finish(self, failures: list[str], crashed: tuple[str, ...] = ()) -> None:
        self.note("SIGTERM to every evaluator")
        self.stop_all()
        for agent in self.agents:
            if agent.name not in crashed and agent.proc.returncode != 0:
                failures.append(f"{agent.name} exited {agent.proc.returncode} after SIGTERM")
            if "Traceback" in agent.log():
                failures.append(f"{agent.name}'s log contains a Traceback")
        if os.environ.get("ZKPOLL_TEST_VERBOSE"):
            print("\n" + "\n".join(a.describe(self.t0) for a in self.audit(0.0)))
            print(self.diagnostics())
        assert not failures, "\n\n".join(failures) + "\n\n" + self.diagnostics()


def rule(failures: list[str], title: str, audits: list[AlarmCycleAudit],
         bad: Callable[[AlarmCycleAudit], bool], origin: float) -> None:
    offending = [a for a in audits if bad(a)]
    if offending:
        failures.append(f"RULE BROKEN: {title}: {len(offending)} of {len(audits)} audited "
                        f"cycle(s):\n" + "\n".join(a.describe(origin) for a in offending[:15]))


def require(failures: list[str], condition: bool, message: str) -> None:
    if not condition:
        failures.append(f"SCENARIO: {message}")


def exactly_once(failures: list[str], audits: list[AlarmCycleAudit], origin: float) -> None:
    require(failures, len(audits) >= 4, f"only {len(audits)} cycles audited")
    rule(failures, "every alarm evaluated in every cycle (0 gaps)", audits,
         lambda a: bool(a.gaps), origin)
    rule(failures, "no alarm evaluated twice in a cycle", audits,
         lambda a: bool(a.twice), origin)
    always_right(failures, audits, origin)


def always_right(failures: list[str], audits: list[AlarmCycleAudit], origin: float) -> None:
    rule(failures, "no alarm state written twice for one cycle", audits,
         lambda a: bool(a.double_writes), origin)
    rule(failures, "every state written is the one the schedule gives", audits,
         lambda a: bool(a.wrong), origin)


def notified(failures: list[str], fleet: AlarmFleet, max_deliveries: int) -> None:
    """Every transition delivered with its key, at most ``max_deliveries`` times; no
    delivery without a recorded transition; every repeated delivery is the same body."""
    recorded = fleet.wait_delivered()
    counts = delivery_counts(fleet.receiver.keys())
    unknown = sorted(set(counts) - set(recorded))
    extra = {k: n for k, n in counts.items() if n > max_deliveries}
    require(failures, len(recorded) >= ALARMS, f"only {len(recorded)} transitions recorded")
    if unknown:
        failures.append(f"RULE BROKEN: deliveries without a recorded transition: {unknown[:10]}")
    if extra:
        failures.append(f"RULE BROKEN: at most {max_deliveries} delivery(ies) per idempotency "
                        f"key: {len(extra)} keys more often, e.g. {sorted(extra.items())[:10]}")
    bodies: dict[str, object] = {}
    for delivery in fleet.receiver.deliveries():
        key = delivery.key
        if key in bodies and bodies[key] != delivery.body:
            failures.append(f"RULE BROKEN: key {key} delivered with two different bodies")
            break
        bodies[key] = delivery.body
    for key, evaluation in list(recorded.items())[:ALARMS]:
        body = bodies.get(key)
        if isinstance(body, dict) and (body.get("alarm_id") != evaluation.alarm
                                       or body.get("current") != evaluation.state):
            failures.append(f"RULE BROKEN: the body of {key} does not match its transition: "
                            f"{body}")
            break


@pytest.fixture
def fleet(tmp_path: Path, zookeeper_server, zk_chroot,
          managed_prometheus) -> Iterator[AlarmFleet]:
    prometheus = managed_prometheus()
    with WebhookReceiver() as receiver:
        fleet = AlarmFleet(tmp_path, zookeeper_server.address, zk_chroot,
                           f"http://{prometheus.address}", receiver)
        try:
            yield fleet
        finally:
            fleet.cleanup()


# --- graceful changes: exactly once --------------------------------------------------


def test_fourth_evaluator_joins_exactly_once(fleet: AlarmFleet) -> None:
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    newcomer = fleet.start(f"eval{INITIAL}")
    fleet.wait(lambda: len(fleet.cycles_with([newcomer.name])) >= 2, 40,
               f"{newcomer.name} evaluated in 2 cycles")
    fleet.wait_cycles_after(time.time(), 2)
    failures: list[str] = []
    exactly_once(failures, fleet.audit(first), fleet.t0)
    notified(failures, fleet, max_deliveries=1)
    fleet.finish(failures)


def test_sigterm_of_one_evaluator_hands_over_exactly_once(fleet: AlarmFleet) -> None:
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    failures: list[str] = []
    require(failures, fleet.terminate(agents[1]) == 0, f"{agents[1].name} exit status")
    t_gone = fleet.note(f"{agents[1].name} gone")
    fleet.wait_cycles_after(t_gone, 3)
    audits = fleet.audit(first)
    require(failures, any(a.cycle_at > t_gone and not a.written_by(agents[1].name)
                          for a in audits), "no audited cycle after the handover")
    exactly_once(failures, audits, fleet.t0)
    notified(failures, fleet, max_deliveries=1)
    fleet.finish(failures)


def test_rolling_restart_of_all_evaluators_exactly_once(fleet: AlarmFleet) -> None:
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    failures: list[str] = []
    for agent in list(agents):
        old = fleet.member_ids(agent.name)
        require(failures, fleet.terminate(agent) == 0, f"{agent.name} exit status")
        fleet.ended.discard(agent.name)
        fleet.agents.remove(agent)
        fresh = fleet.start(agent.name)
        fleet.wait(lambda name=fresh.name, old=old: len(fleet.cycles_with(
            [name], member=lambda m: m not in old)) >= 1, 40,
            f"{fresh.name} evaluates again under a new member id")
    fleet.wait_cycles_after(time.time(), 2)
    exactly_once(failures, fleet.audit(first), fleet.t0)
    notified(failures, fleet, max_deliveries=1)
    fleet.finish(failures)


# --- crash: catch-up in the cycle in flight ---------------------------------------------


def test_kill9_orphans_are_evaluated_in_the_cycle_in_flight_at_session_expiry(
        fleet: AlarmFleet) -> None:
    """kill -9 at 1.9 s into a cycle (the victim evaluated it): its session expires
    mid-cycle some 3 s later, in a cycle the survivors started with the victim still
    in the ring; without the catch-up its share of that cycle would be a gap."""
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    victim = agents[2]
    member = fleet.member_ids(victim.name)[0]
    fleet.at_phase(1.9)
    t_kill = fleet.kill(victim)
    fleet.wait(lambda: fleet.watch.gone_at(member) is not None, SESSION_TIMEOUT + 15,
               f"ZooKeeper removed {member}")
    t_expire = fleet.note(f"{member} gone (session expired)", fleet.watch.gone_at(member))
    fleet.wait_cycles_after(t_expire, 3)
    audits = fleet.audit(first)
    failures: list[str] = []
    in_flight = [a for a in audits if a.cycle_at <= t_expire < a.cycle_at + INTERVAL]
    last = max((a for a in audits if a.written_by(victim.name)), key=lambda a: a.cycle_at,
               default=None)
    orphans = last.written_by(victim.name) if last else set()
    require(failures, len(in_flight) == 1, f"no audited cycle in flight at {clock(t_expire)}")
    require(failures, bool(orphans), f"{victim.name} evaluated nothing before the kill")
    always_right(failures, audits, t_kill)
    rule(failures, "0 gaps in the cycles that ended before the kill",
         [a for a in audits if a.cycle_at + INTERVAL <= t_kill], lambda a: bool(a.gaps), t_kill)
    rule(failures, "the victim's orphans are evaluated (catch-up) in the cycle in flight at "
         "its session expiry", in_flight, lambda a: bool(orphans - set(a.evaluations)), t_kill)
    rule(failures, "0 gaps from the cycle in flight at the expiry on",
         [a for a in audits if a.cycle_at + INTERVAL > t_expire], lambda a: bool(a.gaps),
         t_kill)
    catch_up = [e for e in fleet.evaluations() if e.kind == "catch_up" and e.at >= t_kill]
    if catch_up:
        fleet.note(f"catch-up of {len(catch_up)} alarm(s) done "
                   f"{max(e.at for e in catch_up) - t_expire:.2f}s after the expiry, "
                   f"{max(e.at for e in catch_up) - t_kill:.2f}s after the kill",
                   max(e.at for e in catch_up))
    notified(failures, fleet, max_deliveries=2)
    fleet.finish(failures, crashed=(victim.name,))


# --- cut off: fenced, never writes under an expired session, rejoins ----------------------


def test_zookeeper_connection_blackholed_fences_then_rejoins(
        fleet: AlarmFleet, zookeeper_server, tcp_proxy) -> None:
    proxy = tcp_proxy(zookeeper_server.host, zookeeper_server.port)
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL - 1)]
    victim = fleet.start(f"eval{INITIAL - 1}", hosts=proxy.address)
    first = fleet.wait_steady([a.name for a in [*agents, victim]])
    member = fleet.member_ids(victim.name)[0]
    fleet.at_phase(0.4)
    t_cut = fleet.note(f"blackhole {victim.name}'s ZooKeeper connection ({member})")
    proxy.cut("blackhole")
    time.sleep(2 * SESSION_TIMEOUT)
    proxy.restore()
    t_restore = fleet.note("connection restored")
    fleet.wait(lambda: len(fleet.cycles_with([victim.name],
                                             member=lambda m: m != member)) >= 2, 40,
               f"{victim.name} evaluates again under a new member id")
    fleet.wait_cycles_after(time.time(), 1)
    failures: list[str] = []
    require(failures, victim.proc.poll() is None, f"{victim.name} died during the cut")
    t_expire = fleet.watch.gone_at(member)
    require(failures, t_expire is not None, f"the session of {member} never expired")
    audits = fleet.audit(first)
    always_right(failures, audits, t_cut)
    rule(failures, "no alarm evaluated twice in a cycle (the cut-off evaluator fenced itself)",
         audits, lambda a: bool(a.twice), t_cut)
    if t_expire is not None:
        stale = [e for e in fleet.evaluations()
                 if e.member == member and e.result == "written" and e.at >= t_expire]
        if stale:
            failures.append(f"RULE BROKEN: {len(stale)} state(s) written under {member} after "
                            f"its session expired at {clock(t_expire)}")
        rule(failures, "0 gaps in every cycle after the survivors' takeover",
             [a for a in audits if a.cycle_at > t_expire], lambda a: bool(a.gaps), t_cut)
    rule(failures, "0 gaps in the cycles that ended before the cut",
         [a for a in audits if a.cycle_at + INTERVAL <= t_cut], lambda a: bool(a.gaps), t_cut)
    fleet.note(f"restored at t{t_restore - fleet.t0:+.2f}s")
    notified(failures, fleet, max_deliveries=1)
    fleet.finish(failures)
