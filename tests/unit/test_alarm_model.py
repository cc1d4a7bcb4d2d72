"""Model-based test of alarm evaluation by several members: no backend, no clock.

Members evaluate alarms cycle by cycle through a model compare-and-set store
(a version per record, writes of a fenced-out member refused), as the
evaluator agent does: read the state, :func:`~zkpoll.alarm.rules.evaluate`,
queue a resend of an unconfirmed transition, CAS the outcome, queue its
notification, CAS ``notified_seq``.  Each of those is a separate step, so
Hypothesis interleaves them with other members' evaluations of the same
cycle (duplicate attempts: ownership moving, a slow member), late and
out-of-order cycles, ownership changes, members losing their session, and
crashes at any step (notably between the CAS and the enqueue, and between
the enqueue and the ``notified_seq`` write).  Always:

* each (alarm, cycle) changes the stored state at most once;
* transition seqs are 1..n, no gap, no duplicate;
* the stored state is what one evaluator replaying the datapoints of the
  evaluated cycles, in order, would have stored;
* nothing is notified that was not stored.

After a final clean cycle, every transition with actions has been queued
(key ``<alarm>:<seq>``) at least once, and, when nothing crashed, stalled
or was fenced out, every key exactly once.

CI runs a fixed set of examples; ``ZKPOLL_MODEL_EXAMPLES=500`` a longer search.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter

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

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.rules import AlarmState, Datapoint, Outcome, evaluate, mark_notified

EXAMPLES = int(os.environ.get("ZKPOLL_MODEL_EXAMPLES", "30"))
INTERVAL = 60
POINTS = (Datapoint((5.0,)), Datapoint((0.5,)), Datapoint((5.0, 0.5)), Datapoint(None),
          Datapoint((5.0,), error="timeout"))
WEIGHTS = (4, 4, 1, 1, 1)
INDEX = st.integers(0, 7)


class Store:
    """The coordination records of the alarms: JSON values, versions, fencing."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[dict, int]] = {}

    def read(self, key: str) -> tuple[AlarmState, int | None]:
        if key not in self.records:
            return AlarmState(), None
        value, version = self.records[key]
        return AlarmState.from_dict(value), version

    def cas(self, key: str, state: AlarmState, version: int | None, live: bool) -> int | None:
        current = self.records.get(key, (None, None))[1]
        if not live or current != version:
            return None
        new = (current or 0) + 1
        self.records[key] = (state.to_dict(), new)
        return new


@dataclasses.dataclass
class Task:
    """One member's evaluation of one alarm for one cycle, between its steps."""

    member: str
    alarm: str
    cycle: int
    outcome: Outcome
    version: int | None
    phase: str = "resend"  # resend -> write -> notify -> confirm -> (done)


