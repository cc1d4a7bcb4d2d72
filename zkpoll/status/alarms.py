"""``zkpoll-status alarms``: every alarm's stored state, who owns it now, and
whether it is evaluated on time (pure: built from what was read)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.rules import AlarmState
from zkpoll.coordination import Membership
from zkpoll.service.cycles import source_offset
from zkpoll.status.owner import find_owner
from zkpoll.status.report import Problem, Severity

__all__ = ["STALE_INTERVALS", "AlarmRow", "alarm_rows"]

#: An alarm not evaluated for this many intervals is reported (WARNING).
STALE_INTERVALS = 3


@dataclass(frozen=True)
class AlarmRow:
    """One alarm as ``zkpoll-status alarms`` shows it."""

    alarm_id: str
    name: str | None
    state: str | None            #: None: never evaluated
    seq: int | None              #: transitions so far
    last_transition: str | None  #: "ok -> alarm"
    transition_at: float | None
    cycle: int | None            #: last evaluated cycle
    evaluated_at: float | None
    evaluated_by: str | None
    interval: int | None         #: None: not in the definitions read
    owner: str | None            #: the ring owner in the cycle in flight
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alarm_rows(states: Mapping[str, AlarmState], definitions: Mapping[str, AlarmDefinition],
               membership: Membership | None, now: float
               ) -> tuple[list[AlarmRow], list[Problem]]:
    """A row per alarm stored or defined; problems for alarms evaluated late."""
    rows: list[AlarmRow] = []
    problems: list[Problem] = []
    group = membership.group if membership else None
    for alarm_id in sorted(set(states) | set(definitions)):
        state, alarm = states.get(alarm_id), definitions.get(alarm_id)
        interval = alarm.evaluation_interval if alarm and alarm.enabled else None
        owner = None
        if interval is not None and membership is not None:
            source = f"alarms-{interval}s"
            owner = find_owner(membership, alarm_id, source, float(interval), now).owner
        stale = False
        if interval is not None:
            since = state.evaluated_at if state and state.evaluated_at else None
            limit = STALE_INTERVALS * interval + source_offset(f"alarms-{interval}s", interval)
            stale = since is not None and now - since > limit
            if stale:
                problems.append(Problem(
                    Severity.WARNING, f"alarm {alarm_id}: not evaluated for "
                    f"{now - since:.0f}s ({STALE_INTERVALS}+ intervals of {interval}s)",
                    group=group, member=owner))
        last = state.last if state else None
        rows.append(AlarmRow(
            alarm_id, alarm.name if alarm else None, state.state if state else None,
            state.seq if state else None,
            f"{last.previous} -> {last.current}" if last else None,
            last.at if last else None, state.cycle if state else None,
            state.evaluated_at if state else None, state.owner if state else None,
            interval, owner, stale))
    return rows, problems
