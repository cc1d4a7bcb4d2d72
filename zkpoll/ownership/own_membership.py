"""This member's own membership in one group: joins, registrations, leaves,
rejoins and the clock rule's part in them (a mixin of
:class:`~zkpoll.ownership.state.OwnershipState`; pure, like it).

Every announced instant is in the backend's time
(:mod:`~zkpoll.ownership.clock_rule`); a member whose clock is not measured,
or beyond the bound, announces an empty interval and joins once it is good.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import replace
from typing import Any

from zkpoll.coordination.member_data import MemberData
from zkpoll.ownership.clock_rule import (
    BEYOND,
    WARN,
    backend_now,
    clock_bound,
    clock_state,
    offset_text,
)
from zkpoll.ownership.events import (
    Action,
    Announce,
    Contact,
    JoinRequested,
    LeaveRequested,
    RejoinRequested,
    SessionLost,
    SessionStarted,
)
from zkpoll.ownership.members import MemberInfo
from zkpoll.ownership.notes import clock_text
from zkpoll.ownership.record import empty_record

__all__ = ["OwnMembership"]

_INF = math.inf


class OwnMembership:
    """The handlers of this member's own membership events (see module docstring)."""

    # Set by OwnershipState.__init__:
    config: Any
    member_id: str | None
    own: MemberInfo | None
    withdrawn: str | None
    record: dict[str, Any]
    confirmed: dict[str, int]
    pending: dict[str, Any]
    skipped: dict[str, Any]
    clock: str
    awaiting_clock: bool
    log: deque[tuple[int, str, str]]

    def _note(self, level: int, cause: str, text: str) -> None:
        raise NotImplementedError

    # --- membership of this member -------------------------------------------
    def _join(self, ev: JoinRequested, cause: str) -> list[Action]:
        active_at = self._announced_at(ev.contact)
        self.withdrawn = None
        if active_at is None:
            self.own = MemberInfo(self.member_id or "", ev.weight, _INF, _INF)
            self.awaiting_clock = True
            self._note(logging.WARNING, cause, "joining, but not active until the clock "
                       "offset against the backend is measured and within the bound")
            return [Announce({**self._inactive(ev.contact), MemberData.WEIGHT: ev.weight},
                             cause=cause)]
        self.own = MemberInfo(self.member_id or "", ev.weight, active_at, _INF)
        self._note(logging.INFO, cause, f"joining: active from {clock_text(active_at)}")
        return [Announce({MemberData.ACTIVE_AT: active_at, MemberData.LEAVE_AT: None,
                          MemberData.WEIGHT: ev.weight},
                         cause=cause)]

    def _announced_at(self, contact: Contact) -> float | None:
        """``settle_time`` from the backend's now; None while our clock may not join a
        ring (offset not measured, or beyond the bound: a join waits for a good clock)."""
        now = backend_now(contact)
        if now is None or clock_state(contact, self.config.settle_time) == BEYOND:
            return None
        return now + self.config.settle_time

    @staticmethod
    def _inactive(contact: Contact) -> dict[str, Any]:
        """Member-data fields of a member in no ring (an empty active interval)."""
        return {MemberData.ACTIVE_AT: contact.now, MemberData.LEAVE_AT: contact.now}

    def _session_started(self, ev: SessionStarted, cause: str) -> list[Action]:
        if ev.member_id != self.member_id:
            # Claims and skips belong to a session: the new id starts clean.
            self.member_id = ev.member_id
            self.confirmed.clear()
            self.pending.clear()
            self.skipped.clear()
            self.record = dict(empty_record(), report=self.record.get("report", {}))
        if self.own is None:
            return []
        fresh = self._announced_at(ev.contact)
        if self.awaiting_clock or fresh is None:
            self.own = replace(self.own, member_id=ev.member_id, active_at=_INF)
            self.awaiting_clock = self.own.leave_at == _INF
            self._note(logging.INFO, cause, f"registering as {ev.member_id}: not active "
                       "until the clock offset against the backend is measured and within "
                       "the bound")
            return [Announce(self._inactive(ev.contact), cause=cause)]
        active_at = max(self.own.active_at, fresh)
        self.own = replace(self.own, member_id=ev.member_id, active_at=active_at)
        self._note(logging.INFO, cause, f"registering as {ev.member_id}: active from "
                   f"{clock_text(active_at)}")
        return [Announce({MemberData.ACTIVE_AT: active_at}, cause=cause)]

    def _session_lost(self, ev: SessionLost, cause: str) -> list[Action]:
        self.confirmed.clear()
        self._note(logging.WARNING, cause, "session lost: no claim of it counts any more")
        return []

    def _leave(self, ev: LeaveRequested, cause: str) -> list[Action]:
        if self.own is None:
            return []
        self.awaiting_clock = False
        now = backend_now(ev.contact)  # unmeasured: never active, any leave_at will do
        leave_at = min(self.own.leave_at,
                       ev.contact.now if now is None else now + self.config.settle_time)
        self.own = replace(self.own, leave_at=leave_at)
        fields: dict[str, Any] = {MemberData.LEAVE_AT: leave_at}
        if ev.reason:
            self.withdrawn = fields[MemberData.WITHDRAWN] = ev.reason
        self._note(logging.INFO, cause, f"leaving: last cycle starts before {clock_text(leave_at)}"
                   + (f" (withdrawn: {ev.reason})" if ev.reason else ""))
        return [Announce(fields, cause=cause)]

    def _rejoin(self, ev: RejoinRequested, cause: str) -> list[Action]:
        if self.own is None:
            return []
        self.withdrawn = None
        active_at = self._announced_at(ev.contact)
        if active_at is None:
            self.own = replace(self.own, active_at=_INF, leave_at=_INF)
            self.awaiting_clock = True
            self._note(logging.INFO, cause, "rejoining once the clock offset against the "
                       "backend is measured")
            return [Announce({**self._inactive(ev.contact), MemberData.WITHDRAWN: None},
                             cause=cause)]
        self.own = replace(self.own, active_at=active_at, leave_at=_INF)
        self._note(logging.INFO, cause, f"rejoining: active from {clock_text(active_at)}")
        return [Announce({MemberData.ACTIVE_AT: active_at, MemberData.LEAVE_AT: None,
                          MemberData.WITHDRAWN: None},
                         cause=cause)]

    # --- the clock rule ------------------------------------------------------------------
    def _clock_check(self, contact: Contact, cause: str) -> list[Action]:
        """Note the clock verdict of ``contact`` (a WARNING above half the bound; the
        fence line says when it is beyond), keep it for the claims record, and
        announce a join that waited for the first offset estimate."""
        settle = self.config.settle_time
        state = clock_state(contact, settle)
        if contact.offset is not None:
            self.record["clock"] = {
                "offset": round(contact.offset, 6), "error": round(contact.offset_error, 6),
                "bound": round(clock_bound(settle, contact.watch_delay), 6),
                "watch_delay": round(contact.watch_delay, 6)}
        previous, self.clock = self.clock, state
        if state != previous and state == WARN:
            self._note(logging.WARNING, cause, f"{offset_text(contact, settle)}: above half "
                       "the bound (fix this host's time synchronisation before it is fenced)")
        elif state != previous and previous in (WARN, BEYOND) and state != BEYOND:
            self._note(logging.INFO, cause, f"{offset_text(contact, settle)}: "
                       + ("within half the bound again" if previous == WARN
                          else "within the bound again"))
        own, active_at = self.own, self._announced_at(contact)
        if not self.awaiting_clock or own is None or active_at is None:
            return []
        self.awaiting_clock = False
        self.own = replace(own, active_at=active_at, leave_at=_INF)
        self._note(logging.INFO, cause, f"clock offset {contact.offset:+.3f}s, within the bound: "
                   f"active from {clock_text(active_at)}")
        return [Announce({MemberData.ACTIVE_AT: active_at, MemberData.LEAVE_AT: None},
                         cause=cause)]
