"""The clock rule of the ownership core (pure: no I/O, no clock reads).

Members align cycles to their own wall clocks, and every member must agree
on the ring of every cycle.  Two conditions make that hold (docs/design.md,
section 4, "Clocks"):

* **Announcements in the backend's time.** ``active_at`` and ``leave_at``
  are announced as the backend's clock now (our clock minus our measured
  offset, plus its error bar) plus ``settle_time``, so a member whose clock
  is off cannot announce an instant that peers have already planned past.
  A member with no offset estimate yet announces nothing that makes it
  active.
* **The bound.** A member may poll partitioned work only while its offset
  (plus the estimate's error) is within ``(settle_time - watch_delay) / 2``:
  two members within the bound are then within ``settle_time -
  watch_delay`` of each other, which is the design's rule "settle_time
  exceeds the worst watch delay plus the clock skew between agents".
  Beyond it, the member fences itself (gaps, never duplicates).
"""

from __future__ import annotations

import math

from zkpoll.ownership.events import Contact
from zkpoll.ownership.notes import clock_text

__all__ = ["backend_now", "clock_bound", "clock_fence_reason", "clock_state", "offset_text"]

#: Clock states, from :func:`clock_state`.
OK, WARN, BEYOND, UNMEASURED = "ok", "warn", "beyond", "unmeasured"


def clock_bound(settle_time: float, watch_delay: float) -> float:
    """The largest offset (plus error) a member may have and still poll."""
    return max(0.0, (settle_time - max(0.0, watch_delay)) / 2.0)


def backend_now(contact: Contact) -> float | None:
    """The latest instant the backend's clock can read now (None: not measured)."""
    if contact.offset is None:
        return None
    return contact.now - contact.offset + contact.offset_error


def clock_state(contact: Contact, settle_time: float) -> str:
    """``ok``, ``warn`` (above half the bound), ``beyond`` the bound, or ``unmeasured``."""
    if contact.offset is None or math.isnan(contact.offset):
        return UNMEASURED
    worst = abs(contact.offset) + contact.offset_error
    bound = clock_bound(settle_time, contact.watch_delay)
    if worst > bound:
        return BEYOND
    return WARN if worst > bound / 2 else OK


def offset_text(contact: Contact, settle_time: float) -> str:
    """The offset, its error, the bound and the backend's time, in one phrase."""
    bound = clock_bound(settle_time, contact.watch_delay)
    if contact.offset is None:
        return f"clock offset against the backend not measured yet (bound {bound:.2f}s)"
    backend = contact.now - contact.offset
    return (f"clock offset {contact.offset:+.3f}s (+/-{contact.offset_error:.3f}s) against "
            f"the backend (its time {clock_text(backend)}, ours {clock_text(contact.now)}); "
            f"bound {bound:.2f}s = (settle_time {settle_time:g}s - watch delay "
            f"{contact.watch_delay:.3f}s) / 2")


def clock_fence_reason(contact: Contact, settle_time: float) -> str | None:
    """Why this member's clock forbids polling partitioned work now, or None."""
    state = clock_state(contact, settle_time)
    if state == BEYOND:
        return f"{offset_text(contact, settle_time)}: beyond the bound"
    if state == UNMEASURED:
        return offset_text(contact, settle_time)
    return None
