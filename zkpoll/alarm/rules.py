"""Alarm evaluation rules (Aodh-like), as a pure function of state and datapoint.

:func:`evaluate` takes an alarm's stored :class:`AlarmState`, the
:class:`Datapoint` of one evaluation cycle and returns the
:class:`Outcome` to store and notify.  No I/O, no clock reads, no threads:
the caller gives the cycle index, the wall time and its member id.

* A datapoint **breaches** when every value compares true against the
  threshold (``op(value, threshold)``), is **clear** when none does, and
  is **mixed** otherwise.  NaN values are dropped; no values left, or a
  query error, is **no data**.
* Counters: a breach adds one to ``breaches`` and zeroes the others; a
  clear adds to ``clears``; no data adds to ``missing``; mixed zeroes all
  three (the state is kept).
* ``evaluation_periods`` consecutive breaches target "alarm", clears
  "ok", no data "insufficient data".  A transition (``seq + 1``) happens
  only when the target differs from the current state; its actions are the
  new state's action list, its idempotency key ``<alarm id>:<seq>``.
* ``repeat_actions``: an evaluation that reaches the current state's
  target again notifies that state's actions again, key
  ``<alarm id>:<seq>:r<cycle>``, with previous == current.
* A cycle at or before the stored ``cycle`` is never evaluated again
  (:func:`evaluate` returns None): no replay, whoever asks.
* A transition whose notification was not confirmed (``notified_seq <
  seq``, the evaluator died after storing it) is handed back as
  ``Outcome.resend``: queue it (same key) *before* writing the outcome,
  whose ``notified_seq`` already counts it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Iterable
from typing import Any

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.state import STATES, AlarmState, Transition, json_float

__all__ = [
    "STATES", "AlarmState", "Datapoint", "Outcome", "Transition", "evaluate",
    "mark_notified", "notification_body", "reduce_samples", "transition_body", "transition_key",
]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "le": operator.le, "eq": operator.eq,
    "ne": operator.ne, "ge": operator.ge, "gt": operator.gt,
}


@dataclasses.dataclass(frozen=True)
class Datapoint:
    """The values of one evaluation: None or () is no data; ``error`` a failed query."""

    values: tuple[float, ...] | None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one evaluation decided.

    ``state``: to be written (compare-and-set) with ``cycle``, ``evaluated_at``
    and ``owner`` of this evaluation.  ``transition``: the new transition, or
    None.  ``actions`` / ``key``: the URLs to notify now and the idempotency
    key (set for every transition, and for a repeat that has actions).
    ``breached``: the datapoint's verdict (None: no data or mixed).
    ``reason`` / ``reason_data``: why (Aodh style), for the notification.
    ``resend`` / ``resend_actions`` / ``resend_key``: a stored transition whose
    notification is not confirmed, to queue again before writing ``state``.
    """

    state: AlarmState
    transition: Transition | None
    actions: tuple[str, ...]
    key: str | None
    breached: bool | None
    reason: str = ""
    reason_data: dict[str, Any] = dataclasses.field(default_factory=dict)
    resend: Transition | None = None
    resend_actions: tuple[str, ...] = ()
    resend_key: str | None = None


def transition_key(alarm_id: str, seq: int) -> str:
    """Idempotency key of transition ``seq`` of an alarm."""
    return f"{alarm_id}:{seq}"


