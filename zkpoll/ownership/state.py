"""The ownership rules of one group, as a pure state machine.

:class:`OwnershipState` decides, for this member and one group, which keys
it polls in each cycle, when it must not poll (fencing), when a cycle
needs a write-ahead claim, what it catches up when a member vanishes, and
when it resumes a cycle it skipped.  It does no I/O, starts no thread and
reads no clock: ``handle(event) -> [actions]``, in the style of
dask.distributed's worker state machine.  Threads feed it events (see
:mod:`zkpoll.ownership.events`) and carry out the actions.

The rules (docs/design.md, section 4):

* **Ring per cycle.** The ring for a cycle starting at ``T`` holds the
  members with ``active_at <= T < leave_at``; our own data is taken from
  this state (authoritative before any snapshot shows it).
* **Fencing.** Partitioned work is polled only while the backend heard from
  us within ``(1 - fence_margin) x session_timeout`` and within
  ``settle_time``, while our member is listed and while no member of an
  older protocol shares the group.  ``keep_last_ring`` polls the last slice
  instead (while registered).
* **Write-ahead claim.** Before polling its share of a cycle a member has
  the backend confirm a claims record naming that cycle; unconfirmed, it
  skips (gap, never a duplicate) unless ``keep_last_ring``.
* **Catch-up.** When members vanish, their claims records are read once;
  keys they owned in a cycle still in flight that they never claimed go to
  their successors in the current ring, polled at once.
* **Resume.** A cycle skipped while fenced is polled once unfenced in the
  same session (nobody can have taken it: that needs our session to expire),
  less the keys caught up for that cycle meanwhile.
* **Join and leave** are announced ``settle_time`` ahead (``active_at``,
  ``leave_at``) in the backend's time; every registration, also in a new
  session, announces a fresh ``active_at``; an announced ``leave_at`` is
  never moved later.  Without a clock offset estimate a member announces
  an empty interval (never active) until it has one.
* **Handoff** (:mod:`~zkpoll.ownership.handoff_rules`): a key its poller
  cannot reach is handed, confirmed by the backend, to the next member of
  its ring for that cycle only, up to ``failover_hops`` times; the last
  member tried publishes the "unreachable" sample once.
* **Clocks** (:mod:`~zkpoll.ownership.clock_rule`): a member whose offset
  against the backend is beyond the bound is fenced; a cycle is never
  planned again once claimed (the wall clock went back), nor after it
  ended (the wall clock jumped forward); a claim confirmed while the clock
  went beyond the bound is not polled.
"""

from __future__ import annotations

import logging
import math
import operator
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from zkpoll.coordination.ring import HashRing
from zkpoll.ownership.clock_rule import (
    clock_fence_reason,
)
from zkpoll.ownership.events import (
    Action,
    ClaimResult,
    ClaimsRead,
    Contact,
    CycleDone,
    CycleStarted,
    Event,
    FenceChanged,
    HandoffReceived,
    HandoffSent,
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
    SessionLost,
    SessionStarted,
    Skip,
    Tick,
    WriteClaims,
)
from zkpoll.ownership.handoff_rules import HandoffRules
from zkpoll.ownership.members import PROTOCOL, MemberInfo, RingCache, eligible
from zkpoll.ownership.notes import clock_text, ring_change, some_ids
from zkpoll.ownership.own_membership import OwnMembership
from zkpoll.ownership.record import claimed_cycle, copy_record, empty_record

__all__ = ["PROTOCOL", "OwnershipConfig", "OwnershipState", "claimed_cycle"]

_BY_ID = operator.attrgetter("member_id")  # sort key (C speed: views are big)

_INF = math.inf


@dataclass(frozen=True)
class OwnershipConfig:
    """The rules' parameters for one group."""

    group: str
    settle_time: float
    fence_margin: float = 0.25
    keep_last_ring: bool = False
    claim_timeout: float = 1.0  #: longest wait for a claim's (or a handoff's) confirmation
    failover_hops: int = 0  #: members tried after the owner for an unreachable key