class AlarmModel(RuleBasedStateMachine):
    """Members, alarms, the store, the spool of queued notifications."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.cycle = 0
        self.members: dict[str, bool] = {}        # member -> live (not fenced out)
        self.owner: dict[str, str] = {}
        self.alarms: dict[str, AlarmDefinition] = {}
        self.tasks: list[Task] = []
        self.seed = 0
        self.spool: Counter[str] = Counter()     # idempotency key -> times queued
        self.writes: Counter[tuple[str, int]] = Counter()  # (alarm, cycle) -> state changes
        self.order: dict[str, list[int]] = {}     # alarm -> cycles written, in write order
        self.transitions: dict[str, list[int]] = {}  # alarm -> seqs written, in order
        self.notifiable: set[str] = set()         # keys of written transitions and repeats
        self.faults: list[str] = []               # crashes, stalls, fenced members

    # --- set-up ------------------------------------------------------------------------
    @initialize(members=st.integers(2, 3), alarms=st.integers(1, 3),
                seed=st.integers(0, 2**32 - 1), warmup=st.integers(0, 8))
    def start(self, members: int, alarms: int, seed: int, warmup: int = 0) -> None:
        """The world, after ``warmup`` clean cycles (alarms already in some state)."""
        self.seed = seed
        rnd = random.Random(seed)
        self.members = {f"m{i}": True for i in range(members)}
        for i in range(alarms):
            actions = [("log://",), ()]
            definition = AlarmDefinition(
                id=f"a{i}", type="prometheus", query="up", comparison_operator="gt",
                threshold=1.0, evaluation_periods=rnd.randint(1, 2),
                repeat_actions=rnd.random() < 0.5, alarm_actions=rnd.choice(actions),
                ok_actions=rnd.choice(actions), insufficient_data_actions=rnd.choice(actions))
            self.alarms[definition.id] = definition
            self.owner[definition.id] = rnd.choice(sorted(self.members))
            self.order[definition.id] = []
            self.transitions[definition.id] = []
        if warmup:
            self.next_cycle(finish=True, cycles=warmup)

    def point(self, alarm: str, cycle: int) -> Datapoint:
        """The datapoint of ``alarm`` at ``cycle``: the same whoever queries it."""
        rnd = random.Random(f"{self.seed}:{alarm}:{cycle}")
        return rnd.choices(POINTS, WEIGHTS)[0]

    def pick(self, items: list, index: int):
        return items[index % len(items)]

    # --- rules -------------------------------------------------------------------------
    @rule(finish=st.booleans(), cycles=st.integers(1, 3))
    def next_cycle(self, finish: bool, cycles: int = 1) -> None:
        """New cycles: sessions are back, every owner starts evaluating, maybe finishes."""
        for _ in range(cycles):
            self.cycle += 1
            self.members = dict.fromkeys(self.members, True)
            for alarm in sorted(self.alarms):
                self._start(self.owner[alarm], alarm, self.cycle)
            if finish:
                self.everyone_finishes()

    @rule(alarm=INDEX, member=INDEX, lag=st.sampled_from([0, 0, 1, 2, 3]))
    def another_member_evaluates(self, alarm: int, member: int, lag: int) -> None:
        """The same cycle (lag 0: a duplicate attempt) or a late one, by any member."""
        alarm_id = self.pick(sorted(self.alarms), alarm)
        self._start(self.pick(sorted(self.members), member), alarm_id,
                    max(0, self.cycle - lag))

    @rule(alarm=INDEX, member=INDEX)
    def ownership_moves(self, alarm: int, member: int) -> None:
        alarm_id = self.pick(sorted(self.alarms), alarm)
        self.owner[alarm_id] = self.pick(sorted(self.members), member)

    @precondition(lambda self: self.tasks)
    @rule(task=INDEX, steps=st.integers(1, 4))
    def step(self, task: int, steps: int) -> None:
        chosen = self.pick(self.tasks, task)
        for _ in range(steps):
            if chosen in self.tasks:
                self._step(chosen)

    @rule()
    def everyone_finishes(self) -> None:
        while self.tasks:
            self._step(self.tasks[0])

    @rule(which=INDEX, crash=st.sampled_from([True, True, False]),
          before=st.sampled_from(["resend", "write", "notify", "notify", "confirm", "confirm"]))
    def fault(self, which: int, crash: bool, before: str = "notify") -> None:
        """A member dies during an evaluation (one in flight, else one of the next cycle),
        just before step ``before`` (notify: between the CAS and the enqueue; confirm:
        between the enqueue and the notified_seq write); or a member loses its session
        until the next cycle (its writes are fenced out)."""
        if not crash:
            name = self.pick(sorted(self.members), which)
            self.members[name] = False
            self.faults.append(f"{name} fenced out")
            return
        if not self.tasks:
            self.next_cycle(finish=False)
        notifying = [t for t in self.tasks if t.outcome.actions]
        chosen = self.pick(notifying or self.tasks, which) if self.tasks else None
        while chosen in self.tasks and chosen.phase != before:
            self._step(chosen)
        if chosen in self.tasks:
            self.tasks.remove(chosen)
            self.faults.append(f"{chosen.member} crashed before {before} of "
                               f"{chosen.alarm}@{chosen.cycle}")

    # --- the evaluator's steps ---------------------------------------------------------
    def _start(self, member: str, alarm: str, cycle: int) -> None:
        state, version = self.store.read(alarm)
        outcome = evaluate(self.alarms[alarm], state, self.point(alarm, cycle), cycle,
                           float(cycle * INTERVAL), member)
        if outcome is None:
            assert cycle <= state.cycle
            return
        if outcome.resend is not None:
            writer = [t for t in self.tasks if t.alarm == alarm
                      and t.phase in ("notify", "confirm")
                      and t.outcome.state.seq == outcome.resend.seq]
            if writer:
                self.faults.append(f"{writer[0].member} stalled after writing {alarm}")
            assert self.faults, f"{alarm}: resend of seq {outcome.resend.seq} without a fault"
        self.tasks.append(Task(member, alarm, cycle, outcome, version))

    def _step(self, task: Task) -> None:
        outcome = task.outcome
        if task.phase == "resend":
            if outcome.resend_key is not None:
                self.spool[outcome.resend_key] += 1  # an already stored transition
            task.phase = "write"
        elif task.phase == "write":
            version = self.store.cas(task.alarm, outcome.state, task.version,
                                     self.members[task.member])
            if version is None:
                self.tasks.remove(task)  # lost: someone else evaluated; no notification
                return
            self.writes[(task.alarm, task.cycle)] += 1
            self.order[task.alarm].append(task.cycle)
            if outcome.transition is not None:
                self.transitions[task.alarm].append(outcome.transition.seq)
            if outcome.key is not None:
                self.notifiable.add(outcome.key)
            task.version = version
            task.phase = "notify"
            if not outcome.actions:
                self.tasks.remove(task)
        elif task.phase == "notify":
            self.spool[outcome.key] += 1
            task.phase = "confirm"
            if outcome.state.pending is None:  # a repeat: nothing to confirm
                self.tasks.remove(task)
        else:
            self.store.cas(task.alarm, mark_notified(outcome.state, outcome.state.seq),
                           task.version, self.members[task.member])
            self.tasks.remove(task)

    # --- the checks ----------------------------------------------------------------------
    @invariant()
    def each_alarm_cycle_changes_the_state_at_most_once(self) -> None:
        twice = [key for key, count in self.writes.items() if count > 1]
        assert not twice, f"written more than once: {twice}"

    @invariant()
    def cycles_are_written_in_order(self) -> None:
        for alarm, cycles in self.order.items():
            assert cycles == sorted(set(cycles)), f"{alarm}: cycles written {cycles}"

    @invariant()
    def transition_seqs_are_contiguous(self) -> None:
        for alarm, seqs in self.transitions.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"{alarm}: seqs {seqs}"
            stored, _ = self.store.read(alarm)
            assert stored.seq == len(seqs)

    @invariant()
    def the_store_equals_one_evaluator_replaying_the_evaluated_cycles(self) -> None:
        for alarm, definition in self.alarms.items():
            replay = AlarmState()
            for cycle in sorted(set(self.order[alarm])):
                outcome = evaluate(definition, replay, self.point(alarm, cycle), cycle,
                                   float(cycle * INTERVAL), "reference")
                assert outcome is not None
                replay = outcome.state
            stored, _ = self.store.read(alarm)
            assert comparable(stored) == comparable(replay), alarm

    @invariant()
    def nothing_is_notified_that_was_not_stored(self) -> None:
        stray = set(self.spool) - self.notifiable
        assert not stray, f"notified but never stored: {stray}"

    def teardown(self) -> None:
        if not self.alarms:
            return
        for task in list(self.tasks):  # the stalled finish; the fenced-out give up
            while task in self.tasks:
                self._step(task)
        self.members = dict.fromkeys(self.members, True)
        self.cycle += 1
        for alarm in sorted(self.alarms):  # one clean cycle, each step run to its end
            self._start(self.owner[alarm], alarm, self.cycle)
            while self.tasks:
                self._step(self.tasks[0])
        self.every_transition_is_notified()

    def every_transition_is_notified(self) -> None:
        for alarm, definition in self.alarms.items():
            stored, _ = self.store.read(alarm)
            assert stored.pending is None, f"{alarm}: seq {stored.seq} still pending"
            for seq in self.transitions[alarm]:
                key = f"{alarm}:{seq}"
                current = self.transition_state(alarm, seq)
                if definition.actions_for(current):
                    assert self.spool[key] >= 1, f"{key} never notified"
        if not self.faults:
            twice = {key: n for key, n in self.spool.items() if n > 1}
            assert not twice, f"notified more than once without a fault: {twice}"

    def transition_state(self, alarm: str, seq: int) -> str:
        """The state transition ``seq`` of ``alarm`` entered (from a replay)."""
        replay = AlarmState()
        for cycle in sorted(set(self.order[alarm])):
            outcome = evaluate(self.alarms[alarm], replay, self.point(alarm, cycle), cycle,
                               0.0, "reference")
            replay = outcome.state
            if outcome.transition is not None and outcome.transition.seq == seq:
                return outcome.transition.current
        raise AssertionError(f"{alarm}: no transition {seq}")


def comparable(state: AlarmState) -> AlarmState:
    """``state`` without who evaluated it and what was confirmed (not part of the replay)."""
    return dataclasses.replace(state, owner="", notified_seq=0)


def test_alarm_model() -> None:
    run_state_machine_as_test(AlarmModel, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=50, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


# --- the same world, driven by hand through each documented scenario -------------------
def world(seed: int = 3, alarms: int = 1) -> AlarmModel:
    model = AlarmModel()
    model.start(members=2, alarms=alarms, seed=seed)
    definition = model.alarms["a0"]
    model.alarms["a0"] = dataclasses.replace(
        definition, evaluation_periods=1, repeat_actions=False, alarm_actions=("log://",),
        ok_actions=("log://",), insufficient_data_actions=("log://",))
    return model


def first_transition_cycle(model: AlarmModel) -> int:
    """A cycle whose evaluation (from the state before it) makes a transition."""
    for cycle in range(50):
        state, _ = model.store.read("a0")
        outcome = evaluate(model.alarms["a0"], state, model.point("a0", cycle), cycle, 0.0, "x")
        if outcome.transition is not None:
            return cycle
        model.cycle = cycle - 1
        model.next_cycle(finish=True)
    raise AssertionError("no transition in 50 cycles")


def check(model: AlarmModel) -> None:
    model.each_alarm_cycle_changes_the_state_at_most_once()
    model.cycles_are_written_in_order()
    model.transition_seqs_are_contiguous()
    model.the_store_equals_one_evaluator_replaying_the_evaluated_cycles()
    model.nothing_is_notified_that_was_not_stored()


def test_two_members_evaluating_one_cycle_change_the_state_once() -> None:
    model = world()
    model.cycle = first_transition_cycle(model)
    model._start("m0", "a0", model.cycle)
    model._start("m1", "a0", model.cycle)  # read before m0 writes: its CAS loses
    while model.tasks:
        model._step(model.tasks[-1])
    model._start("m1", "a0", model.cycle)  # read after: the cycle is done, no replay
    assert not model.tasks
    check(model)
    model.teardown()
    assert max(model.spool.values()) == 1


def test_a_crash_between_cas_and_enqueue_is_notified_by_the_next_cycle() -> None:
    model = world()
    model.cycle = first_transition_cycle(model)
    model._start("m0", "a0", model.cycle)
    key = model.tasks[0].outcome.key
    model.fault(0, crash=True, before="notify")  # written, not queued
    assert model.store.read("a0")[0].pending is not None and model.spool[key] == 0
    model.teardown()              # the next cycle resends it, before its own write
    assert model.spool[key] == 1


def test_a_crash_between_enqueue_and_confirmation_notifies_at_least_once() -> None:
    model = world()
    model.cycle = first_transition_cycle(model)
    model._start("m0", "a0", model.cycle)
    key = model.tasks[0].outcome.key
    model.fault(0, crash=True, before="confirm")  # queued, notified_seq not written
    assert model.spool[key] == 1 and model.store.read("a0")[0].pending is not None
    model.teardown()
    assert model.spool[key] == 2  # once by m0, once resent: the receiver dedupes by key


def test_a_fenced_out_member_changes_nothing() -> None:
    model = world()
    model.cycle = first_transition_cycle(model)
    model.members["m0"] = False
    model._start("m0", "a0", model.cycle)
    while model.tasks:
        model._step(model.tasks[0])
    assert model.store.read("a0")[0].cycle < model.cycle and not model.spool
    check(model)
