"""Cycle maths: wall-clock aligned cycles with a deterministic per-source offset.

Cycle ``c`` of a source with interval ``I`` starts at ``c * I + offset``,
where the offset depends only on the source name, so every agent starts
the same cycle at the same wall-clock instant (given NTP) while sources
with the same interval do not all fire at once.
"""

from __future__ import annotations

import math

import mmh3

from zkpoll.sample import HASH_SEED

__all__ = ["cycle_index", "cycle_start", "next_cycle", "source_offset"]

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
