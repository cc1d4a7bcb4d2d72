"""ZooKeeper member znode names that carry what a ring needs.

A member's znode is named ``<member-id>!<rev>!<active_at ms>!<leave_at ms>!<weight>``
(``leave_at`` empty when none).  Listing the group's children is then
enough to build rings: no member's data has to be read, and a change of
those fields (an announced leave, a withdrawal, a rejoin) is a new name,
which the one children watch per group reports.  ``rev`` grows with every
publication, so a cached copy of a member's full data is valid exactly as
long as its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from zkpoll.coordination.member_data import MemberData

__all__ = ["RING_FIELDS", "member_name", "parse_member_name"]

SEP = "!"
#: The member-data fields carried by the name.
RING_FIELDS = (MemberData.ACTIVE_AT, MemberData.LEAVE_AT, MemberData.WEIGHT)


def _ms(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(round(value * 1000))
    return ""


def member_name(member_id: str, rev: int, data: Mapping[str, Any]) -> str:
    """The znode name of ``member_id``'s ``rev``-th publication of ``data``."""
    weight = data.get(MemberData.WEIGHT, 1)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
        weight = 1
    return SEP.join((member_id, str(rev), _ms(data.get(MemberData.ACTIVE_AT)) or "0",
                     _ms(data.get(MemberData.LEAVE_AT)), f"{float(weight):g}"))


def parse_member_name(name: str) -> tuple[str, int, dict[str, Any]] | None:
    """``(member id, rev, ring fields)`` of a name, or None for a foreign name
    (a member of an older protocol, or anything else)."""
    parts = name.rsplit(SEP, 4)
    if len(parts) != 5 or not parts[0]:
        return None
    member_id, rev, active, leave, weight = parts
    try:
        fields: dict[str, Any] = {
            MemberData.ACTIVE_AT: int(active) / 1000.0,
            MemberData.LEAVE_AT: int(leave) / 1000.0 if leave else None,
            MemberData.WEIGHT: float(weight),
        }
        revision = int(rev)
    except ValueError:
        return None
    ring_weight = fields[MemberData.WEIGHT]
    if revision < 0 or not math.isfinite(ring_weight) or ring_weight <= 0:
        return None
    return member_id, revision, fields
