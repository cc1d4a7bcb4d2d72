"""Coordination: group membership backends, session states and the hash ring.

This layer knows nothing of polling.  Public API::

    get_coordinator(conf)        -> Coordinator (standalone without backend_url)
    Coordinator.join/update/leave/watch/get_members/get_groups
    Coordinator.read_records/write_records/list_records/delete_records
    Coordinator.clock/measure_clock/watch_delay   the backend's clock, ClockEstimate
    Coordinator.send_handoff/watch_inbox/ack_handoffs   handoff inboxes, Handoff
    Membership, Member, SessionState, HashRing, Record, RecordWrite
"""

from zkpoll.coordination.base import (
    Coordinator,
    Member,
    Membership,
    Record,
    RecordWrite,
    SessionState,
)
from zkpoll.coordination.clock import ClockEstimate
from zkpoll.coordination.handoff import Handoff, HandoffCallback
from zkpoll.coordination.loader import get_coordinator, make_member_id, register_opts
from zkpoll.coordination.ring import HashRing
from zkpoll.coordination.url import BackendURL, parse_backend_url

__all__ = [
    "BackendURL",
    "ClockEstimate",
    "Coordinator",
    "Handoff",
    "HandoffCallback",
    "HashRing",
    "Member",
    "Membership",
    "Record",
    "RecordWrite",
    "SessionState",
    "get_coordinator",
    "make_member_id",
    "parse_backend_url",
    "register_opts",
]
