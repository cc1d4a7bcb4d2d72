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

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.alarm_fleet import (
    INTERVAL,
    Evaluation,
    alarm_service,
    delivery_counts,
    transitions,
    write_flip_alarms,
)
from tests.functional.audit import always_right, clock, exactly_once, require, rule
from tests.functional.fleet import Fleet
from zkpoll.testing.webhook import WebhookReceiver

pytestmark = [pytest.mark.functional, pytest.mark.slow]

ALARMS = 200
INITIAL = 3
SESSION_TIMEOUT = 3.0
STEADY_CYCLES = 2

AlarmFleet = Fleet[Evaluation]


def wait_delivered(fleet: AlarmFleet, receiver: WebhookReceiver) -> dict[str, Evaluation]:
    """Every transition recorded so far delivered at least once; the transitions."""
    def delivered() -> bool:
        wanted = set(transitions(fleet.records()))
        return wanted <= set(delivery_counts(receiver.keys()))
    fleet.wait(delivered, 60.0, "every recorded transition was delivered to the webhook")
    return transitions(fleet.records())


def notified(failures: list[str], fleet: AlarmFleet, receiver: WebhookReceiver,
             max_deliveries: int) -> None:
    """Every transition delivered with its key, at most ``max_deliveries`` times; no
    delivery without a recorded transition; every repeated delivery is the same body."""
    recorded = wait_delivered(fleet, receiver)
    counts = delivery_counts(receiver.keys())
    unknown = sorted(set(counts) - set(recorded))
    extra = {k: n for k, n in counts.items() if n > max_deliveries}
    require(failures, len(recorded) >= ALARMS, f"only {len(recorded)} transitions recorded")
    if unknown:
        failures.append(f"RULE BROKEN: deliveries without a recorded transition: {unknown[:10]}")
    if extra:
        failures.append(f"RULE BROKEN: at most {max_deliveries} delivery(ies) per idempotency "
                        f"key: {len(extra)} keys more often, e.g. {sorted(extra.items())[:10]}")
    bodies: dict[str, object] = {}
    for delivery in receiver.deliveries():
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
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def fleet(tmp_path: Path, zookeeper_server, zk_chroot, managed_prometheus,
          receiver: WebhookReceiver) -> Iterator[AlarmFleet]:
    prometheus = managed_prometheus()
    definitions = tmp_path / "alarms"
    ids = write_flip_alarms(definitions, ALARMS, receiver.url_for("/alarm"))
    service = alarm_service(ids, definitions, f"http://{prometheus.address}")
    fleet = Fleet(service, tmp_path, zookeeper_server.address, zk_chroot, SESSION_TIMEOUT,
                  STEADY_CYCLES)
    try:
        yield fleet
    finally:
        fleet.cleanup()


# --- graceful changes: exactly once --------------------------------------------------


def test_fourth_evaluator_joins_exactly_once(
        fleet: AlarmFleet, receiver: WebhookReceiver) -> None:
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    newcomer = fleet.start(f"eval{INITIAL}")
    fleet.wait(lambda: len(fleet.cycles_with([newcomer.name])) >= 2, 40,
               f"{newcomer.name} evaluated in 2 cycles")
    fleet.wait_cycles_after(time.time(), 2)
    failures: list[str] = []
    exactly_once(failures, fleet.audit(first), fleet.t0, min_cycles=4)
    notified(failures, fleet, receiver, max_deliveries=1)
    fleet.finish(failures)


def test_sigterm_of_one_evaluator_hands_over_exactly_once(
        fleet: AlarmFleet, receiver: WebhookReceiver) -> None:
    agents = [fleet.start(f"eval{i}") for i in range(INITIAL)]
    first = fleet.wait_steady([a.name for a in agents])
    failures: list[str] = []
    require(failures, fleet.terminate(agents[1]) == 0, f"{agents[1].name} exit status")
    t_gone = fleet.note(f"{agents[1].name} gone")
    fleet.wait_cycles_after(t_gone, 3)
    audits = fleet.audit(first)
    require(failures, any(a.cycle_at > t_gone and not a.done_by(agents[1].name)
                          for a in audits), "no audited cycle after the handover")
    exactly_once(failures, audits, fleet.t0, min_cycles=4)
    notified(failures, fleet, receiver, max_deliveries=1)
    fleet.finish(failures)


def test_rolling_restart_of_all_evaluators_exactly_once(
        fleet: AlarmFleet, receiver: WebhookReceiver) -> None:
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
    exactly_once(failures, fleet.audit(first), fleet.t0, min_cycles=4)
    notified(failures, fleet, receiver, max_deliveries=1)
    fleet.finish(failures)


# --- crash: catch-up in the cycle in flight ---------------------------------------------


def test_kill9_orphans_are_evaluated_in_the_cycle_in_flight_at_session_expiry(
        fleet: AlarmFleet, receiver: WebhookReceiver) -> None:
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
    last = max((a for a in audits if a.done_by(victim.name)), key=lambda a: a.cycle_at,
               default=None)
    orphans = last.done_by(victim.name) if last else set()
    require(failures, len(in_flight) == 1, f"no audited cycle in flight at {clock(t_expire)}")
    require(failures, bool(orphans), f"{victim.name} evaluated nothing before the kill")
    always_right(failures, audits, t_kill)
    rule(failures, "0 gaps in the cycles that ended before the kill",
         [a for a in audits if a.cycle_at + INTERVAL <= t_kill], lambda a: bool(a.gaps), t_kill)
    rule(failures, "the victim's orphans are evaluated (catch-up) in the cycle in flight at "
         "its session expiry", in_flight, lambda a: bool(orphans - set(a.records)), t_kill)
    rule(failures, "0 gaps from the cycle in flight at the expiry on",
         [a for a in audits if a.cycle_at + INTERVAL > t_expire], lambda a: bool(a.gaps),
         t_kill)
    catch_up = [e for e in fleet.records() if e.kind == "catch_up" and e.at >= t_kill]
    if catch_up:
        fleet.note(f"catch-up of {len(catch_up)} alarm(s) done "
                   f"{max(e.at for e in catch_up) - t_expire:.2f}s after the expiry, "
                   f"{max(e.at for e in catch_up) - t_kill:.2f}s after the kill",
                   max(e.at for e in catch_up))
    notified(failures, fleet, receiver, max_deliveries=2)
    fleet.finish(failures, crashed=(victim.name,))


# --- cut off: fenced, never writes under an expired session, rejoins ----------------------


def test_zookeeper_connection_blackholed_fences_then_rejoins(
        fleet: AlarmFleet, receiver: WebhookReceiver, zookeeper_server,
        tcp_proxy) -> None:
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
         audits, lambda a: bool(a.duplicates), t_cut)
    if t_expire is not None:
        stale = [e for e in fleet.records()
                 if e.member == member and e.result == "written" and e.at >= t_expire]
        if stale:
            failures.append(f"RULE BROKEN: {len(stale)} state(s) written under {member} after "
                            f"its session expired at {clock(t_expire)}")
        rule(failures, "0 gaps in every cycle after the survivors' takeover",
             [a for a in audits if a.cycle_at > t_expire], lambda a: bool(a.gaps), t_cut)
    rule(failures, "0 gaps in the cycles that ended before the cut",
         [a for a in audits if a.cycle_at + INTERVAL <= t_cut], lambda a: bool(a.gaps), t_cut)
    fleet.note(f"restored at t{t_restore - fleet.t0:+.2f}s")
    notified(failures, fleet, receiver, max_deliveries=1)
    fleet.finish(failures)
