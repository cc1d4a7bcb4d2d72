"""The evaluator's order of operations, on the in-memory (standalone) records.

Real backends are covered by tests/functional/test_alarm_faults.py and the
records contract; here the sequence read -> decide -> fenced write ->
notify -> mark is checked step by step, including a crash between the
write and the notification.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.evaluator import Evaluator
from zkpoll.alarm.notify import Notification, NotifyError
from zkpoll.alarm.rules import Datapoint
from zkpoll.alarm.store import AlarmStore
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import CoordinatorUnreachable
from zkpoll.ownership import PollKind

GROUP = "alarm"
URL = "http://hooks.invalid/alarm"


def alarm(alarm_id: str = "a1", **kwargs: object) -> AlarmDefinition:
    fields = {"id": alarm_id, "type": "prometheus", "query": "up", "threshold": 0.5,
              "comparison_operator": "gt", "alarm_actions": (URL,), "ok_actions": (URL,)}
    fields.update(kwargs)
    return AlarmDefinition(**fields)  # type: ignore[arg-type]


class Sink:
    """Collects notifications; can fail on demand (a spool write error)."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []
        self.fail = False

    def __call__(self, batch: Sequence[Notification]) -> None:
        if self.fail:
            raise NotifyError("disk full")
        self.sent.extend(batch)

    @property
    def keys(self) -> list[str]:
        return [n.key for n in self.sent]


@pytest.fixture
def coordinator() -> StandaloneCoordinator:
    coordinator = StandaloneCoordinator("m1")
    coordinator.start()
    coordinator.join(GROUP, {})
    return coordinator


def make(coordinator: StandaloneCoordinator, values: dict[str, float], sink: Sink,
         member: str = "m1") -> Evaluator:
    def query(definition: AlarmDefinition, at: float) -> Datapoint:
        return Datapoint((values[definition.id],))
    return Evaluator(lambda: member, AlarmStore(coordinator, GROUP),
                     {"prometheus": query}, sink, max_parallel=2)


def test_first_evaluation_records_and_notifies_transition_once(coordinator) -> None:
    sink = Sink()
    evaluator = make(coordinator, {"a1": 1.0}, sink)
    report = evaluator.evaluate_cycle("alarms-60s", 10, 600.0, [alarm()])
    assert (report.evaluated, report.transitions, report.notifications) == (1, 1, 1)
    assert sink.keys == ["a1:1"]
    body = sink.sent[0].body
    assert (body["previous"], body["current"], body["idempotency_key"]) == \
        ("insufficient data", "alarm", "a1:1")
    stored = AlarmStore(coordinator, GROUP).read(["a1"])["a1"].state
    assert (stored.state, stored.seq, stored.notified_seq, stored.cycle) == ("alarm", 1, 1, 10)


def test_a_cycle_is_never_evaluated_twice(coordinator) -> None:
    sink = Sink()
    evaluator = make(coordinator, {"a1": 1.0}, sink)
    evaluator.evaluate_cycle("alarms-60s", 10, 600.0, [alarm()])
    again = evaluator.evaluate_cycle("alarms-60s", 10, 600.0, [alarm()], kind=PollKind.CATCH_UP)
    older = evaluator.evaluate_cycle("alarms-60s", 9, 540.0, [alarm()], kind=PollKind.RESUME)
    assert (again.already, again.evaluated, older.already, older.evaluated) == (1, 0, 1, 0)
    assert sink.keys == ["a1:1"]


def test_no_transition_no_notification(coordinator) -> None:
    sink = Sink()
    values = {"a1": 1.0}
    evaluator = make(coordinator, values, sink)
    evaluator.evaluate_cycle("s", 1, 60.0, [alarm()])
    evaluator.evaluate_cycle("s", 2, 120.0, [alarm()])
    values["a1"] = 0.0
    evaluator.evaluate_cycle("s", 3, 180.0, [alarm()])
    assert sink.keys == ["a1:1", "a1:2"]
    assert [n.body["current"] for n in sink.sent] == ["alarm", "ok"]