@dataclass
class _Plan:
    """The ring and keys one source's cycle was planned with."""

    index: int
    start: float
    interval: float
    ring: HashRing
    keys: set[str] = field(default_factory=set)
    caught_up: set[str] = field(default_factory=set)  #: inherited keys already polled

    def in_flight(self, now: float) -> bool:
        return self.start <= now < self.start + self.interval


@dataclass(frozen=True)
class _Skipped:
    index: int
    start: float
    interval: float
    keys: tuple[str, ...]
    member_id: str


@dataclass(frozen=True)
class _Pending:
    index: int
    start: float
    keys: tuple[str, ...]
    kind: PollKind
    previous: int | None  # the record's cycle before this claim (restored if refused)
    skipped: _Skipped


class OwnershipState(OwnMembership, HandoffRules):
    """This member's ownership decisions in one group (module docstring)."""

    def __init__(self, config: OwnershipConfig, rings: RingCache | None = None) -> None:
        self.config = config
        self.member_id: str | None = None   #: our id in the current session
        self.own: MemberInfo | None = None  #: what we announce (None: not joined)
        self.withdrawn: str | None = None
        self.view: tuple[MemberInfo, ...] = ()
        self.plans: dict[str, _Plan] = {}
        self.confirmed: dict[str, int] = {}
        self.record: dict[str, Any] = empty_record()
        self.skipped: dict[str, _Skipped] = {}
        self.pending: dict[str, _Pending] = {}
        self.fenced: str | None = None
        self.clock: str = "unmeasured"  #: the clock rule's last verdict (clock_rule.clock_state)
        self.awaiting_clock = False     #: joined, but active_at waits for an offset estimate
        #: the newest cycle started per source, in any session (never planned again)
        self.started: dict[str, int] = {}
        #: keys handed to us per (source, cycle) (a redelivered handoff is ignored)
        self.handed_in: dict[tuple[str, int], set[str]] = {}
        #: (logging level, cause, text) of every transition, newest last
        self.log: deque[tuple[int, str, str]] = deque(maxlen=2000)
        self._new_notes: list[tuple[int, str, str]] = []
        self._rings = rings or RingCache()

    # --- queries -------------------------------------------------------------
    @property
    def registered(self) -> bool:
        """True when the latest snapshot lists our member id."""
        return self.member_id is not None and any(
            m.member_id == self.member_id for m in self.view)

    @property
    def wants_ticks(self) -> bool:
        """True while a skipped cycle may still be resumed."""
        return bool(self.skipped)

    def ring_at(self, at: float) -> HashRing:
        """The ring for a cycle starting at ``at`` (our own data included)."""
        members = eligible((m for m in self.view if m.member_id != self.member_id), at)
        if self.own is not None and self.member_id is not None and self.own.active(at):
            members[self.member_id] = self.own.weight
        return self._rings.get(members)

    def fence_reason(self, contact: Contact) -> str | None:
        """Why this member must not trust its view now, or None."""
        age = contact.contact_age
        lease = contact.session_timeout * (1.0 - self.config.fence_margin)
        if age >= lease:
            since = "yet" if math.isinf(age) else f"for {age:.1f}s"
            return (f"no answer from the coordination backend {since} (lease "
                    f"{lease:.1f}s of a {contact.session_timeout:.1f}s session)")
        settle = self.config.settle_time
        if age >= settle > 0:
            return f"membership view is {age:.1f}s old, more than settle_time {settle:.1f}s"
        clock = clock_fence_reason(contact, settle)
        if clock:
            return clock
        if not self.registered:
            return f"{self.member_id} is not (yet) listed in group {self.config.group}"
        foreign = sorted(m.member_id for m in self.view if m.protocol != PROTOCOL)
        if foreign:
            return (f"group {self.config.group} has {len(foreign)} member(s) of another "
                    f"zkpoll membership protocol ({', '.join(foreign[:3])}); stop them "
                    "first (docs/operations.md, upgrading)")
        return None

    def drain_log(self) -> list[tuple[int, str, str]]:
        """The transitions noted since the last call (for the feeder to log)."""
        notes, self._new_notes = self._new_notes, []
        return notes

    # --- the one entry point -------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        """Apply ``event``; return what the feeder must do, in order."""
        handler = _HANDLERS[type(event)]
        cause = event.describe()
        contact: Contact | None = getattr(event, "contact", None)
        actions: list[Action] = handler(self, event, cause)
        if contact is not None:
            actions += self._clock_check(contact, cause)
        return actions

    # --- the group ------------------------------------------------------------
    def _membership(self, ev: MembershipChanged, cause: str) -> list[Action]:
        before = {m.member_id for m in self.view}
        self.view = tuple(sorted(ev.members, key=_BY_ID))
        after = {m.member_id for m in self.view}
        joined, gone = after - before, before - after - {self.member_id}
        if joined or gone:
            self._note(logging.INFO, cause, f"{len(after)} member(s); joined: "
                       f"{some_ids(joined)}; gone: {some_ids(gone)}")
        now = ev.contact.now
        orphans = sorted(m for m in gone if any(
            plan.in_flight(now) and m in plan.ring for plan in self.plans.values()))
        return [ReadClaims(tuple(orphans), cause=cause)] if orphans else []

    def _claims_read(self, ev: ClaimsRead, cause: str) -> list[Action]:
        if ev.claims is None:
            self._note(logging.ERROR, cause, f"cannot read the claims of "
                       f"{', '.join(ev.member_ids)} ({ev.error}): their share of the cycle "
                       "in flight is not caught up (a gap, never a duplicate)")
            return []
        reason = self.fence_reason(ev.contact)
        if reason:
            self._note(logging.WARNING, cause, f"not catching up while fenced: {reason}")
            return []
        actions: list[Action] = []
        now = ev.contact.now
        for source, plan in sorted(self.plans.items()):
            if not plan.in_flight(now):
                continue
            orphaned = {m for m in ev.member_ids
                        if claimed_cycle(ev.claims.get(m), source) < plan.index}
            current = self.ring_at(plan.start)
            extra: tuple[str, ...] = ()
            if orphaned and len(plan.ring) and len(current):
                extra = tuple(sorted(k for k in plan.keys if plan.ring.owner(k) in orphaned
                                     and current.owner(k) == self.member_id))
            plan.ring = current
            plan.caught_up.update(extra)
            if extra:
                self._note(logging.INFO, cause, f"catch-up: source {source} cycle "
                           f"{plan.index}: {len(extra)} resource(s) inherited from "
                           f"{', '.join(sorted(orphaned))}")
                actions.append(Poll(source, plan.index, plan.start, extra, PollKind.CATCH_UP,
                                    cause=cause))
        return actions

    # --- cycles -------------------------------------------------------------------
    def _cycle_started(self, ev: CycleStarted, cause: str) -> list[Action]:
        stale = self._stale(ev)
        if stale:
            self._note(logging.WARNING, cause, f"source {ev.source} cycle {ev.index}: "
                       f"{stale}; not polling it")
            return [Skip(ev.source, ev.index, stale, cause=cause)]
        reason = self.fence_reason(ev.contact)
        actions = self._note_fence(reason, cause)
        if self.awaiting_clock or clock_fence_reason(ev.contact, self.config.settle_time):
            actions.append(MeasureClock(cause=cause))
        skipped = _Skipped(ev.index, ev.start, ev.interval, ev.keys, self.member_id or "")
        if reason and not (self.config.keep_last_ring and self.registered):
            self.skipped[ev.source] = skipped
            return [*actions, Skip(ev.source, ev.index, reason, cause=cause)]
        plan = self._plan(ev.source, ev.index, ev.start, ev.interval, ev.keys, cause)
        owned = self._owned(plan, ev.keys)
        if reason:  # keep_last_ring: poll the last slice, no claim can be confirmed
            return [*actions, Poll(ev.source, ev.index, ev.start, owned, confirmed=False,
                                   cause=cause)]
        return [*actions, *self._claim(ev.source, skipped, owned, PollKind.CYCLE, ev.contact, cause)]

    def _stale(self, ev: CycleStarted) -> str | None:
        """Why a cycle must not be planned whatever the ring says, or None."""
        started = self.started.get(ev.source, -1)
        if ev.index <= started:
            return (f"cycle {started} started already (the wall clock went back?): "
                    "a cycle is never planned twice")
        self.started[ev.source] = ev.index
        if ev.contact.now >= ev.start + ev.interval:
            return (f"it ended at {clock_text(ev.start + ev.interval)}, before it started "
                    "here (the wall clock jumped forward?)")
        return None

    def _claim(self, source: str, skipped: _Skipped, owned: tuple[str, ...], kind: PollKind,
               contact: Contact, cause: str) -> list[Action]:
        cycles = self.record["cycles"]
        previous = cycles.get(source)
        cycles[source] = skipped.index
        if not owned:  # nothing to poll: a progress report, nobody waits for it
            return [WriteClaims(copy_record(self.record), cause=cause),
                    Poll(source, skipped.index, skipped.start, (), kind, cause=cause)]
        self.pending[source] = _Pending(skipped.index, skipped.start, owned, kind, previous,
                                        skipped)
        lease = contact.session_timeout * (1.0 - self.config.fence_margin) - contact.contact_age
        timeout = max(0.05, min(self.config.claim_timeout, lease))
        return [WriteClaims(copy_record(self.record), source, skipped.index, wait=True,
                            timeout=timeout, cause=cause)]

    def _claim_result(self, ev: ClaimResult, cause: str) -> list[Action]:
        pending = self.pending.get(ev.source)
        if pending is None or pending.index != ev.index:
            return []  # a claim of an older session or cycle
        del self.pending[ev.source]
        clock = clock_fence_reason(ev.contact, self.config.settle_time)
        if ev.confirmed and clock and not self.config.keep_last_ring:
            # The sample this very write gave moved our clock beyond the bound (a
            # step): the claim stands (nobody takes the share), the poll does not.
            self.skipped[ev.source] = pending.skipped
            actions = self._note_fence(clock, cause)
            return [*actions, Skip(ev.source, ev.index, clock, cause=cause)]
        if ev.confirmed:
            self.confirmed[ev.source] = max(ev.index, self.confirmed.get(ev.source, -1))
            if pending.kind is PollKind.RESUME:
                self._note(logging.INFO, cause, f"resuming: source {ev.source} cycle "
                           f"{ev.index}: our {len(pending.keys)} resource(s) skipped while "
                           "fenced")
            return [Poll(ev.source, ev.index, pending.start, pending.keys, pending.kind,
                         cause=cause)]
        if self.config.keep_last_ring and pending.kind is PollKind.CYCLE:
            self._note(logging.WARNING, cause, f"source {ev.source} cycle {ev.index}: the "
                       f"backend did not confirm our claim ({ev.error}); polling anyway "
                       "(on_backend_loss = keep_last_ring)")
            return [Poll(ev.source, ev.index, pending.start, pending.keys, confirmed=False,
                         cause=cause)]
        cycles = self.record["cycles"]
        if cycles.get(ev.source) == ev.index:
            if pending.previous is None:
                del cycles[ev.source]
            else:
                cycles[ev.source] = pending.previous
        self.skipped[ev.source] = pending.skipped
        reason = f"the backend did not confirm our claim ({ev.error or 'no answer'})"
        self._note(logging.WARNING, cause, f"source {ev.source} cycle {ev.index}: {reason}; "
                   "not polling it")
        return [Skip(ev.source, ev.index, reason, cause=cause)]

    def _cycle_done(self, ev: CycleDone, cause: str) -> list[Action]:
        self.record["completed"][ev.source] = ev.index
        self.record["owned"][ev.source] = ev.owned
        return []

    def _report(self, ev: ReportChanged, cause: str) -> list[Action]:
        self.record["report"] = dict(ev.report)
        return [WriteClaims(copy_record(self.record), cause=cause)]

    def _tick(self, ev: Tick, cause: str) -> list[Action]:
        reason = self.fence_reason(ev.contact)
        actions = self._note_fence(reason, cause)
        now = ev.contact.now
        for source, skipped in sorted(self.skipped.items()):
            if skipped.member_id != self.member_id or not (
                    skipped.start <= now < skipped.start + skipped.interval):
                del self.skipped[source]
                continue
            if reason or source in self.pending:
                continue
            del self.skipped[source]
            plan = self._plan(source, skipped.index, skipped.start, skipped.interval,
                              skipped.keys, cause)
            # Keys inherited meanwhile were caught up already: never twice.
            owned = tuple(k for k in self._owned(plan, skipped.keys) if k not in plan.caught_up)
            if owned:
                actions += self._claim(source, skipped, owned, PollKind.RESUME, ev.contact, cause)
        return actions

    # --- helpers -------------------------------------------------------------------
    def _plan(self, source: str, index: int, start: float, interval: float,
              keys: tuple[str, ...], cause: str) -> _Plan:
        ring = self.ring_at(start)
        plan = self.plans.get(source)
        if plan is None or plan.start != start:
            if plan is not None and plan.ring != ring:
                self._note(logging.INFO, cause, ring_change(source, plan.ring, ring))
            plan = self.plans[source] = _Plan(index, start, interval, ring)
        plan.ring = ring
        plan.keys.update(keys)
        return plan

    def _owned(self, plan: _Plan, keys: tuple[str, ...]) -> tuple[str, ...]:
        if self.member_id is None or self.member_id not in plan.ring:
            return ()
        return tuple(plan.ring.owned_by(self.member_id, keys))

    def _note_fence(self, reason: str | None, cause: str) -> list[Action]:
        if bool(reason) == bool(self.fenced):
            self.fenced = reason
            return []
        self.fenced = self.record["fenced"] = reason
        if reason:
            what = ("keeping the last ring (on_backend_loss = keep_last_ring)"
                    if self.config.keep_last_ring else "not polling partitioned work")
            self._note(logging.WARNING, cause, f"FENCED: {reason}; {what}")
        else:
            self._note(logging.INFO, cause, "unfenced: polling partitioned work again")
        return [FenceChanged(reason, self.config.keep_last_ring, cause=cause),
                WriteClaims(copy_record(self.record), cause=cause)]

    def _note(self, level: int, cause: str, text: str) -> None:
        entry = (level, cause, f"group {self.config.group}: {text}")
        self.log.append(entry)
        self._new_notes.append(entry)


_HANDLERS: dict[type[Event], Any] = {
    JoinRequested: OwnershipState._join,
    SessionStarted: OwnershipState._session_started,
    SessionLost: OwnershipState._session_lost,
    LeaveRequested: OwnershipState._leave,
    RejoinRequested: OwnershipState._rejoin,
    MembershipChanged: OwnershipState._membership,
    ClaimsRead: OwnershipState._claims_read,
    CycleStarted: OwnershipState._cycle_started,
    ClaimResult: OwnershipState._claim_result,
    CycleDone: OwnershipState._cycle_done,
    Tick: OwnershipState._tick,
    ReportChanged: OwnershipState._report,
    KeysUnreachable: OwnershipState._keys_unreachable,
    HandoffSent: OwnershipState._handoff_sent,
    HandoffReceived: OwnershipState._handoff_received,
}
