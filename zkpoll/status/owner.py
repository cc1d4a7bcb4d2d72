"""``zkpoll-status owner RESOURCE``: who polls a resource now and in the next cycle,
and who polled it in the last one (through a handoff or not, from the claims
records' ``handoffs``) (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from zkpoll.coordination import HashRing, Membership
from zkpoll.coordination.member_data import MemberData
from zkpoll.ownership import eligible_members, ring_epoch
from zkpoll.service.cycles import cycle_index, cycle_start, source_offset

__all__ = ["OwnerReport", "find_owner", "last_poll"]


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
    last_cycle: int = -1
    last_polled_by: str | None = None  #: who polled it in ``last_cycle`` (as recorded)
    last_how: str = ""                 #: "owner", or the handoff chain and why


def last_poll(membership: Membership, resource: str, source: str, index: int,
              owner: str | None) -> tuple[str | None, str]:
    """Who polled ``resource`` in cycle ``index``: its ``owner``, unless the claims
    records say it handed it on (followed member by member) or gave up."""
    records = {m.member_id: (MemberData.value(m.data, MemberData.HANDOFFS) or {}).get(source)
               for m in membership.members}
    holder, how, seen = owner, "owner", set()
    while holder is not None and holder not in seen:
        seen.add(holder)
        record = records.get(holder)
        if not isinstance(record, dict) or record.get("cycle") != index:
            break
        gave_up = record.get("gave_up") or {}
        if resource in gave_up:
            return holder, f"{how}; unreachable from every member tried: {gave_up[resource]}"
        handed_to = (record.get("out") or {}).get(resource)
        if not handed_to:
            break
        how = (f"handoff from {holder} (it could not reach it)" if how == "owner"
               else f"{how}, then from {holder}")
        holder = handed_to
    return holder, how


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
    last_ring = HashRing(eligible_members(membership, cycle_start(index - 1, interval, offset)))
    last_owner = last_ring.owner(resource) if len(last_ring) else None
    polled_by, how = last_poll(membership, resource, source, index - 1, last_owner)
    return OwnerReport(
        membership.group, source, interval, index, start, owner,
        ring_epoch(membership, start), following,
        ring_next.owner(resource) if len(ring_next) else None,
        ring_epoch(membership, following),
        ring.successor(resource, [owner]) if owner else None,
        index - 1, polled_by, how)
