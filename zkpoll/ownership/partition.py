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
thread ("zkpoll-ownership-<group>") reads vanished members' claims and
feeds ticks while a skipped cycle may be resumed; one more runs catch-up
and resume polls, so a long poll never delays a claims read.  Both start
with their first work item: a member that never skips a cycle nor sees a
member vanish mid-cycle runs neither.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from typing import Any

from zkpoll.coordination.base import Coordinator, Member, Membership, SessionState
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
    Action,
    Announce,
    ClaimResult,
    ClaimsRead,
    Contact,
    CycleDone,
    CycleStarted,
    Event,
    FenceChanged,
    JoinRequested,
    LeaveRequested,
    MeasureClock,
    MembershipChanged,
    Poll,
    PollKind,
    ReadClaims,
    RejoinRequested,
    ReportChanged,
    SessionLost,
    SessionStarted,
    Skip,
    Tick,
    WriteClaims,
)
from zkpoll.ownership.members import MemberInfo, member_info
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

__all__ = ["Partition", "PollCallback"]

LOG = logging.getLogger(__name__)
#: ``callback(poll)``: poll a catch-up or resume share (on the partition's poll thread).
PollCallback = Callable[[Poll], None]
_TICK = 0.05  # seconds between ticks while a skipped cycle may be resumed
_WAKE = ReadClaims(())  # a marker on the work queue: tick now


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
    """

    def __init__(self, coordinator: Coordinator, group: str, settle_time: float,
                 fence_margin: float = 0.25, keep_last_ring: bool = False) -> None:
        self.coordinator = coordinator
        self.group = group
        self.settle_time = settle_time
        self.state = OwnershipState(OwnershipConfig(group, settle_time, fence_margin,
                                                    keep_last_ring))
        self.on_poll: PollCallback = lambda poll: None
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None
        self._membership = Membership(group)
        self._infos: dict[str, MemberInfo] = {}  # coordinator thread only: what was
        self._info_sources: dict[str, Member] = {}  # derived from which Member object
        self._cancel_watch: Callable[[], None] | None = None
        self._work: queue.Queue[Action | None] = queue.Queue()  # ReadClaims, _WAKE, None
        self._worker: threading.Thread | None = None  # started on its first work item
        self._threads_lock = threading.Lock()  # guards _open, _worker, _work
        self._open = False  # joined and not closed: work may start the worker
        self._polls: futures.ThreadPoolExecutor | None = None
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
                   wait: float | None = None) -> list[Poll | Skip]:
        """Do what the state asked (the one executor of every action); return the
        polls and skips of the caller's cycle.  ``announce`` says how announced
        member-data fields reach the backend (see :class:`Announcing`)."""
        result: list[Poll | Skip] = []
        fields: dict[str, Any] = {}
        for action in actions:
            if isinstance(action, Queued):
                result += self._confirm(action)
            elif isinstance(action, Poll) and action.kind is not PollKind.CYCLE:
                self._submit_poll(action)
            elif isinstance(action, (Poll, Skip)):
                result.append(action)
                if isinstance(action, Skip):
                    self._post(_WAKE)  # the worker ticks until it can resume
            elif isinstance(action, (ReadClaims, MeasureClock)):
                self._post(action)
            elif isinstance(action, Announce):
                fields.update(action.fields)
            elif isinstance(action, FenceChanged):
                pass  # logged by the state; the record carrying it is queued
        if fields:
            self._announce(fields, announce, wait)
        return result

    def _confirm(self, queued: Queued) -> list[Poll | Skip]:
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
        self._start_threads()
        if self._cancel_watch is None:
            self._cancel_watch = self.coordinator.watch(self.group, self._on_membership,
                                                        with_data=False)
            self.coordinator.add_state_listener(self._on_session)
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
        with self._threads_lock:
            self._open = False
            worker, work, self._worker = self._worker, self._work, None
            self._work = queue.Queue()
        if worker is not None:
            work.put(None)
            worker.join(5.0)
        if self._polls is not None:
            self._polls.shutdown(wait=False, cancel_futures=True)
            self._polls = None

    # --- cycles ---------------------------------------------------------------------
    def plan_cycle(self, source: str, index: int, start: float, interval: float,
                   keys: Sequence[str]) -> tuple[str, ...] | None:
        """The keys this member polls in cycle ``index`` of ``source``, after its
        claim is confirmed; None when it must not poll (fenced, claim refused)."""
        event = CycleStarted(source, index, start, interval, tuple(keys), self.contact())
        for outcome in self._carry_out(self._feed(event)):
            if isinstance(outcome, Skip):
                return None
            if outcome.source == source and outcome.index == index:
                return outcome.keys
        return None

    def report(self, report: Mapping[str, Any]) -> None:
        """Publish what this agent says about itself for ``zkpoll-status`` (in
        the claims record: nobody watches it, so it costs peers nothing)."""
        self._carry_out(self._feed(ReportChanged(report)))

    def cycle_done(self, source: str, index: int, owned: int) -> None:
        """Record a completed cycle (published with the next claims record)."""
        self._feed(CycleDone(source, index, owned))

    # --- threads ----------------------------------------------------------------------
    def _start_threads(self) -> None:
        """Make room for the threads; each starts with its first work item (most
        members never skip a cycle nor see a member vanish mid-cycle)."""
        with self._threads_lock:
            if not self._open:
                self._open = True
                self._polls = futures.ThreadPoolExecutor(1, f"zkpoll-catchup-{self.group}")

    def _post(self, item: Action) -> None:
        """Hand ``item`` to the worker, starting it if needed (dropped once closed)."""
        with self._threads_lock:
            if not self._open:
                return
            if self._worker is None:
                self._worker = threading.Thread(target=self._work_loop, args=(self._work,),
                                                daemon=True,
                                                name=f"zkpoll-ownership-{self.group}")
                self._worker.start()
            self._work.put(item)

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

    def _work_loop(self, work: queue.Queue[Action | None]) -> None:
        while True:
            try:
                action = work.get(timeout=_TICK if self.state.wants_ticks else None)
            except queue.Empty:
                action = _WAKE
            if action is None:
                return
            if action is _WAKE:
                action = Tick(self.contact())  # type: ignore[assignment]
            try:
                if isinstance(action, Tick):
                    self._carry_out(self._feed(action))
                elif isinstance(action, MeasureClock):
                    self._measure_clock()
                    self._carry_out(self._feed(Tick(self.contact())))
                elif isinstance(action, ReadClaims):
                    self._carry_out(self._feed(self._read_claims(action)))
                if self.state.wants_ticks and not isinstance(action, Tick):
                    self._carry_out(self._feed(Tick(self.contact())))
            except Exception:  # the worker must survive anything
                LOG.exception("group %s: ownership worker error", self.group)

    def _measure_clock(self) -> None:
        measure_clock(self.coordinator, self.group)

    def _read_claims(self, action: ReadClaims) -> ClaimsRead:
        timeout = max(0.5, min(5.0, self.coordinator.session_timeout / 2))
        try:
            claims = self.coordinator.read_claims(self.group, action.member_ids, timeout)
        except CoordinationError as exc:
            return ClaimsRead(None, action.member_ids, self.contact(), str(exc))
        return ClaimsRead(claims, action.member_ids, self.contact())

    def _submit_poll(self, poll: Poll) -> None:
        polls = self._polls
        if polls is None:
            return
        try:
            polls.submit(self._run_poll, poll)
        except RuntimeError:  # shut down meanwhile
            pass

    def _run_poll(self, poll: Poll) -> None:
        try:
            self.on_poll(poll)
        except Exception:
            LOG.exception("group %s: %s poll of source %s failed", self.group, poll.kind,
                          poll.source)

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
