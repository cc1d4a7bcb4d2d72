"""Events fed to :class:`~zkpoll.ownership.state.OwnershipState` and the
actions it returns.

Events carry every fact the rules need, clock readings included (``now``
is wall-clock seconds, ``contact_age`` the seconds since the backend surely
heard from this member), so the state machine itself never reads a clock.
Every action names the event that caused it (``cause``) for the log.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zkpoll.ownership.members import MemberInfo

__all__ = [
    "AckHandoff",
    "Action",
    "Announce",
    "ClaimResult",
    "ClaimsRead",
    "Contact",
    "CycleDone",
    "CycleStarted",
    "Event",
    "FenceChanged",
    "GiveUp",
    "HandoffReceived",
    "HandoffSent",
    "JoinRequested",
    "KeysUnreachable",
    "LeaveRequested",
    "MeasureClock",
    "MembershipChanged",
    "Poll",
    "PollKind",
    "ReadClaims",
    "RejoinRequested",
    "ReportChanged",
    "SendHandoff",
    "SessionLost",
    "SessionStarted",
    "Skip",
    "Tick",
    "WriteClaims",
]


@dataclass(frozen=True)
class Contact:
    """Clock readings taken by the feeding thread when the event happened."""

    now: float                   #: wall-clock seconds
    contact_age: float = 0.0     #: seconds since the backend surely heard from us
    session_timeout: float = math.inf  #: the negotiated session timeout
    #: our clock minus the backend's, measured (None: not measured yet)
    offset: float | None = 0.0
    offset_error: float = 0.0    #: half-width of the offset's error bar
    watch_delay: float = 0.0     #: measured worst delay of a membership change to us


# --- events ------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """Base of every event."""

    def describe(self) -> str:
        """A short text naming the event, used as ``cause`` in actions and logs."""
        return type(self).__name__


@dataclass(frozen=True)
class JoinRequested(Event):
    """The agent joins the group with this ``weight``."""

    contact: Contact
    weight: float = 1.0


@dataclass(frozen=True)
class SessionStarted(Event):
    """The coordinator (re-)registers this member in a session as ``member_id``."""

    member_id: str
    contact: Contact

    def describe(self) -> str:
        return f"SessionStarted({self.member_id})"


@dataclass(frozen=True)
class SessionLost(Event):
    """The backend session expired: nothing confirmed in it counts any more."""

    contact: Contact


@dataclass(frozen=True)
class MembershipChanged(Event):
    """A new snapshot of the group's members."""

    members: tuple[MemberInfo, ...]
    contact: Contact

    def describe(self) -> str:
        return f"MembershipChanged({len(self.members)} members)"


@dataclass(frozen=True)
class CycleStarted(Event):
    """Cycle ``index`` of ``source`` starts at ``start`` with these resource keys."""

    source: str
    index: int
    start: float
    interval: float
    keys: tuple[str, ...]
    contact: Contact

    def describe(self) -> str:
        return f"CycleStarted({self.source}#{self.index})"


@dataclass(frozen=True)
class ClaimResult(Event):
    """The backend confirmed (or did not) the claims record of generation ``gen``."""

    source: str
    index: int
    confirmed: bool
    contact: Contact
    error: str = ""

    def describe(self) -> str:
        verdict = "confirmed" if self.confirmed else "refused"
        return f"ClaimResult({self.source}#{self.index} {verdict})"


@dataclass(frozen=True)
class CycleDone(Event):
    """This member finished polling its share of a cycle (``owned`` keys)."""

    source: str
    index: int
    owned: int


@dataclass(frozen=True)
class ClaimsRead(Event):
    """The claims records of vanished members, read once after they vanished
    (``None``: the read failed)."""

    claims: Mapping[str, Mapping[str, Any]] | None
    member_ids: tuple[str, ...]
    contact: Contact
    error: str = ""

    def describe(self) -> str:
        return f"ClaimsRead({', '.join(self.member_ids)})"


@dataclass(frozen=True)
class ReportChanged(Event):
    """What this agent reports about itself for ``zkpoll-status`` (e.g. its
    publishers' health) changed; it travels in the claims record, which
    nobody watches, never in member data (a change there reaches every peer)."""

    report: Mapping[str, Any]


@dataclass(frozen=True)
class KeysUnreachable(Event):
    """Our poll of cycle ``index`` of ``source`` could not reach these keys at the
    connection level and produced nothing for them; ``tried`` are the members that
    could not reach them before us (empty for the owner)."""

    source: str
    index: int
    start: float
    interval: float
    keys: tuple[str, ...]
    tried: tuple[str, ...]
    contact: Contact

    def describe(self) -> str:
        return f"KeysUnreachable({self.source}#{self.index}, {len(self.keys)} keys)"