def test_failed_queue_is_resent_by_the_next_owner_before_its_own_write(coordinator) -> None:
    """The owner stored transition 1 but could not queue its notification (crash or
    spool error): the next evaluation, by another member, queues it first."""
    sink = Sink()
    values = {"a1": 1.0}
    sink.fail = True
    make(coordinator, values, sink, member="m1").evaluate_cycle("s", 1, 60.0, [alarm()])
    stored = AlarmStore(coordinator, GROUP).read(["a1"])["a1"].state
    assert (stored.seq, stored.notified_seq) == (1, 0)
    sink.fail = False
    report = make(coordinator, values, sink, member="m2").evaluate_cycle(
        "s", 2, 120.0, [alarm()])
    assert report.redelivered == 1
    assert sink.keys == ["a1:1"]
    assert sink.sent[0].body["current"] == "alarm"
    stored = AlarmStore(coordinator, GROUP).read(["a1"])["a1"].state
    assert (stored.seq, stored.notified_seq, stored.owner) == (1, 1, "m2")


def test_resend_and_new_transition_in_one_evaluation(coordinator) -> None:
    sink = Sink()
    values = {"a1": 1.0}
    sink.fail = True
    make(coordinator, values, sink).evaluate_cycle("s", 1, 60.0, [alarm()])
    sink.fail = False
    values["a1"] = 0.0
    make(coordinator, values, sink, member="m2").evaluate_cycle("s", 2, 120.0, [alarm()])
    assert sink.keys == ["a1:1", "a1:2"]
    stored = AlarmStore(coordinator, GROUP).read(["a1"])["a1"].state
    assert (stored.state, stored.seq, stored.notified_seq) == ("ok", 2, 2)


def test_a_member_outside_the_group_cannot_write(coordinator) -> None:
    """The fence: a member not registered in the group loses every write."""
    coordinator.leave(GROUP)
    sink = Sink()
    report = make(coordinator, {"a1": 1.0}, sink).evaluate_cycle("s", 1, 60.0, [alarm()])
    assert (report.evaluated, report.lost, sink.keys) == (0, 1, [])
    assert AlarmStore(coordinator, GROUP).read(["a1"])["a1"].version is None


def test_query_failure_counts_as_no_data_and_never_raises(coordinator) -> None:
    def broken(definition: AlarmDefinition, at: float) -> Datapoint:
        raise RuntimeError("boom")
    sink = Sink()
    evaluator = Evaluator(lambda: "m1", AlarmStore(coordinator, GROUP),
                          {"prometheus": broken}, sink, max_parallel=2)
    report = evaluator.evaluate_cycle("s", 1, 60.0, [alarm(), alarm("a2")])
    assert (report.errors, report.evaluated) == (2, 2)
    state = AlarmStore(coordinator, GROUP).read(["a1"])["a1"].state
    assert state.state == "insufficient data"
    assert state.missing == 1
    assert evaluator.stats.evaluations["insufficient data"] == 2


def test_lag_is_observed_per_written_evaluation(coordinator) -> None:
    evaluator = make(coordinator, {"a1": 1.0, "a2": 0.0}, Sink())
    evaluator.evaluate_cycle("s", 1, 60.0, [alarm(), alarm("a2")])
    buckets, total = evaluator.stats.lag_histogram()
    assert buckets[-1] == ("+Inf", 2)
    assert total > 0


class FlakyCoordinator(StandaloneCoordinator):
    """Standalone records whose first read times out (a backend under load)."""

    def __init__(self) -> None:
        super().__init__("m1")
        self.reads = 0

    def _read_records(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        if self.reads == 1:
            raise CoordinatorUnreachable("no answer within 5s")
        return super()._read_records(*args, **kwargs)


def test_a_backend_timeout_costs_one_batch_not_the_whole_share() -> None:
    coordinator = FlakyCoordinator()
    coordinator.start()
    coordinator.join(GROUP, {})
    sink = Sink()
    alarms = [alarm(f"a{i}") for i in range(5)]
    evaluator = Evaluator(lambda: "m1", AlarmStore(coordinator, GROUP),
                          {"prometheus": lambda d, at: Datapoint((1.0,))}, sink,
                          max_parallel=2, batch_size=2)
    report = evaluator.evaluate_cycle("s", 1, 60.0, alarms)
    assert (report.unevaluated, report.evaluated, report.failed) == (2, 3, "")
    assert "no answer" in report.backend_error
    assert sorted(sink.keys) == ["a2:1", "a3:1", "a4:1"]
    assert evaluator.stats.evaluations["backend_error"] == 2
