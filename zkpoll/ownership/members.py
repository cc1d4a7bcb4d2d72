"""Who is in the ring for a cycle: member views, eligibility and ring epochs.

Pure functions of membership data; no I/O.  The ring for a cycle starting
at ``T`` holds the members with ``active_at <= T < leave_at``.  Every agent
evaluates the same rule on the same member data, so all agree on the owner
of every key for every cycle, as long as ``settle_time`` exceeds the worst
delay with which a membership change reaches a member plus the clock skew.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mmh3

from zkpoll.coordination.base import PROTOCOL, Member, Membership
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.ring import SEED, HashRing

__all__ = ["PROTOCOL", "MemberInfo", "RingCache", "eligible", "eligible_members", "member_info",
           "member_meters", "ring_epoch"]

_INF = math.inf


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """What the ring needs of one member."""

    member_id: str
    weight: float = 1.0
    active_at: float = 0.0
    leave_at: float = _INF
    protocol: int = PROTOCOL

    def active(self, at: float) -> bool:
        """True when this member is in the ring of a cycle starting at ``at``."""
        return self.active_at <= at < self.leave_at


def _time(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def member_info(member: Member) -> MemberInfo:
    """The ring view of a published member (malformed fields take their defaults)."""
    data = member.data  # hot (every peer, every change): the fields read directly
    protocol = data.get(MemberData.PROTOCOL)
    return MemberInfo(member.member_id, member.weight,
                      _time(data.get(MemberData.ACTIVE_AT), 0.0),
                      _time(data.get(MemberData.LEAVE_AT), _INF),
                      protocol if isinstance(protocol, int) and not isinstance(protocol, bool)
                      else 1)


def eligible(members: Iterable[MemberInfo], at: float) -> dict[str, float]:
    """Member id to weight of the members in the ring of a cycle starting at ``at``."""
    return {m.member_id: m.weight for m in members if m.active(at)}


def eligible_members(membership: Membership, at: float) -> dict[str, float]:
    """:func:`eligible` over a coordinator snapshot."""
    return eligible((member_info(m) for m in membership.members), at)


def ring_epoch(members: Membership | Iterable[MemberInfo], at: float) -> str:
    """A short id of the ring in force at ``at``, the same in every process."""
    infos = ([member_info(m) for m in members.members] if isinstance(members, Membership)
             else members)
    text = ";".join(f"{m}={w:g}" for m, w in sorted(eligible(infos, at).items()))
    return format(mmh3.hash(text, SEED, signed=False), "08x")


class RingCache:
    """Rings by member set: building a Maglev table costs milliseconds, and
    consecutive cycles almost always use the same set."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._rings: dict[frozenset[tuple[str, float]], HashRing] = {}

    def get(self, members: Mapping[str, float]) -> HashRing:
        """The ring over ``members`` (member id -> weight)."""
        key = frozenset(members.items())
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) >= self._size:
                self._rings.pop(next(iter(self._rings)))
            ring = self._rings[key] = HashRing(members)
        return ring


def member_meters(membership: Membership, namespace: str) -> set[str]:
    """Meters polled by the members of ``membership`` in ``namespace``."""
    meters: set[str] = set()
    for member in membership.members:
        fields = member.fields
        if fields.namespace == namespace:
            for names in fields.meters.values():
                meters.update(names)
    return meters
