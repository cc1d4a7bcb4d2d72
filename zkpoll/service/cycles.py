"""Cycle maths (wall-clock aligned cycles with a deterministic per-source offset),
and the wait for a cycle's start that both agents' loops use.

Cycle ``c`` of a source with interval ``I`` starts at ``c * I + offset``,
where the offset depends only on the source name, so every agent starts
the same cycle at the same wall-clock instant (given NTP) while sources
with the same interval do not all fire at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import mmh3

from zkpoll.sample import HASH_SEED

__all__ = ["cycle_index", "cycle_start", "next_cycle", "source_offset", "wait_for_start"]

#: The offset is at most this fraction of the interval (and at most MAX_OFFSET).
OFFSET_FRACTION = 0.1
MAX_OFFSET = 5.0


def source_offset(name: str, interval: float) -> float:
    """Deterministic offset in seconds of a source's cycles, in [0, min(I/10, 5))."""
    span = min(interval * OFFSET_FRACTION, MAX_OFFSET)
    return (mmh3.hash(name, HASH_SEED, signed=False) % 1000) / 1000 * span


def cycle_index(t: float, interval: float, offset: float = 0.0) -> int:
    """Index of the cycle in flight at wall-clock time ``t``."""
    return math.floor((t - offset) / interval)


def cycle_start(index: int, interval: float, offset: float = 0.0) -> float:
    """Wall-clock start of cycle ``index``."""
    return index * interval + offset


def next_cycle(t: float, interval: float, offset: float = 0.0) -> tuple[int, float]:
    """(index, start) of the first cycle starting strictly after ``t``."""
    index = cycle_index(t, interval, offset) + 1
    return index, cycle_start(index, interval, offset)



def wait_for_start(start: float, stop: threading.Event, leaving: threading.Event,
                   leave_at: Callable[[], float | None]) -> bool:
    """Sleep until wall-clock ``start``; False when ``stop`` is set first, or when
    the cycle starts at or after ``leave_at()`` (a graceful leave).

    ``leaving`` is set once a leave is announced, to wake the sleeper so it
    re-reads ``leave_at()``; after that only ``stop`` wakes it.
    """
    while True:
        if stop.is_set():
            return False
        leaving_at = leave_at()
        if leaving_at is not None and start >= leaving_at:
            return False
        delay = start - time.time()
        if delay <= 0:
            return True
        (stop if leaving.is_set() else leaving).wait(delay)
