"""How :class:`~zkpoll.ownership.partition.Partition` carries out actions and
takes the readings events carry: the small pieces its threads share.

* :class:`Announcing` says how an ``Announce`` reaches the backend;
* :class:`Queued` is a claims write queued under the partition's lock;
* :func:`contact_of` takes the clock readings of an event from a coordinator
  (its clock offset estimate, not judged on a backend whose clock is no wall
  clock), and :func:`measure_clock` takes a fresh clock sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from zkpoll.coordination.base import Coordinator
from zkpoll.coordination.clock import ClockEstimate
from zkpoll.exceptions import CoordinationError
from zkpoll.ownership.events import Action, Contact, WriteClaims

__all__ = ["LIVE", "Announcing", "Queued", "contact_of", "measure_clock"]

LOG = logging.getLogger(__name__)

#: The estimate events carry on a backend whose clock is no wall clock (Memcached).
_NOT_JUDGED = ClockEstimate(0.0, 0.0, 0.0, 0.0, 0.0, 0)


@dataclass(frozen=True)
class Announcing:
    """How the partition carries out an ``Announce``.

    Always merged into our member data; ``publish`` sends the fields to the
    backend (False while registering: the registration publishes the data
    itself), ``raise_errors`` lets a failed update reach the caller (an
    explicit leave or rejoin) instead of a warning; ``announced`` collects
    the fields for the caller.
    """

    publish: bool = True
    raise_errors: bool = False
    announced: dict[str, Any] | None = None


LIVE = Announcing()  #: events from the backend and the agent's threads


@dataclass(frozen=True)
class Queued(Action):
    """A claims write queued with the coordinator under the lock (generation ``gen``;
    -1 when it could not be queued)."""

    action: WriteClaims
    gen: int


def contact_of(coordinator: Coordinator) -> Contact:
    """The clock readings an event carries, taken now."""
    clock = coordinator.clock() if coordinator.clock_is_wall_clock else _NOT_JUDGED
    return Contact(time.time(), time.monotonic() - coordinator.last_contact,
                   coordinator.session_timeout,
                   None if clock is None else clock.offset,
                   0.0 if clock is None else clock.error, coordinator.watch_delay())


def measure_clock(coordinator: Coordinator, group: str) -> None:
    """Take a fresh clock sample (a warning, never an exception, when it fails)."""
    timeout = max(0.5, min(5.0, coordinator.session_timeout / 2))
    try:
        coordinator.measure_clock(timeout)
    except CoordinationError as exc:
        LOG.warning("group %s: cannot measure the clock offset against the backend: %s",
                    group, exc)
