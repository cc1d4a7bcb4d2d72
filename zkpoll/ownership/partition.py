"""This member's share of one group: the threads around the ownership rules.

:class:`Partition` feeds :class:`~zkpoll.ownership.state.OwnershipState`
with events (membership snapshots and session changes from the
coordinator, cycle starts from the agent's source threads, ticks) and
carries out the actions it returns: publishing member data, writing the
claims record and waiting for its confirmation, reading vanished members'
claims, and handing catch-up and resume polls to the agent's callback.
Every decision is the state machine's; every transition is logged with
the event that caused it.

Threads: the state is guarded by one lock, held only while the state
handles an event and the resulting writes are queued (never while waiting
for the backend), so a claims record is built and queued in one step (no
thread can publish a record that lacks another's newer claim).  One worker
thread reads vanished members' claims and feeds ticks while a skipped
cycle may be resumed; one more runs catch-up, resume and handoff polls
(:mod:`~zkpoll.ownership.workers`).  Handoffs from our inbox arrive on the
coordinator's thread (:mod:`~zkpoll.ownership.handoffs`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zkpoll.coordination.base import Coordinator, Member, Membership, SessionState
from zkpoll.coordination.handoff import Handoff
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.ring import HashRing
from zkpoll.exceptions import CoordinationError
from zkpoll.ownership.carrying import (
    LIVE,
    Announcing,
    Queued,
    contact_of,
    measure_clock,
)
from zkpoll.ownership.events import (
    AckHandoff,
    Action,
    Announce,
    ClaimResult,
    ClaimsRead,
    Contact,
    CycleDone,
    CycleStarted,
    Event,
    FenceChanged,
    GiveUp,
    JoinRequested,
    KeysUnreachable,
    LeaveRequested,
    MeasureClock,
    MembershipChanged,
    Poll,
    PollKind,
    ReadClaims,
    RejoinRequested,
    ReportChanged,
    SendHandoff,
    SessionLost,
    SessionStarted,
    Skip,
    Tick,
    WriteClaims,
)
from zkpoll.ownership.handoffs import HandoffIO
from zkpoll.ownership.members import MemberInfo, member_info
from zkpoll.ownership.state import OwnershipConfig, OwnershipState
from zkpoll.ownership.workers import Workers

__all__ = ["Partition", "PollCallback"]

LOG = logging.getLogger(__name__)
#: ``callback(poll)``: poll a catch-up or resume share (on the partition's poll thread).
PollCallback = Callable[[Poll], None]


class Partition:
    """This agent's share of one group's work.

    :param coordinator: a started coordinator
    :param group: the group name, e.g. ``central`` or ``prefix-central``
    :param settle_time: seconds between announcing a join or leave and its
        taking effect; a member polls only while its clock offset against the
        backend is within ``(settle_time - watch delay) / 2``
    :param fence_margin: fraction of the session timeout kept as a margin
    :param keep_last_ring: on backend loss, poll the last slice (duplicates
        possible) instead of fencing (gaps possible)
    :param failover_hops: members tried after the owner for a resource it cannot
        reach (0: no failover; the coordinator must support handoffs)
    """

    def __init__(self, coordinator: Coordinator, group: str, settle_time: float,
                 fence_margin: float = 0.25, keep_last_ring: bool = False,
                 failover_hops: int = 0) -> None:
        self.coordinator = coordinator
        self.group = group
        self.settle_time = settle_time
        self.state = OwnershipState(OwnershipConfig(group, settle_time, fence_margin,
                                                    keep_last_ring,
                                                    failover_hops=failover_hops))
        self.on_poll: PollCallback = lambda poll: None
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None
        self._membership = Membership(group)
        self._infos: dict[str, MemberInfo] = {}  # coordinator thread only: what was
        self._info_sources: dict[str, Member] = {}  # derived from which Member object
        self._cancel_watch: Callable[[], None] | None = None
        self._cancel_inbox: Callable[[], None] | None = None
        self._handoffs = HandoffIO(coordinator, group, self.contact)
        self._threads = Workers(group, self._work, lambda: self.state.wants_ticks,
                                lambda poll: self.on_poll(poll))
        coordinator.set_registration_hook(group, self._on_registration)

    # --- feeding the state ------------------------------------------------------
    def contact(self) -> Contact:
        """The clock readings events carry (the offset: the coordinator's estimate)."""
        return contact_of(self.coordinator)

    def _feed(self, event: Event) -> list[Action]:
        """Handle ``event`` and queue its writes under the lock; return the
        actions for the caller to carry out (see :meth:`_carry_out`)."""
        with self._lock:
            actions = self.state.handle(event)
            notes = self.state.drain_log()
            queued: list[Action] = []
            for action in actions:
                if isinstance(action, WriteClaims):
                    gen = self._put_claims(action.record)
                    queued.append(Queued(action, gen, cause=action.cause))
                else:
                    queued.append(action)
        for level, cause, text in notes:
            LOG.log(level, "%s [%s]", text, cause)
        return queued

    def _put_claims(self, record: Mapping[str, Any]) -> int:
        try:
            return self.coordinator.put_claims(self.group, record)
        except CoordinationError as exc:  # not joined (any more)
            LOG.debug("group %s: claims not written: %s", self.group, exc)
            return -1

    def _carry_out(self, actions: Sequence[Action], announce: Announcing = LIVE,
                   wait: float | None = None) -> list[Poll | Skip | GiveUp]:
        """Do what the state asked (the one executor of every action); return the
        polls, skips and give-ups of the caller's cycle.  ``announce`` says how
        announced member-data fields reach the backend (see :class:`Announcing`)."""
        result: list[Poll | Skip | GiveUp] = []
        fields: dict[str, Any] = {}
        for action in actions:
            if isinstance(action, Queued):
                result += self._confirm(action)
            elif isinstance(action, Poll) and action.kind is not PollKind.CYCLE:
                self._threads.submit_poll(action)
            elif isinstance(action, (Poll, Skip)):
                result.append(action)
                if isinstance(action, Skip):
                    self._threads.post(None)  # the worker ticks until it can resume
            elif isinstance(action, (ReadClaims, MeasureClock)):
                self._threads.post(action)
            elif isinstance(action, SendHandoff):
                result += self._carry_out(self._feed(self._handoffs.send(action)))
            elif isinstance(action, AckHandoff):
                self._handoffs.ack(action)
            elif isinstance(action, GiveUp):
                result.append(action)
            elif isinstance(action, Announce):
                fields.update(action.fields)
            elif isinstance(action, FenceChanged):
                pass  # logged by the state; the record carrying it is queued
        if fields:
            self._announce(fields, announce, wait)
        return result

    def _confirm(self, queued: Queued) -> list[Poll | Skip | GiveUp]:
        write = queued.action
        if not write.wait:
            return []
        confirmed = queued.gen > 0 and self.coordinator.wait_claims(
            self.group, queued.gen, write.timeout)
        error = "" if confirmed else f"not confirmed within {write.timeout:.2f}s"
        return self._carry_out(self._feed(ClaimResult(write.source, write.index, confirmed,
                                                      self.contact(), error)))

    def _announce(self, fields: dict[str, Any], announce: Announcing,
                  wait: float | None) -> None:
        if announce.announced is not None:
            announce.announced.update(fields)
        with self._lock:
            if self._data is None:  # not joined, or left
                return
            self._data.update(fields)
        if not announce.publish:
            return
        try:
            self.coordinator.update(self.group, dict(fields), wait=wait)
        except CoordinationError as exc:
            if announce.raise_errors:
                raise
            LOG.warning("group %s: cannot announce %s: %s", self.group, ", ".join(fields), exc)

    # --- membership of this member ---------------------------------------------
    def join(self, data: Mapping[str, Any], wait: float | None = None) -> float:
        """Announce this member (active ``settle_time`` from now); returns ``active_at``."""
        weight = data.get(MemberData.WEIGHT, 1)
        weight = float(weight) if isinstance(weight, (int, float)) and weight > 0 else 1.0
        with self._lock:
            self._data = dict(data)
        if not self.coordinator.clock_is_wall_clock:
            LOG.warning("group %s: the backend's clock is not a wall clock (%s): clock "
                        "offsets are measured and shown but not enforced; keep the agents "
                        "on NTP", self.group, type(self.coordinator).__name__)
        elif self.coordinator.clock() is None:  # active_at is in the backend's time
            self._measure_clock()
        self._carry_out(self._feed(JoinRequested(self.contact(), weight)), Announcing(publish=False))
        with self._lock:
            published = dict(self._data or data)
            active_at = self.state.own.active_at if self.state.own else time.time()
        self._threads.open()
        if self._cancel_watch is None:
            self._cancel_watch = self.coordinator.watch(self.group, self._on_membership,
                                                        with_data=False)
            self.coordinator.add_state_listener(self._on_session)
            if self.state.config.failover_hops > 0:
                self._cancel_inbox = self.coordinator.watch_inbox(self.group,
                                                                  self._on_handoffs)
        self.coordinator.join(self.group, published, wait=wait)
        return active_at

    def _on_registration(self, group: str, data: dict[str, Any]) -> dict[str, Any]:
        """Every (re-)registration announces a fresh ``active_at`` (coordinator thread)."""
        registering = Announcing(publish=False, announced={})
        self._carry_out(self._feed(SessionStarted(self.coordinator.member_id, self.contact())),
                        registering)
        return dict(data, **registering.announced)

    def _on_session(self, state: SessionState) -> None:
        if state is SessionState.LOST:
            self._carry_out(self._feed(SessionLost(self.contact())))

    def announce_leave(self, wait: float | None = None,
                       extra: Mapping[str, Any] | None = None) -> float:
        """Announce a graceful leave; returns ``leave_at`` (an earlier one is kept)."""
        reason = (extra or {}).get(MemberData.WITHDRAWN)
        self._carry_out(self._feed(LeaveRequested(self.contact(), reason)),
                        Announcing(raise_errors=True), wait)
        with self._lock:
            return self.state.own.leave_at if self.state.own else time.time()

    def rejoin(self, wait: float | None = None) -> float:
        """Undo an announced leave: active again from ``now + settle_time``."""
        self._carry_out(self._feed(RejoinRequested(self.contact())),
                        Announcing(raise_errors=True), wait)
        with self._lock:
            return self.state.own.active_at if self.state.own else time.time()

    def update(self, data: Mapping[str, Any], wait: float | None = None) -> None:
        """Merge ``data`` (rarely changing fields such as ``meters``) into our member data."""
        with self._lock:
            if self._data is None:
                return
            self._data.update(data)
        self.coordinator.update(self.group, dict(data), wait=wait)

    def leave(self, wait: float | None = None) -> None:
        """Delete this member from the group and stop the partition's threads.

        No linger is needed: peers read a vanished member's claims after
        they saw it vanish, and every claim we polled under was confirmed
        before we polled (the backend orders our writes before our delete).
        """
        with self._lock:
            self._data = None
        try:
            self.coordinator.leave(self.group, wait=wait)
        finally:
            self.close()

    def close(self) -> None:
        """Stop watching and stop the threads (idempotent)."""
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None
            self.coordinator.remove_state_listener(self._on_session)
        if self._cancel_inbox is not None:
            self._cancel_inbox()
            self._cancel_inbox = None
        self._threads.close()

    # --- cycles ---------------------------------------------------------------------
    def plan_cycle(self, source: str, index: int, start: float, interval: float,
                   keys: Sequence[str]) -> tuple[str, ...] | None:
        """The keys this member polls in cycle ``index`` of ``source``, after its
        claim is confirmed; None when it must not poll (fenced, claim refused)."""
        event = CycleStarted(source, index, start, interval, tuple(keys), self.contact())
        for outcome in self._carry_out(self._feed(event)):
            if isinstance(outcome, Skip):
                return None
            if isinstance(outcome, Poll) and outcome.source == source \
                    and outcome.index == index:
                return outcome.keys
        return None

    def hand_off(self, source: str, index: int, start: float, interval: float,
                 keys: Sequence[str], tried: Sequence[str] = ()) -> tuple[str, ...]:
        """Hand the ``keys`` we could not reach in cycle ``index`` to their successors
        (``tried``: the members that could not reach them before us); returns the
        keys to give up on here: publish their "unreachable" samples."""
        event = KeysUnreachable(source, index, start, interval, tuple(keys), tuple(tried),
                                self.contact())
        return tuple(key for outcome in self._carry_out(self._feed(event))
                     if isinstance(outcome, GiveUp) for key in outcome.keys)

    def _on_handoffs(self, handoffs: Sequence[Handoff]) -> None:
        """Coordinator thread: feed handoffs from our inbox (their polls run on the
        poll thread)."""
        for handoff in handoffs:
            event = self._handoffs.received(handoff.handoff_id, handoff.sender,
                                            handoff.payload)
            if event is None:
                self._handoffs.ack(AckHandoff((handoff.handoff_id,)))
            else:
                self._carry_out(self._feed(event))

    def report(self, report: Mapping[str, Any]) -> None:
        """Publish what this agent says about itself for ``zkpoll-status`` (in
        the claims record: nobody watches it, so it costs peers nothing)."""
        self._carry_out(self._feed(ReportChanged(report)))

    def cycle_done(self, source: str, index: int, owned: int) -> None:
        """Record a completed cycle (published with the next claims record)."""
        self._feed(CycleDone(source, index, owned))

    def _on_membership(self, membership: Membership) -> None:
        """Coordinator thread: feed the snapshot, never block."""
        with self._lock:
            self._membership = membership
        sources, infos = self._info_sources, self._infos
        fresh: dict[str, MemberInfo] = {}
        for member in membership.members:  # snapshots reuse unchanged Member objects
            member_id = member.member_id
            info = infos.get(member_id)
            fresh[member_id] = info if info is not None and sources.get(member_id) is member \
                else member_info(member)
        self._infos = fresh
        self._info_sources = {m.member_id: m for m in membership.members}
        members = tuple(fresh.values())
        self._carry_out(self._feed(MembershipChanged(members, self.contact())))

    def _work(self, action: Action | None) -> None:
        """Worker thread: one posted action, or a tick (None)."""
        if isinstance(action, MeasureClock):
            measure_clock(self.coordinator, self.group)
        elif isinstance(action, ReadClaims):
            self._carry_out(self._feed(self._read_claims(action)))
        if action is None or self.state.wants_ticks or isinstance(action, MeasureClock):
            self._carry_out(self._feed(Tick(self.contact())))

    def _read_claims(self, action: ReadClaims) -> ClaimsRead:
        timeout = max(0.5, min(5.0, self.coordinator.session_timeout / 2))
        try:
            claims = self.coordinator.read_claims(self.group, action.member_ids, timeout)
        except CoordinationError as exc:
            return ClaimsRead(None, action.member_ids, self.contact(), str(exc))
        return ClaimsRead(claims, action.member_ids, self.contact())

    # --- queries ----------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any] | None:
        """What this member publishes (None when not joined)."""
        with self._lock:
            return None if self._data is None else dict(self._data)

    @property
    def membership(self) -> Membership:
        """The latest snapshot of the group."""
        with self._lock:
            return self._membership

    def ring_at(self, at: float) -> HashRing:
        """The ring for a cycle starting at ``at`` (this member's own data included)."""
        with self._lock:
            return self.state.ring_at(at)

    def owned(self, keys: Sequence[str], at: float) -> list[str]:
        """The keys this member owns for the cycle starting at ``at`` (no claim)."""
        ring = self.ring_at(at)
        me = self.coordinator.member_id
        return ring.owned_by(me, keys) if me in ring else []

    def registered(self) -> bool:
        """True when our own latest snapshot of the group lists this member."""
        with self._lock:
            return self.state.registered

    def fenced(self) -> str | None:
        """Why this member is fenced now (the state's last verdict), or None."""
        with self._lock:
            return self.state.fenced

    def fence_reason(self) -> str | None:
        """Why this member must not poll partitioned work now, or None."""
        contact = self.contact()
        with self._lock:
            return self.state.fence_reason(contact)

    def contact_age(self) -> float:
        """Seconds since the backend surely heard from us (our view's age)."""
        return time.monotonic() - self.coordinator.last_contact
