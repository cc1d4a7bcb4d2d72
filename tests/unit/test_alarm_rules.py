"""Tests for the pure alarm evaluation rules: one rule per test, then properties."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.rules import (
    STATES,
    AlarmState,
    Datapoint,
    Outcome,
    Transition,
    evaluate,
    mark_notified,
    notification_body,
    reduce_samples,
    transition_body,
)

ALARM_URL = ("log://", "https://hooks.example.com/a")
OK_URL = ("log://ok",)
INSUFFICIENT_URL = ("log://insufficient",)

HIGH = Datapoint((5.0,))            # breaches "gt 1"
LOW = Datapoint((0.5,))             # clear
MIXED = Datapoint((5.0, 0.5))       # unknown
NONE = Datapoint(None)              # no data


def alarm(**fields) -> AlarmDefinition:
    base = {"id": "a", "type": "prometheus", "query": "up", "comparison_operator": "gt",
            "threshold": 1.0, "alarm_actions": ALARM_URL, "ok_actions": OK_URL,
            "insufficient_data_actions": INSUFFICIENT_URL}
    base.update(fields)
    return AlarmDefinition(**base)


def run(definition: AlarmDefinition, points, state: AlarmState | None = None,
        first_cycle: int = 0) -> tuple[AlarmState, list[Outcome]]:
    """Evaluate ``points`` on consecutive cycles, confirming every notification."""
    state = state or AlarmState()
    outcomes = []
    for cycle, point in enumerate(points, first_cycle):
        outcome = evaluate(definition, state, point, cycle, 1000.0 + cycle, "m1")
        assert outcome is not None
        outcomes.append(outcome)
        state = mark_notified(outcome.state, outcome.state.seq)
    return state, outcomes


# -- datapoint verdicts and counters ------------------------------------------------------
def test_breaches_are_counted_until_evaluation_periods():
    state, outcomes = run(alarm(evaluation_periods=3), [HIGH, HIGH])
    assert [o.transition for o in outcomes] == [None, None]
    assert [o.breached for o in outcomes] == [True, True]
    assert (state.state, state.breaches, state.clears, state.missing) == (
        "insufficient data", 2, 0, 0)
    state, (outcome,) = run(alarm(evaluation_periods=3), [HIGH], state, 2)
    assert outcome.transition == Transition(
        seq=1, previous="insufficient data", current="alarm",
        reason="Transition to alarm due to 3 samples outside threshold, most recent: 5.0",
        reason_data={"type": "threshold", "disposition": "outside", "count": 3,
                     "most_recent": 5.0}, cycle=2, at=1002.0)
    assert (state.state, state.seq, state.breaches, state.last) == (
        "alarm", 1, 3, outcome.transition)


def test_a_clear_interrupts_a_run_of_breaches():
    state, outcomes = run(alarm(evaluation_periods=3), [HIGH, HIGH, LOW, HIGH, HIGH])
    assert all(o.transition is None for o in outcomes)
    assert (state.breaches, state.clears, state.seq) == (2, 0, 0)


def test_no_data_interrupts_a_run_of_breaches():
    state, _ = run(alarm(evaluation_periods=2), [HIGH, NONE, HIGH])
    assert (state.state, state.breaches, state.missing) == ("insufficient data", 1, 0)


def test_mixed_datapoint_resets_counters_and_keeps_state():
    state, _ = run(alarm(), [HIGH])
    assert state.state == "alarm"
    state, (outcome,) = run(alarm(evaluation_periods=2), [MIXED], state, 1)
    assert outcome.breached is None and outcome.transition is None and outcome.key is None
    assert (state.state, state.breaches, state.clears, state.missing) == ("alarm", 0, 0, 0)
    assert state.last_value == 0.5


def test_a_breach_needs_every_value_to_compare_true():
    definition = alarm(comparison_operator="ge", threshold=2.0)
    _, outcomes = run(definition, [Datapoint((2.0, 3.0)), Datapoint((1.9, 1.0)),
                                   Datapoint((2.0, 1.9))])
    assert [o.breached for o in outcomes] == [True, False, None]


@pytest.mark.parametrize(("op", "below", "equal", "above"), [
    ("lt", True, False, False), ("le", True, True, False), ("eq", False, True, False),
    ("ne", True, False, True), ("ge", False, True, True), ("gt", False, False, True),
])
def test_comparison_operators(op, below, equal, above):
    definition = alarm(comparison_operator=op, threshold=1.0)
    verdicts = [evaluate(definition, AlarmState(), Datapoint((v,)), 0, 0.0, "m").breached
                for v in (0.5, 1.0, 1.5)]
    assert verdicts == [below, equal, above]


# -- each transition ----------------------------------------------------------------------
def test_every_transition_carries_the_new_states_actions():
    points = [HIGH, LOW, NONE, LOW, HIGH, NONE, HIGH]
    _, outcomes = run(alarm(), points)
    moves = [(o.transition.previous, o.transition.current, o.actions, o.key)
             for o in outcomes]
    assert moves == [
        ("insufficient data", "alarm", ALARM_URL, "a:1"),
        ("alarm", "ok", OK_URL, "a:2"),
        ("ok", "insufficient data", INSUFFICIENT_URL, "a:3"),
        ("insufficient data", "ok", OK_URL, "a:4"),
        ("ok", "alarm", ALARM_URL, "a:5"),
        ("alarm", "insufficient data", INSUFFICIENT_URL, "a:6"),
        ("insufficient data", "alarm", ALARM_URL, "a:7"),
    ]
    assert outcomes[1].transition.reason == (
        "Transition to ok due to 1 samples inside threshold, most recent: 0.5")


def test_no_transition_when_the_target_is_the_current_state():
    state, outcomes = run(alarm(), [LOW, LOW, LOW])
    assert [o.transition is not None for o in outcomes] == [True, False, False]
    assert [(o.actions, o.key) for o in outcomes[1:]] == [((), None), ((), None)]
    assert (state.seq, state.clears) == (1, 3)


def test_a_first_no_data_evaluation_is_no_transition():
    state, (outcome,) = run(alarm(), [NONE])
    assert outcome.transition is None and state.seq == 0 and state.missing == 1


# -- repeat_actions ----------------------------------------------------------------------
def test_repeat_actions_renotify_each_confirming_evaluation():
    definition = alarm(repeat_actions=True, evaluation_periods=2)
    state, outcomes = run(definition, [HIGH, HIGH, HIGH, LOW, HIGH, HIGH])
    keys = [o.key for o in outcomes]
    # cycle 1 transitions; 2 confirms; 3 clears once (no target); 4 breaches once
    # (a run of 1 < 2: no target); 5 confirms again.
    assert keys == [None, "a:1", "a:1:r2", None, None, "a:1:r5"]
    repeat = outcomes[2]
    assert repeat.transition is None and repeat.actions == ALARM_URL
    assert repeat.reason == ("Remaining as alarm due to 3 samples outside threshold, "
                             "most recent: 5.0")
    body = notification_body(definition, repeat)
    assert body["previous"] == body["current"] == "alarm"
    assert (body["idempotency_key"], body["transition_seq"]) == ("a:1:r2", 1)
    assert state.seq == 1


def test_no_repeat_without_repeat_actions_or_without_actions():
    _, outcomes = run(alarm(), [HIGH, HIGH])
    assert outcomes[1].key is None
    _, outcomes = run(alarm(repeat_actions=True, alarm_actions=()), [HIGH, HIGH])
    assert [o.key for o in outcomes] == ["a:1", None]


def test_repeat_of_insufficient_data_before_any_transition():
    _, (outcome,) = run(alarm(repeat_actions=True), [NONE])
    assert (outcome.key, outcome.actions) == ("a:0:r0", INSUFFICIENT_URL)


# -- insufficient data ----------------------------------------------------------------
@pytest.mark.parametrize("point", [Datapoint(None), Datapoint(()),
                                   Datapoint((float("nan"),)),
                                   Datapoint((5.0,), error="timeout")])
def test_missing_data_and_query_errors_lead_to_insufficient_data(point):
    state, _ = run(alarm(evaluation_periods=2), [HIGH, HIGH])
    state, outcomes = run(alarm(evaluation_periods=2), [point, point], state, 2)
    assert outcomes[0].transition is None and outcomes[0].breached is None
    transition = outcomes[1].transition
    assert (transition.previous, transition.current) == ("alarm", "insufficient data")
    assert transition.reason_data["disposition"] == "unknown"
    assert transition.reason_data["count"] == 2
    assert state.last_value is None
    if point.error:
        assert transition.reason == ("Transition to insufficient data due to 2 datapoints "
                                     "are unknown (query failed: timeout)")
        assert transition.reason_data["error"] == "timeout"
    else:
        assert transition.reason == ("Transition to insufficient data due to 2 datapoints "
                                     "are unknown")


def test_nan_values_are_dropped_from_a_datapoint():
    _, (outcome,) = run(alarm(), [Datapoint((float("nan"), 5.0))])
    assert outcome.breached is True


# -- no replay ---------------------------------------------------------------------------
def test_a_cycle_at_or_before_the_stored_one_is_never_evaluated_again():
    state, _ = run(alarm(), [HIGH, LOW, HIGH])
    assert state.cycle == 2
    for cycle in (0, 1, 2):
        assert evaluate(alarm(), state, LOW, cycle, 5.0, "other") is None
    assert evaluate(alarm(), state, LOW, 7, 5.0, "other") is not None  # gaps are fine


@pytest.mark.parametrize("cycle", [-1, True, 1.0])
def test_a_bad_cycle_is_refused(cycle):
    with pytest.raises(ValueError, match="cycle must be an integer"):
        evaluate(alarm(), AlarmState(), HIGH, cycle, 0.0, "m")


def test_the_outcome_records_who_evaluated_what_and_when():
    outcome = evaluate(alarm(), AlarmState(), Datapoint((3, 7)), 42, 1234.5, "member-7")
    assert (outcome.state.cycle, outcome.state.evaluated_at, outcome.state.owner,
            outcome.state.last_value) == (42, 1234.5, "member-7", 7.0)
    assert outcome.transition.at == 1234.5 and outcome.transition.cycle == 42


# -- notified_seq and resends ----------------------------------------------------------
def test_a_transition_with_actions_is_pending_until_marked_notified():
    outcome = evaluate(alarm(), AlarmState(), HIGH, 0, 0.0, "m")
    assert outcome.state.notified_seq == 0 and outcome.state.pending == outcome.transition
    done = mark_notified(outcome.state, 1)
    assert done.notified_seq == 1 and done.pending is None
    assert mark_notified(done, 0) == done and mark_notified(done, 9).notified_seq == 1


def test_a_transition_without_actions_has_nothing_pending():
    outcome = evaluate(alarm(alarm_actions=()), AlarmState(), HIGH, 0, 0.0, "m")
    assert outcome.key == "a:1" and outcome.actions == ()
    assert outcome.state.notified_seq == 1 and outcome.state.pending is None


def test_an_unconfirmed_transition_is_resent_before_the_next_write():
    first = evaluate(alarm(), AlarmState(), HIGH, 0, 0.0, "m1")  # m1 dies before enqueue
    again = evaluate(alarm(), first.state, HIGH, 1, 1.0, "m2")
    assert (again.resend, again.resend_actions, again.resend_key) == (
        first.transition, ALARM_URL, "a:1")
    assert again.transition is None and again.state.notified_seq == 1
    moved = evaluate(alarm(), first.state, LOW, 1, 1.0, "m2")  # resend and a new transition
    assert moved.resend == first.transition and moved.transition.seq == 2
    assert moved.state.notified_seq == 1 and moved.state.pending == moved.transition
    assert transition_body(alarm(), moved.resend)["idempotency_key"] == "a:1"


def test_nothing_is_resent_once_notified():
    state, _ = run(alarm(), [HIGH])
    assert evaluate(alarm(), state, HIGH, 1, 1.0, "m").resend is None


# -- notification bodies ----------------------------------------------------------------
def test_notification_body_is_aodhs_webhook_body():
    definition = alarm(name="CPU", severity="critical")
    outcome = evaluate(definition, AlarmState(), Datapoint((float("inf"),)), 3, 9.0, "m")
    body = notification_body(definition, outcome)
    assert body == {
        "alarm_id": "a", "alarm_name": "CPU", "severity": "critical",
        "previous": "insufficient data", "current": "alarm",
        "reason": "Transition to alarm due to 1 samples outside threshold, most recent: inf",
        "reason_data": {"type": "threshold", "disposition": "outside", "count": 1,
                        "most_recent": "inf"},
        "idempotency_key": "a:1", "transition_seq": 1,
    }
    json.dumps(body, allow_nan=False)
    quiet = evaluate(definition, outcome.state, HIGH, 4, 9.0, "m")
    with pytest.raises(ValueError, match="no notification"):
        notification_body(definition, quiet)


# -- reduce_samples ------------------------------------------------------------------
@pytest.mark.parametrize(("aggregation", "expected"), [
    ("each", (3.0, 1.0, 2.0)), ("last", (3.0, 1.0, 2.0)), ("mean", (2.0,)),
    ("max", (3.0,)), ("min", (1.0,)), ("sum", (6.0,)), ("count", (3.0,)),
])
def test_reduce_samples(aggregation, expected):
    assert reduce_samples([3, 1, float("nan"), 2], aggregation) == expected
    assert reduce_samples([], aggregation) is None
    assert reduce_samples([float("nan")], aggregation) is None


def test_reduce_samples_refuses_an_unknown_aggregation():
    with pytest.raises(ValueError, match="unknown aggregation"):
        reduce_samples([1.0], "median")


# -- AlarmState.to_dict / from_dict ---------------------------------------------------
def test_state_round_trip_through_json():
    state, _ = run(alarm(), [HIGH, Datapoint((float("-inf"),)), NONE])
    state = evaluate(alarm(), state, Datapoint((float("inf"),)), 3, 5.0, "m").state
    text = json.dumps(state.to_dict(), allow_nan=False)
    assert json.loads(text)["v"] == 1
    assert AlarmState.from_dict(json.loads(text)) == state
    assert AlarmState.from_dict(AlarmState().to_dict()) == AlarmState()


def _good() -> dict:
    state = evaluate(alarm(), AlarmState(), HIGH, 0, 1.0, "m").state
    return state.to_dict()


def _with(**changes) -> dict:
    data = _good()
    data.update(changes)
    return data


def _with_last(**changes) -> dict:
    data = _good()
    data["last"] = {**data["last"], **changes}
    return data


@pytest.mark.parametrize(("data", "reason"), [
    ([], "expected a JSON object"),
    (_with(v=2), "unsupported format version 2"),
    (_with(v=True), "unsupported format version True"),
    ({k: v for k, v in _good().items() if k != "v"}, "unsupported format version None"),
    ({"v": 1}, "'state' is missing"),
    (_with(state="firing"), "'state' must be one of"),
    (_with(breaches=-1), "'breaches' must be an integer >= 0"),
    (_with(breaches="1"), "'breaches' must be an integer"),
    (_with(clears=True), "'clears' must be an integer"),
    (_with(clears=2), "more than one of breaches, clears, missing"),
    (_with(seq=0), "no transition (seq 0)"),
    (_with(seq=2), "seq 2 but the last transition is 1"),
    (_with(last=None), "seq 1 but the last transition is None"),
    (_with(state="ok"), "does not end in the state"),
    (_with(cycle=-2), "'cycle' must be an integer >= -1"),
    (_with(notified_seq=2), "notified_seq 2 is neither"),
    (_with(evaluated_at=float("inf")), "'evaluated_at' must be a finite number"),
    (_with(owner=3), "'owner' must be a string"),
    (_with(last_value="nan"), "'last_value' must be a number"),
    (_with(last_value=[1]), "'last_value' must be a number"),
    (_with(last="x"), "transition: expected a JSON object"),
    (_with_last(seq=0), "'seq' must be an integer >= 1"),
    (_with_last(previous="alarm"), "'previous' and 'current' are the same state"),
    (_with_last(reason_data=[1]), "'reason_data' must be a JSON object"),
    (_with_last(at="now"), "'at' must be a finite number"),
    (_with_last(cycle=5), "the last transition is newer than the cycle"),
])
def test_from_dict_refuses_what_to_dict_never_writes(data, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        AlarmState.from_dict(data)


def test_from_dict_ignores_unknown_keys_and_defaults_missing_ones():
    data = _with(future="x")
    assert AlarmState.from_dict(data) == AlarmState.from_dict(_good())
    assert AlarmState.from_dict({"v": 1, "state": "insufficient data"}) == AlarmState()


# -- properties over any sequence of datapoints ------------------------------------
POINTS = st.sampled_from([HIGH, LOW, MIXED, NONE, Datapoint((2.0,), error="boom")])


@settings(max_examples=150, derandomize=True, deadline=None)
@given(points=st.lists(POINTS, max_size=30), periods=st.integers(1, 3),
       repeat=st.booleans())
def test_seq_counts_transitions_and_states_change_only_by_transition(points, periods, repeat):
    definition = alarm(evaluation_periods=periods, repeat_actions=repeat)
    state = AlarmState()
    seqs = []
    for cycle, point in enumerate(points):
        outcome = evaluate(definition, state, point, cycle, float(cycle), "m")
        new = outcome.state
        new.check()
        assert sum(1 for n in (new.breaches, new.clears, new.missing) if n) <= 1
        if outcome.transition is None:
            assert (new.state, new.seq, new.last) == (state.state, state.seq, state.last)
            assert outcome.key is None or outcome.key.endswith(f":r{cycle}")
        else:
            assert new.seq == state.seq + 1 == outcome.transition.seq
            assert outcome.transition.previous == state.state != new.state
            assert outcome.key == f"a:{new.seq}"
            seqs.append(new.seq)
        assert new.state in STATES
        assert AlarmState.from_dict(json.loads(json.dumps(new.to_dict()))) == new
        state = new  # never marked notified: every transition stays pending
        assert state.notified_seq in (state.seq, state.seq - 1)
    assert seqs == list(range(1, len(seqs) + 1))


def test_outcome_and_state_are_frozen():
    outcome = evaluate(alarm(), AlarmState(), HIGH, 0, 0.0, "m")
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.state.seq = 5  # type: ignore[misc]
    assert math.isclose(outcome.state.last_value, 5.0)