@dataclass(frozen=True)
class HandoffSent(Event):
    """The backend confirmed (or did not) our handoff of ``keys`` to ``to``."""

    to: str
    source: str
    index: int
    keys: tuple[str, ...]
    confirmed: bool
    contact: Contact
    error: str = ""

    def describe(self) -> str:
        verdict = "confirmed" if self.confirmed else "not confirmed"
        return f"HandoffSent({self.source}#{self.index} to {self.to} {verdict})"


@dataclass(frozen=True)
class HandoffReceived(Event):
    """A handoff from ``sender`` is in our inbox: poll ``keys`` for cycle ``index``."""

    handoff_id: str
    sender: str
    source: str
    index: int
    start: float
    interval: float
    keys: tuple[str, ...]
    tried: tuple[str, ...]
    contact: Contact

    def describe(self) -> str:
        return f"HandoffReceived({self.source}#{self.index} from {self.sender})"


@dataclass(frozen=True)
class Tick(Event):
    """Time passed (feeds resuming a cycle skipped while fenced)."""

    contact: Contact


@dataclass(frozen=True)
class LeaveRequested(Event):
    """Leave the group gracefully (SIGTERM, health withdrawal with ``reason``)."""

    contact: Contact
    reason: str | None = None


@dataclass(frozen=True)
class RejoinRequested(Event):
    """Undo an announced leave (end of a health withdrawal)."""

    contact: Contact


# --- actions -----------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """Base of every action; ``cause`` names the event that produced it."""

    cause: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class Announce(Action):
    """Publish these member-data fields (stable data peers build rings from)."""

    fields: Mapping[str, Any]


@dataclass(frozen=True)
class WriteClaims(Action):
    """Write this member's whole claims record (nobody watches it).

    With ``wait`` the feeder waits for the backend's confirmation and feeds
    :class:`ClaimResult` for (``source``, ``index``).
    """

    record: Mapping[str, Any]
    source: str = ""
    index: int = -1
    wait: bool = False
    timeout: float = 1.0


class PollKind(enum.StrEnum):
    """Why a :class:`Poll` is asked for (its value is what logs and audits print)."""

    CYCLE = "cycle"        #: the member's own share, at the cycle start
    CATCH_UP = "catch_up"  #: inherited from a vanished member, same cycle
    RESUME = "resume"      #: our own share, skipped while fenced, once unfenced
    HANDOFF = "handoff"    #: keys their owner could not reach, handed to us, same cycle


@dataclass(frozen=True)
class Poll(Action):
    """Poll ``keys`` of ``source`` for cycle ``index`` (starting at ``start``), as
    ``kind`` says (:class:`PollKind`)."""

    source: str
    index: int
    start: float
    keys: tuple[str, ...]
    kind: PollKind = PollKind.CYCLE
    confirmed: bool = True
    #: members that could not reach these keys before us (a handoff's chain)
    tried: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skip(Action):
    """Do not poll this cycle's partitioned work (fenced or claim refused)."""

    source: str
    index: int
    reason: str


@dataclass(frozen=True)
class ReadClaims(Action):
    """Read the claims records of these vanished members and feed :class:`ClaimsRead`."""

    member_ids: tuple[str, ...]


@dataclass(frozen=True)
class SendHandoff(Action):
    """Write a handoff of ``keys`` (cycle ``index`` of ``source``) into member ``to``'s
    inbox, wait at most ``timeout`` for the backend's confirmation and feed
    :class:`HandoffSent`."""

    to: str
    source: str
    index: int
    start: float
    interval: float
    keys: tuple[str, ...]
    tried: tuple[str, ...]
    timeout: float = 1.0


@dataclass(frozen=True)
class AckHandoff(Action):
    """Delete these handled handoffs from our inbox."""

    handoff_ids: tuple[str, ...]


@dataclass(frozen=True)
class GiveUp(Action):
    """Nobody polls these keys in this cycle any more: publish what the pollster said
    to publish when a resource is unreachable (once, by the last member tried)."""

    source: str
    index: int
    keys: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class MeasureClock(Action):
    """Take a fresh clock sample from the backend, then feed a :class:`Tick`
    (asked at a cycle start while our clock keeps us out: no claims write,
    which is what samples it otherwise, would ever tell that it is fixed)."""


@dataclass(frozen=True)
class FenceChanged(Action):
    """This member became fenced (``reason``) or unfenced (``None``)."""

    reason: str | None
    keep_last_ring: bool = False
