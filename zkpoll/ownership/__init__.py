"""The ownership core: which keys this member polls in which cycle.

Layers, bottom up:

* :mod:`~zkpoll.ownership.members`: member views, who is in the ring of a
  cycle, ring epochs (pure);
* :mod:`~zkpoll.ownership.events`: the events and actions of the rules;
* :mod:`~zkpoll.ownership.clock_rule`: the clock bound and announcements in
  the backend's time (pure);
* :mod:`~zkpoll.ownership.state`: the rules, a pure state machine (this
  member's own joins and leaves in :mod:`~zkpoll.ownership.own_membership`);
* :mod:`~zkpoll.ownership.partition`: the threads that feed it from a
  coordinator and carry out its actions (:mod:`~zkpoll.ownership.carrying`:
  the readings they take and the pieces they share).

It sits beside :mod:`zkpoll.coordination` (which it uses) and below the
polling agent (which it knows nothing of).
"""

from zkpoll.ownership.events import Contact, Poll, PollKind, Skip
from zkpoll.ownership.members import (
    MemberInfo,
    eligible_members,
    member_info,
    member_meters,
    ring_epoch,
)
from zkpoll.ownership.partition import Partition, PollCallback
from zkpoll.ownership.record import claimed_cycle
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

__all__ = [
    "Contact",
    "MemberInfo",
    "OwnershipConfig",
    "OwnershipState",
    "Partition",
    "Poll",
    "PollCallback",
    "PollKind",
    "Skip",
    "claimed_cycle",
    "eligible_members",
    "member_info",
    "member_meters",
    "ring_epoch",
]
