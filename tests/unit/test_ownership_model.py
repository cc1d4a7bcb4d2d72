"""Model-based test of the ownership rules: simulated members, no ZooKeeper.

Several members, each an :class:`OwnershipState`, share a simulated backend
(registered members, claims records) whose changes reach each member after
a random delay of at most ``MAX_DELAY``; members' clocks are skewed by at
most ``SKEW``, except members that join with a clock far off (beyond the
clock bound, or inside it but above ``SKEW``) and clocks that step forward
or back while the member runs.  Each member's offset estimate is its true
skew within a small error bar; it is refreshed by every claims write that
reaches the backend (as ZooKeeper's mtime does), so after a step the member
acts on a stale estimate until its next claim.  Hypothesis drives joins,
graceful leaves, crashes (between cycles, and between a claim and its
poll), network cuts (short, and longer than the session timeout), the whole
backend going away, lost claim confirmations, joins before the first clock
measurement, clock steps, and resources that one member, or every member,
cannot reach (per-resource failover, one hop: the owner hands them to its
successor in the same cycle, which gives up with one "unreachable" sample
when it cannot reach them either).  On every simulated cycle:

* no key is ever polled twice (policy ``fence``; an "unreachable" sample
  counts as the key's poll);
* every key is polled, except in the documented windows: a crash between a
  member's claim and its poll, a cut or backend outage, a lost
  confirmation, a member whose clock is beyond the bound or just stepped, a
  handoff whose successor is gone, cut off or too late (each a gap, never a
  duplicate).

CI runs a fixed-seed set of examples; ``tox -e model`` (or
``ZKPOLL_MODEL_EXAMPLES=500``) a longer search.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from zkpoll.ownership.clock_rule import clock_bound
from zkpoll.ownership.events import (
    Action,
    Announce,
    ClaimResult,
    ClaimsRead,
    Contact,
    CycleStarted,
    Event,
    GiveUp,
    HandoffReceived,
    HandoffSent,
    JoinRequested,
    KeysUnreachable,
    LeaveRequested,
    MeasureClock,
    MembershipChanged,
    Poll,
    PollKind,
    ReadClaims,
    SendHandoff,
    SessionLost,
    SessionStarted,
    Tick,
    WriteClaims,
)
from zkpoll.ownership.members import MemberInfo, RingCache
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

INTERVAL = 10.0
SETTLE = 3.0
SESSION = 6.0
MAX_DELAY = 1.0
SKEW = 0.4   # |clock offset| of each member; SETTLE > MAX_DELAY + 2 * SKEW
BOUND = clock_bound(SETTLE, MAX_DELAY)  # 1.0: beyond it a member fences itself
ERROR = 0.05  # largest error bar of an offset estimate
FAR = st.sampled_from([None, 0.8, -0.8, 1.5, -1.5, 4.0, -4.0, 9.0, -9.0])  # skew at join
STEPS = st.sampled_from([-25.0, -8.0, -2.0, -0.6, 0.6, 2.0, 8.0, 25.0])  # clock steps
STEP = 0.25
HOPS = 1      # failover_hops
KEYS = tuple(f"k{i}" for i in range(24))
RINGS = RingCache(4096)  # shared: building a Maglev table costs ~0.1 s
EXAMPLES = int(os.environ.get("ZKPOLL_MODEL_EXAMPLES", "30"))
AFTER = st.sampled_from([0.5, 2.0, 3.5, 5.0, 7.0, 9.0, 12.0, 20.0])


@dataclass
class Sim:
    """One simulated agent process."""

    name: str
    skew: float
    state: OwnershipState
    member_id: str
    session: int = 0
    alive: bool = True
    cut_until: float = -math.inf
    last_contact: float = 0.0
    expires_at: float = math.inf    # the server expires the session then
    inbox: list[tuple[float, int, tuple[MemberInfo, ...]]] = field(default_factory=list)
    last_delivery: float = 0.0
    seen: int = -1  # version of the newest snapshot delivered
    next_cycle: int = 0
    leave_at: float | None = None
    die_mid_cycle: bool = False
    lose_confirmation: bool = False
    lose_handoff_confirmation: bool = False  # its next handoff lands, unconfirmed
    unpublished: dict = field(default_factory=dict)  # announcements queued while cut
    handoffs: list = field(default_factory=list)  # (due, HandoffReceived args) in its inbox
    measured: float | None = None  # the member's offset estimate (None: not yet)
    error: float = 0.0
    stepped_at: float = -math.inf   # when its clock last stepped

    def bad_clock(self, t: float) -> bool:
        """True while this member's clock may make it fence (gaps allowed)."""
        return (abs(self.skew) + ERROR > BOUND or self.measured is None
                or t < self.stepped_at + 3 * INTERVAL)

    def cut(self, t: float) -> bool:
        return t < self.cut_until


