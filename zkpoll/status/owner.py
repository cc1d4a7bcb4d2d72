"""``zkpoll-status owner RESOURCE``: who polls a resource now and in the next cycle (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from zkpoll.coordination import HashRing, Membership
from zkpoll.ownership import eligible_members, ring_epoch
from zkpoll.service.cycles import cycle_index, cycle_start, source_offset

__all__ = ["OwnerReport", "find_owner"]


@dataclass(frozen=True)
class OwnerReport:
    """Who polls a resource of one source of one group."""

    group: str
    source: str
    interval: float
    cycle: int
    cycle_start: float
    owner: str | None
    ring_epoch: str
    next_start: float
    next_owner: str | None
    next_ring_epoch: str
    successor: str | None        #: who takes it over if ``owner`` dies


def find_owner(membership: Membership, resource: str, source: str,
               interval: float, now: float) -> OwnerReport:
    """Owner of ``resource`` in the cycle in flight at ``now`` and in the next one."""
    offset = source_offset(source, interval)
    index = cycle_index(now, interval, offset)
    start, following = cycle_start(index, interval, offset), cycle_start(index + 1, interval,
                                                                          offset)
    eligible, eligible_next = (eligible_members(membership, t) for t in (start, following))
    ring = HashRing(eligible)
    ring_next = ring if eligible_next == eligible else HashRing(eligible_next)
    owner = ring.owner(resource) if len(ring) else None
    return OwnerReport(
        membership.group, source, interval, index, start, owner,
        ring_epoch(membership, start), following,
        ring_next.owner(resource) if len(ring_next) else None,
        ring_epoch(membership, following),
        ring.successor(resource, [owner]) if owner else None)