def evaluate(alarm: AlarmDefinition, state: AlarmState, point: Datapoint, cycle: int,
             now: float, member: str) -> Outcome | None:
    """Evaluate ``alarm`` for ``cycle`` from its stored ``state``; None if already done.

    ``now`` is the wall time of the evaluation (stored, and the
    transition's ``at``); ``member`` the evaluating member's id.
    """
    if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 0:
        raise ValueError(f"cycle must be an integer >= 0, got {cycle!r}")
    if cycle <= state.cycle:
        return None
    values = _usable(point)
    periods = alarm.evaluation_periods
    breaches = clears = missing = 0
    target: str | None = None
    if not values:
        breached, missing = None, state.missing + 1
        disposition, count = "unknown", missing
        target = "insufficient data" if missing >= periods else None
    else:
        compare = _OPERATORS[alarm.comparison_operator]
        hits = [compare(value, alarm.threshold) for value in values]
        breached = True if all(hits) else False if not any(hits) else None
        if breached:
            breaches = count = state.breaches + 1
            disposition, target = "outside", "alarm" if breaches >= periods else None
        elif breached is False:
            clears = count = state.clears + 1
            disposition, target = "inside", "ok" if clears >= periods else None
        else:
            disposition, count = "unknown", 0
    most_recent = values[-1] if values else None
    reason_data: dict[str, Any] = {"type": "threshold", "disposition": disposition,
                                   "count": count, "most_recent": json_float(most_recent)}
    if point.error is not None:
        reason_data["error"] = point.error
    pending = state.pending
    resend_actions = alarm.actions_for(pending.current) if pending else ()
    notified = state.seq if pending else state.notified_seq  # the resend is queued first
    seq, last, actions, key = state.seq, state.last, (), None
    reason = ""
    if target is not None and target != state.state:
        seq += 1
        reason = _reason("Transition to", target, disposition, count, most_recent, point)
        last = Transition(seq=seq, previous=state.state, current=target, reason=reason,
                          reason_data=reason_data, cycle=cycle, at=now)
        actions, key = alarm.actions_for(target), transition_key(alarm.id, seq)
        if not actions:
            notified = seq  # nothing to send: nothing pending
    elif target is not None and alarm.repeat_actions and alarm.actions_for(target):
        reason = _reason("Remaining as", target, disposition, count, most_recent, point)
        actions = alarm.actions_for(target)
        key = f"{transition_key(alarm.id, seq)}:r{cycle}"
    new_state = AlarmState(
        state=last.current if last else state.state, breaches=breaches, clears=clears,
        missing=missing, seq=seq, last=last, cycle=cycle, evaluated_at=now, owner=member,
        notified_seq=notified, last_value=most_recent)
    return Outcome(
        state=new_state, transition=last if seq != state.seq else None, actions=actions,
        key=key, breached=breached, reason=reason, reason_data=reason_data if reason else {},
        resend=pending if resend_actions else None, resend_actions=resend_actions,
        resend_key=transition_key(alarm.id, pending.seq) if resend_actions and pending else None)


def mark_notified(state: AlarmState, seq: int) -> AlarmState:
    """``state`` once the notifications up to transition ``seq`` are durably queued.

    The value to write (compare-and-set, with the version the outcome was
    written with) after queueing an outcome's notifications.
    """
    return dataclasses.replace(state, notified_seq=max(state.notified_seq, min(seq, state.seq)))


def _usable(point: Datapoint) -> tuple[float, ...]:
    """The values to compare: none on a query error, NaN dropped."""
    if point.error is not None or not point.values:
        return ()
    return tuple(float(v) for v in point.values if not math.isnan(v))


def _reason(prefix: str, target: str, disposition: str, count: int,
            most_recent: float | None, point: Datapoint) -> str:
    if target == "insufficient data":
        text = f"{prefix} {target} due to {count} datapoints are unknown"
        return text + (f" (query failed: {point.error})" if point.error is not None else "")
    return (f"{prefix} {target} due to {count} samples {disposition} threshold, "
            f"most recent: {most_recent}")


def reduce_samples(values: Iterable[float], aggregation: str) -> tuple[float, ...] | None:
    """Reduce the latest samples of a threshold alarm's resources to a datapoint's values.

    ``each`` and ``last`` keep every value as it is (each resource's latest
    sample is compared on its own); ``mean``, ``max``, ``min``, ``sum`` and
    ``count`` give one value.  NaN samples are dropped; no sample left gives
    None (no data), so ``count`` is never 0.
    """
    kept = [float(v) for v in values if not math.isnan(v)]
    if not kept:
        return None
    if aggregation in ("each", "last"):
        return tuple(kept)
    reducers: dict[str, Callable[[list[float]], float]] = {
        "mean": lambda v: math.fsum(v) / len(v), "max": max, "min": min,
        "sum": math.fsum, "count": lambda v: float(len(v)),
    }
    if aggregation not in reducers:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    return (reducers[aggregation](kept),)


def transition_body(alarm: AlarmDefinition, transition: Transition,
                    key: str | None = None) -> dict[str, Any]:
    """Aodh's webhook JSON body for ``transition`` (``key`` defaults to ``<id>:<seq>``)."""
    return {
        "alarm_id": alarm.id, "alarm_name": alarm.name, "severity": alarm.severity,
        "previous": transition.previous, "current": transition.current,
        "reason": transition.reason, "reason_data": dict(transition.reason_data),
        "idempotency_key": key or transition_key(alarm.id, transition.seq),
        "transition_seq": transition.seq,
    }


def notification_body(alarm: AlarmDefinition, outcome: Outcome) -> dict[str, Any]:
    """Aodh's webhook JSON body for ``outcome``'s notification (a transition or a repeat).

    A repeat has ``previous == current``.  ValueError if ``outcome`` has
    nothing to notify (``key`` is None).
    """
    if outcome.key is None:
        raise ValueError("this outcome has no notification")
    if outcome.transition is not None:
        return transition_body(alarm, outcome.transition, outcome.key)
    state = outcome.state
    return {
        "alarm_id": alarm.id, "alarm_name": alarm.name, "severity": alarm.severity,
        "previous": state.state, "current": state.state, "reason": outcome.reason,
        "reason_data": dict(outcome.reason_data), "idempotency_key": outcome.key,
        "transition_seq": state.seq,
    }