class OwnershipModel(RuleBasedStateMachine):
    """The world: members, the backend, the clock, the polls."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 100.0
        self.sims: dict[str, Sim] = {}
        self.truth: dict[str, MemberInfo] = {}        # registered in the backend
        self.claims: dict[str, dict] = {}              # claims records by member id
        self.polls: dict[tuple[int, str], list[tuple[str, str]]] = {}
        self.faulty: set[int] = set()                  # cycles where gaps are allowed
        self.rnd = random.Random(0)
        self.counter = 0
        self.version = 0  # of the backend's member list
        self.first_cycle = 0
        self.blocked: set[tuple[str, str]] = set()  # (member name, key) it cannot reach
        self.handoff_ids = 0

    # --- set-up and rules ---------------------------------------------------------
    @initialize(count=st.integers(2, 4), seed=st.integers(0, 2**32 - 1))
    def start(self, count: int, seed: int) -> None:
        self.rnd = random.Random(seed)
        for _ in range(count):
            self._spawn()
        # from the first cycle every initial member is active in
        self.first_cycle = math.floor((self.t + SETTLE + MAX_DELAY + SKEW) / INTERVAL) + 1

    def _running(self) -> list[Sim]:
        return [s for s in self.sims.values() if s.alive and s.leave_at is None]

    # Every rule lets time pass afterwards, so each fault is followed by the
    # cycles that show what it did.
    @rule(seconds=AFTER)
    def run(self, seconds: float) -> None:
        for _ in range(int(seconds / STEP) + 1):
            self._step()

    @precondition(lambda self: len(self.sims) < 7)
    @rule(seconds=AFTER, skew=FAR, measured=st.booleans())
    def join(self, seconds: float, skew: float | None, measured: bool) -> None:
        self._spawn(skew, measured)
        self.run(seconds)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), step=STEPS, seconds=AFTER)
    def step_clock(self, data: st.DataObject, step: float, seconds: float) -> None:
        sim = data.draw(st.sampled_from(self._running()))
        sim.skew += step
        sim.stepped_at = self.t
        if step < 0:  # a naive loop goes back to the cycle the clock now reads (the
            # state machine must refuse); forward, it feeds the cycles that ended meanwhile
            sim.next_cycle = math.floor((self.t + sim.skew) / INTERVAL) + 1
        self.run(seconds)

    @precondition(lambda self: len(self._running()) > 2)
    @rule(data=st.data(), seconds=AFTER)
    def leave(self, data: st.DataObject, seconds: float) -> None:
        sim = data.draw(st.sampled_from(self._running()))
        self._feed(sim, LeaveRequested(self._contact(sim)))
        sim.leave_at = sim.state.own.leave_at if sim.state.own else self.t
        self.run(seconds)

    @precondition(lambda self: len(self._running()) > 2)
    @rule(data=st.data(), mid_cycle=st.booleans(), seconds=AFTER)
    def crash(self, data: st.DataObject, mid_cycle: bool, seconds: float) -> None:
        sim = data.draw(st.sampled_from(self._running()))
        if mid_cycle:
            sim.die_mid_cycle = True  # dies after its next claim, before polling
        else:
            self._die(sim)
        self.run(seconds)

    @precondition(lambda self: len(self._running()) > 1)
    @rule(data=st.data(), cut=st.sampled_from([0.5, 1.0, 2.5, 4.0, 7.0, 12.0]), seconds=AFTER)
    def cut(self, data: st.DataObject, cut: float, seconds: float) -> None:
        sim = data.draw(st.sampled_from(self._running()))
        self._cut([sim], cut)
        self.run(seconds)

    @precondition(lambda self: self._running())
    @rule(cut=st.sampled_from([1.0, 4.0, 7.0, 12.0]), seconds=AFTER)
    def backend_down(self, cut: float, seconds: float) -> None:
        self._cut(self._running(), cut)
        self.run(seconds)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), seconds=AFTER)
    def lose_a_confirmation(self, data: st.DataObject, seconds: float) -> None:
        data.draw(st.sampled_from(self._running())).lose_confirmation = True
        self.run(seconds)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), share=st.sampled_from([0.25, 0.5, 1.0]), everywhere=st.booleans(),
          seconds=AFTER)
    def block(self, data: st.DataObject, share: float, everywhere: bool, seconds: float) -> None:
        """Some keys become unreachable from one member (or from every member)."""
        keys = self.rnd.sample(KEYS, int(len(KEYS) * share))
        sims = list(self.sims.values()) if everywhere else [
            data.draw(st.sampled_from(self._running()))]
        self.blocked.update((s.name, k) for s in sims for k in keys)
        self.run(seconds)

    @precondition(lambda self: self._running())
    @rule(data=st.data(), seconds=AFTER)
    def lose_a_handoff_confirmation(self, data: st.DataObject, seconds: float) -> None:
        data.draw(st.sampled_from(self._running())).lose_handoff_confirmation = True
        self.run(seconds)

    @precondition(lambda self: self.blocked)
    @rule(seconds=AFTER)
    def unblock(self, seconds: float) -> None:
        self.blocked.clear()
        self.run(seconds)

    # --- the checks ---------------------------------------------------------------------
    @invariant()
    def no_key_polled_twice(self) -> None:
        for (index, key), pollers in self.polls.items():
            assert len(pollers) <= 1, f"cycle {index} key {key} polled by {pollers}"

    @invariant()
    def every_key_polled_outside_fault_windows(self) -> None:
        settled = math.floor((self.t - SESSION - MAX_DELAY - 2 * BOUND - STEP) / INTERVAL) - 1
        for index in range(self.first_cycle, settled + 1):
            if index in self.faulty:
                continue
            missing = [k for k in KEYS if (index, k) not in self.polls]
            assert not missing, f"cycle {index}: {len(missing)} key(s) never polled"

    # --- the simulated world ------------------------------------------------------------
    def _spawn(self, skew: float | None = None, measured: bool = True) -> None:
        name = f"m{self.counter}"
        self.counter += 1
        state = OwnershipState(OwnershipConfig("g", SETTLE, 0.25, failover_hops=HOPS), RINGS)
        sim = Sim(name, self.rnd.uniform(-SKEW, SKEW) if skew is None else skew, state,
                  f"{name}.0", last_contact=self.t)
        if measured:
            self._measure(sim)
        sim.next_cycle = math.floor((self.t + sim.skew) / INTERVAL) + 1
        self.sims[name] = sim
        self._feed(sim, JoinRequested(self._contact(sim)))
        self._register(sim)

    def _register(self, sim: Sim) -> None:
        self._feed(sim, SessionStarted(sim.member_id, self._contact(sim)))

    def _contact(self, sim: Sim) -> Contact:
        return Contact(self.t + sim.skew, self.t - sim.last_contact, SESSION,
                       sim.measured, sim.error, MAX_DELAY)

    def _measure(self, sim: Sim) -> None:
        """A round trip to the backend: the estimate is the true skew +/- its error."""
        sim.error = self.rnd.uniform(0.0, ERROR)
        sim.measured = sim.skew + self.rnd.uniform(-sim.error, sim.error)

    def _die(self, sim: Sim) -> None:
        sim.alive = False
        sim.expires_at = min(sim.expires_at, self.t + SESSION)

    def _cut(self, sims: list[Sim], seconds: float) -> None:
        until = self.t + seconds
        for sim in sims:
            sim.cut_until = max(sim.cut_until, until)
            sim.expires_at = min(sim.expires_at, sim.last_contact + SESSION)
        first = math.floor((self.t - INTERVAL) / INTERVAL)
        self.faulty.update(range(first, math.floor((until + INTERVAL) / INTERVAL) + 2))

    def _broadcast(self) -> None:
        """The member list changed: each member hears of it within MAX_DELAY, in order."""
        self.version += 1
        snapshot = tuple(self.truth.values())
        for sim in self.sims.values():
            if sim.alive:
                sim.last_delivery = max(sim.last_delivery,
                                        self.t + self.rnd.uniform(0.0, MAX_DELAY))
                sim.inbox.append((sim.last_delivery, self.version, snapshot))

    def _step(self) -> None:
        self.t += STEP
        for sim in self.sims.values():   # the server expires sessions
            if self.t >= sim.expires_at and sim.member_id in self.truth:
                del self.truth[sim.member_id]
                self._broadcast()
        for sim in list(self.sims.values()):
            if sim.alive:
                self._step_member(sim)
        index = math.floor(self.t / INTERVAL)
        if not self._eligible(index * INTERVAL):
            self.faulty.add(index)
        if any(s.bad_clock(self.t) for s in self.sims.values()
               if s.alive or s.member_id in self.truth):
            self.faulty.update(range(index - 1, index + 3))

    def _eligible(self, at: float) -> bool:
        return any(m.active(at) for m in self.truth.values())

    def _step_member(self, sim: Sim) -> None:
        """One step of one agent: hear from the backend unless cut off; its
        source thread starts cycles on time either way."""
        t = self.t
        if not sim.cut(t):
            self._hear_from_backend(sim)
        local = t + sim.skew
        while sim.alive and (sim.next_cycle * INTERVAL <= local):
            start = sim.next_cycle * INTERVAL
            if sim.leave_at is not None and start >= sim.leave_at:
                if not sim.cut(t):
                    self._leave_now(sim)
                return
            sim.next_cycle += 1
            self._feed(sim, CycleStarted("src", round(start / INTERVAL), start, INTERVAL,
                                         KEYS, self._contact(sim)))
        if sim.alive and not sim.cut(t):
            self._deliver_handoffs(sim)
        if sim.alive and sim.state.wants_ticks:
            self._feed(sim, Tick(self._contact(sim)))

    def _hear_from_backend(self, sim: Sim) -> None:
        t = self.t
        if sim.cut_until > -math.inf and sim.last_contact < sim.cut_until:  # reconnected
            if sim.member_id not in self.truth:  # the session expired meanwhile
                self._feed(sim, SessionLost(self._contact(sim)))
                sim.session += 1
                sim.member_id = f"{sim.name}.{sim.session}"
                sim.last_contact = t
                sim.unpublished.clear()
                self._register(sim)
            sim.expires_at = math.inf
            # level-triggered: re-listed on reconnect (older news is moot)
            sim.inbox.append((t, self.version, tuple(self.truth.values())))
            if sim.unpublished:
                self._announce(sim, {})
        sim.last_contact = t
        if sim.measured is None:  # the first heartbeat or probe answered
            self._measure(sim)
        due = [(version, snap) for when, version, snap in sim.inbox if when <= t]
        if due:
            sim.inbox = [entry for entry in sim.inbox if entry[0] > t]
            version, snapshot = max(due, key=lambda entry: entry[0])
            if version > sim.seen:
                sim.seen = version
                self._feed(sim, MembershipChanged(snapshot, self._contact(sim)))

    def _deliver_handoffs(self, sim: Sim) -> None:
        due = [h for h in sim.handoffs if h[0] <= self.t]
        sim.handoffs = [h for h in sim.handoffs if h[0] > self.t]
        for _, (handoff_id, sender, index, start, keys, tried) in due:
            if self.t + sim.skew >= start + INTERVAL or sim.state.fence_reason(
                    self._contact(sim)):
                self.faulty.add(index)  # too late, or fenced: a gap
            self._feed(sim, HandoffReceived(handoff_id, sender, "src", index, start, INTERVAL,
                                            keys, tried, self._contact(sim)))

    def _send_handoff(self, sim: Sim, action: SendHandoff) -> None:
        """The owner writes into the successor's inbox (if both are there)."""
        target = next((s for s in self.sims.values() if s.member_id == action.to), None)
        written = (self._writable(sim) and target is not None and target.alive
                   and action.to in self.truth)
        confirmed = written and not sim.lose_handoff_confirmation
        if written and target is not None:
            sim.lose_handoff_confirmation = False  # the write landed all the same
            self.handoff_ids += 1
            handoff = (f"h-{self.handoff_ids}", sim.member_id, action.index, action.start,
                       action.keys, action.tried)
            target.handoffs.append((self.t + self.rnd.uniform(0.0, MAX_DELAY), handoff))
            if self.rnd.random() < 0.3:  # delivered again (a re-listing before the ack)
                target.handoffs.append((self.t + self.rnd.uniform(0.0, MAX_DELAY), handoff))
        else:
            self.faulty.add(action.index)
        self._feed(sim, HandoffSent(action.to, action.source, action.index, action.keys,
                                    confirmed, self._contact(sim)))

    def _leave_now(self, sim: Sim) -> None:
        self.truth.pop(sim.member_id, None)
        sim.alive = False
        self._broadcast()

    def _feed(self, sim: Sim, event: Event) -> None:
        for action in sim.state.handle(event):
            if not sim.alive:
                return
            self._do(sim, action)

    def _writable(self, sim: Sim) -> bool:
        return sim.alive and not sim.cut(self.t) and sim.member_id in self.truth

    def _announce(self, sim: Sim, fields: dict) -> None:
        sim.unpublished.update(fields)
        if sim.cut(self.t) or not sim.alive:
            return
        own = sim.state.own
        assert own is not None
        self.truth[sim.member_id] = MemberInfo(sim.member_id, own.weight, own.active_at,
                                               own.leave_at)
        sim.unpublished.clear()
        self._broadcast()

    def _do(self, sim: Sim, action: Action) -> None:
        if isinstance(action, Announce):
            self._announce(sim, dict(action.fields))
        elif isinstance(action, WriteClaims):
            written = self._writable(sim)
            if written:
                self.claims[sim.member_id] = dict(action.record)
                self._measure(sim)  # the write's mtime is a clock sample
            if action.wait:
                confirmed = written and not sim.lose_confirmation
                if written and sim.lose_confirmation:
                    sim.lose_confirmation = False
                    self.faulty.add(action.index)
                self._feed(sim, ClaimResult(action.source, action.index, confirmed,
                                            self._contact(sim)))
        elif isinstance(action, Poll):
            if sim.die_mid_cycle and action.kind is PollKind.CYCLE:
                self.faulty.add(action.index)
                self._die(sim)
                return
            reached = [k for k in action.keys if (sim.name, k) not in self.blocked]
            for key in reached:
                self.polls.setdefault((action.index, key), []).append(
                    (sim.member_id, action.kind))
            missed = tuple(k for k in action.keys if (sim.name, k) in self.blocked)
            if missed:
                self._feed(sim, KeysUnreachable(action.source, action.index, action.start,
                                                INTERVAL, missed, action.tried,
                                                self._contact(sim)))
        elif isinstance(action, SendHandoff):
            self._send_handoff(sim, action)
        elif isinstance(action, GiveUp):
            for key in action.keys:
                self.polls.setdefault((action.index, key), []).append(
                    (sim.member_id, "unreachable"))
        elif isinstance(action, MeasureClock):
            if not sim.cut(self.t):
                self._measure(sim)
                self._feed(sim, Tick(self._contact(sim)))
        elif isinstance(action, ReadClaims):
            if sim.cut(self.t):
                claims = None
            else:
                claims = {m: dict(self.claims.get(m, {})) for m in action.member_ids}
            self._feed(sim, ClaimsRead(claims, action.member_ids, self._contact(sim)))


