"""Alarm state in the coordination backend: fenced compare-and-set records.

Each alarm's :class:`~zkpoll.alarm.rules.AlarmState` is one record of kind
``alarms.<group>`` keyed by the alarm id.  A write names the version it
read and lands only if nobody wrote in between *and* this member is still
registered in the evaluator group in its current session (the fence): an
evaluator that lost its session, or raced another for the same cycle,
loses the write and drops its result, so a transition is never recorded
twice.  A record that cannot be decoded is logged and treated as absent
(written afresh with version ``None``: create-if-absent fails, so an
unreadable record is never silently overwritten).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zkpoll.alarm.rules import AlarmState
from zkpoll.coordination.base import Coordinator, RecordWrite

__all__ = ["AlarmStore", "Stored", "record_kind"]

LOG = logging.getLogger(__name__)


def record_kind(group: str) -> str:
    """The record kind holding the alarm states of evaluator group ``group``."""
    return f"alarms.{group}"


@dataclass(frozen=True)
class Stored:
    """An alarm state as read, with the backend version to write against."""

    state: AlarmState
    version: Any  # None: no record yet
    broken: bool = False  # a record exists but cannot be decoded


class AlarmStore:
    """Read and compare-and-set the alarm states of one evaluator group."""

    def __init__(self, coordinator: Coordinator, group: str, timeout: float = 10.0) -> None:
        self.coordinator = coordinator
        self.group = group
        self.kind = record_kind(group)
        self.timeout = timeout

    def read(self, alarm_ids: Iterable[str]) -> dict[str, Stored]:
        """The stored state of each alarm (a fresh state for one never written).

        :raises CoordinationError: the backend could not be read in time.
        """
        ids = list(alarm_ids)
        records = self.coordinator.read_records(self.kind, ids, self.timeout) if ids else {}
        out: dict[str, Stored] = {}
        for alarm_id in ids:
            record = records.get(alarm_id)
            if record is None:
                out[alarm_id] = Stored(AlarmState(), None)
                continue
            try:
                out[alarm_id] = Stored(AlarmState.from_dict(record.value), record.version)
            except ValueError as exc:
                LOG.error("alarm %s: its stored state (record %s/%s) cannot be read "
                          "(%s); the alarm is not evaluated until that record is deleted "
                          "from the coordination backend", alarm_id, self.kind, alarm_id, exc)
                out[alarm_id] = Stored(AlarmState(), record.version, broken=True)
        return out

    def write(self, states: Sequence[tuple[str, AlarmState, Any]]) -> dict[str, Any]:
        """Compare-and-set ``(alarm id, state, version read)``; returns, per alarm, the
        new version, or None when the write lost (someone else wrote, or we are fenced).

        :raises CoordinationError: the backend could not be written in time
            (the outcome of each write is then unknown).
        """
        if not states:
            return {}
        writes = [RecordWrite(alarm_id, state.to_dict(), version)
                  for alarm_id, state, version in states]
        results = self.coordinator.write_records(self.kind, writes, self.group, self.timeout)
        return {alarm_id: (None if results.get(alarm_id) is None
                           else results[alarm_id].version)  # type: ignore[union-attr]
                for alarm_id, _, _ in states}

    def all_states(self) -> Mapping[str, Stored]:
        """Every stored state of the group (for ``zkpoll-status``)."""
        ids = self.coordinator.list_records(self.kind, self.timeout)
        return self.read(ids)
