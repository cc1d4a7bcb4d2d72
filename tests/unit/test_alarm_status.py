"""``zkpoll-status alarms``' rows: owners, never-evaluated alarms and LATE ones (pure)."""

from __future__ import annotations

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.state import AlarmState, Transition
from zkpoll.coordination import Member, Membership
from zkpoll.status import Severity
from zkpoll.status.alarms import STALE_INTERVALS, alarm_rows

NOW = 1_800_000_000.0


def definition(alarm_id: str, interval: int = 60, enabled: bool = True) -> AlarmDefinition:
    return AlarmDefinition(id=alarm_id, type="prometheus", query="up", threshold=1,
                           evaluation_interval=interval, enabled=enabled)


def group(*ids: str) -> Membership:
    return Membership("alarm", tuple(Member(i, {"active_at": 0.0, "weight": 1.0})
                                     for i in ids))


def test_rows_carry_state_transition_and_current_owner() -> None:
    last = Transition(3, "ok", "alarm", "why", {}, 41, NOW - 30)
    state = AlarmState(state="alarm", seq=3, last=last, cycle=42, evaluated_at=NOW - 30,
                       owner="m1")
    rows, problems = alarm_rows({"a": state}, {"a": definition("a")}, group("m1", "m2"), NOW)
    (row,) = rows
    assert (row.state, row.seq, row.last_transition, row.cycle, row.evaluated_by) == \
        ("alarm", 3, "ok -> alarm", 42, "m1")
    assert row.owner in {"m1", "m2"} and row.interval == 60 and not row.stale
    assert problems == []


def test_an_alarm_not_evaluated_for_several_intervals_is_late() -> None:
    old = AlarmState(state="ok", cycle=1, evaluated_at=NOW - (STALE_INTERVALS + 1) * 60 - 10)
    fresh = AlarmState(state="ok", cycle=2, evaluated_at=NOW - 61)
    rows, problems = alarm_rows({"old": old, "fresh": fresh},
                                {"old": definition("old"), "fresh": definition("fresh")},
                                group("m1"), NOW)
    assert {r.alarm_id: r.stale for r in rows} == {"fresh": False, "old": True}
    assert [p.severity for p in problems] == [Severity.WARNING]
    assert "alarm old: not evaluated" in problems[0].message


def test_defined_never_evaluated_removed_and_disabled_alarms() -> None:
    stored = {"gone": AlarmState(state="ok", cycle=1, evaluated_at=NOW - 10_000)}
    definitions = {"new": definition("new"), "off": definition("off", enabled=False)}
    rows, problems = alarm_rows(stored, definitions, group("m1"), NOW)
    by_id = {r.alarm_id: r for r in rows}
    assert by_id["new"].state is None and by_id["new"].owner == "m1"
    assert by_id["gone"].interval is None and not by_id["gone"].stale  # no longer defined
    assert by_id["off"].owner is None and by_id["off"].interval is None
    assert problems == []


def test_without_members_nobody_owns() -> None:
    rows, _ = alarm_rows({}, {"a": definition("a")}, group(), NOW)
    assert rows[0].owner is None