def test_ownership_model() -> None:
    run_state_machine_as_test(OwnershipModel, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=25, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# --- the same world, driven by hand through each documented scenario -------------------
def world(count: int = 3) -> OwnershipModel:
    model = OwnershipModel()
    model.start(count=count, seed=7)
    model.run(20.0)
    return model


def until_phase(model: OwnershipModel, phase: float) -> None:
    """Advance to the next moment ``phase`` seconds into a cycle."""
    model._step()
    while abs(model.t % INTERVAL - phase) > STEP / 2:
        model._step()


def cycles_polled_by_kind(model: OwnershipModel, kind: str) -> set[int]:
    return {index for (index, _), pollers in model.polls.items()
            if any(k == kind for _, k in pollers)}


def check(model: OwnershipModel) -> None:
    model.no_key_polled_twice()
    model.every_key_polled_outside_fault_windows()


def test_a_crash_late_in_a_cycle_is_caught_up_in_the_next_one() -> None:
    model = world()
    until_phase(model, 7.0)  # the session expires 6 s later, inside the next cycle
    victim = model._running()[0]
    model._die(victim)
    model.run(30.0)
    check(model)
    assert cycles_polled_by_kind(model, "catch_up"), "the survivors caught up"
    assert not {c for c in model.faulty if c >= model.first_cycle}


def test_a_crash_between_claim_and_poll_costs_that_cycle_only() -> None:
    model = world()
    model._running()[0].die_mid_cycle = True
    model.run(40.0)
    check(model)
    assert len({c for c in model.faulty if c >= model.first_cycle}) == 1


def test_graceful_leave_and_join_have_no_gap_and_no_duplicate() -> None:
    model = world(4)
    leaver = model._running()[0]
    model._feed(leaver, LeaveRequested(model._contact(leaver)))
    leaver.leave_at = leaver.state.own.leave_at if leaver.state.own else model.t
    model.run(15.0)
    model._spawn()
    model.run(30.0)
    check(model)
    assert not {c for c in model.faulty if c >= model.first_cycle}
    assert not cycles_polled_by_kind(model, "catch_up")


def test_a_short_cut_at_a_cycle_start_is_resumed_in_the_same_cycle() -> None:
    model = world()
    until_phase(model, INTERVAL - 0.5)
    sim = model._running()[0]
    sim.cut_until = model.t + 1.5  # no faulty window marked: the cycle must be complete
    model.run(25.0)
    check(model)
    assert cycles_polled_by_kind(model, "resume")


def test_a_cut_longer_than_the_session_never_duplicates() -> None:
    model = world()
    model._cut([model._running()[0]], 12.0)
    model.run(40.0)
    check(model)
    assert any(s.session for s in model.sims.values()), "re-registered in a new session"


def _step_back_just_after_a_cycle_start(model: OwnershipModel, step: float) -> Sim:
    sim = model._running()[0]
    until_phase(model, 0.25 - sim.skew)  # our cycle started a moment ago
    sim.skew += step
    sim.stepped_at = model.t
    sim.next_cycle = math.floor((model.t + sim.skew) / INTERVAL) + 1  # a naive loop
    return sim


def test_a_clock_stepped_back_inside_the_bound_never_replans_a_started_cycle() -> None:
    model = world()
    sim = _step_back_just_after_a_cycle_start(model, -0.75)
    model.run(30.0)
    check(model)
    assert any("started already" in text for _, _, text in sim.state.log)


def test_a_clock_stepped_forward_skips_the_cycles_that_ended() -> None:
    model = world()
    sim = model._running()[0]
    until_phase(model, 5.0)
    sim.skew += 25.0  # the model's loop feeds the cycles that ended meanwhile
    sim.stepped_at = model.t
    model.run(40.0)
    check(model)
    assert any("jumped forward" in text for _, _, text in sim.state.log)


def test_a_joiner_whose_clock_is_beyond_the_bound_stays_out_of_every_ring() -> None:
    model = world()
    model._spawn(skew=-9.0)  # the slow joiner: 8-9 s behind
    joiner = model.sims[f"m{model.counter - 1}"]
    model.run(40.0)
    check(model)
    assert joiner.state.own is not None and joiner.state.own.active_at == math.inf
    assert all(not m.active(c * INTERVAL) for m in model.truth.values()
               if m.member_id == joiner.member_id for c in range(100))
    joiner.skew = 0.1  # its clock is fixed: it joins
    model.run(40.0)
    check(model)
    assert joiner.state.own.active_at < model.t
    assert any(joiner.member_id == m for pollers in model.polls.values() for m, _ in pollers)


def test_keys_one_member_cannot_reach_are_polled_by_their_successor_in_the_same_cycle() -> None:
    model = world()
    owner = model._running()[0]
    model.blocked.update((owner.name, k) for k in KEYS[::2])
    model.run(40.0)
    check(model)
    assert not {c for c in model.faulty if c >= model.first_cycle}, "no gap, no fault"
    handed = cycles_polled_by_kind(model, "handoff")
    assert len(handed) >= 3, "the successors polled them, cycle after cycle"
    assert not cycles_polled_by_kind(model, "unreachable")
    model.blocked.clear()
    model.run(30.0)
    check(model)


def test_a_key_nobody_can_reach_gets_one_unreachable_sample_per_cycle() -> None:
    model = world()
    model.blocked.update((s.name, "k3") for s in model.sims.values())
    model.run(40.0)
    check(model)
    gave_up = sorted(index for (index, key), pollers in model.polls.items()
                     if key == "k3" and pollers == [(pollers[0][0], "unreachable")])
    assert len(gave_up) >= 3
