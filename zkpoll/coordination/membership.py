"""Snapshots of a group: :class:`Member` and :class:`Membership` (immutable).

A backend builds a new :class:`Membership` for every change and hands it to
the watchers whole; nobody mutates one, so any thread may read it.
"""

from __future__ import annotations

import logging
import math
import operator
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.ring import HashRing

__all__ = ["Member", "Membership", "log_change"]

_BY_ID = operator.attrgetter("member_id")  # sort key (C speed: views are big)


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a group as published in the backend."""

    member_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", types.MappingProxyType(dict(self.data)))

    @property
    def fields(self) -> MemberData:
        """The typed view of :attr:`data`, parsed at each access (keep it when reading
        several fields).  Not cached on the member: a member process holds every
        peer's snapshot, and the ring needs only a few fields (:meth:`MemberData.value`)."""
        return MemberData.parse(self.data)

    @property
    def weight(self) -> float:
        """The member's ring weight (``data["weight"]``, default 1)."""
        weight = self.data.get(MemberData.WEIGHT, 1)  # hot: rings are built from it
        return float(weight) if isinstance(weight, (int, float)) and weight > 0 \
            and math.isfinite(weight) else 1.0


@dataclass(frozen=True)
class Membership:
    """An immutable snapshot of a group.

    ``version`` increases by one for every snapshot this process builds for
    the group; it orders snapshots, it is not shared between processes.
    """

    group: str
    members: tuple[Member, ...] = ()
    version: int = 0

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.members, key=_BY_ID))
        object.__setattr__(self, "members", ordered)
        object.__setattr__(self, "_ring", None)

    @property
    def member_ids(self) -> tuple[str, ...]:
        """Member ids, sorted."""
        ids = self.__dict__.get("_ids")
        if ids is None:  # built once: views are asked for their ids often
            ids = tuple(m.member_id for m in self.members)
            object.__setattr__(self, "_ids", ids)
        return ids

    def get(self, member_id: str) -> Member | None:
        """Return the member with this id, or None."""
        for member in self.members:
            if member.member_id == member_id:
                return member
        return None

    def ring(self) -> HashRing:
        """The hash ring over every member of the snapshot (built once)."""
        ring = self.__dict__["_ring"]
        if ring is None:
            ring = HashRing({m.member_id: m.weight for m in self.members})
            object.__setattr__(self, "_ring", ring)
        return ring

    def same_members(self, other: Membership) -> bool:
        """True when both snapshots hold the same ids with the same data."""
        return self.members == other.members



def log_change(log: logging.Logger, previous: Membership, snapshot: Membership) -> None:
    """One bounded log line per changed snapshot (at most 5 ids per list)."""
    before, after = set(previous.member_ids), set(snapshot.member_ids)
    joined, gone = sorted(after - before), sorted(before - after)
    if not joined and not gone:
        log.debug("group %s: member data changed", snapshot.group)
        return

    def some(ids: list[str]) -> str:
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        return (", ".join(ids[:5]) + more) or "-"
    log.info("group %s: %d member(s) (was %d); joined: %s; gone: %s", snapshot.group,
             len(after), len(before), some(joined), some(gone))
