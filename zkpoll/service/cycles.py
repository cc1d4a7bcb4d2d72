"""Cycle maths (wall-clock aligned cycles with a deterministic per-source offset),
the wait for a cycle's start, and :class:`CycleClock`, the one loop over
cycles that the polling agent, the alarm agent and :class:`~zkpoll.work.WorkGroup`
share.

Cycle ``c`` of a source with interval ``I`` starts at ``c * I + offset``,
where the offset depends only on the source name, so every agent starts
the same cycle at the same wall-clock instant (given NTP) while sources
with the same interval do not all fire at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import mmh3

from zkpoll.sample import HASH_SEED

__all__ = ["CycleClock", "cycle_index", "cycle_start", "next_cycle", "source_offset",
           "wait_for_start"]

LOG = logging.getLogger(__name__)

#: The offset is at most this fraction of the interval (and at most MAX_OFFSET).
OFFSET_FRACTION = 0.1
MAX_OFFSET = 5.0
#: Longest single sleep while waiting for a start: a wall clock that jumps
#: forward meanwhile is noticed within this many seconds.
MAX_SLEEP = 1.0
#: A wall clock that moved this much more (or less) than the monotonic clock
#: between two cycles was stepped (an NTP step, a VM resumed), and is logged.
JUMP = 1.0


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
        (stop if leaving.is_set() else leaving).wait(min(delay, MAX_SLEEP))


class CycleClock:
    """The cycles one loop runs: each index once, in increasing order.

    Iterating yields ``(index, start)`` at each cycle's start, and ends when
    ``stop`` is set or at a graceful leave (see :func:`wait_for_start`).
    The wall clock may step (an NTP step, a VM resumed):

    * **back**: the next cycle is still the one after the last (never one
      already run); the loop waits for its start, and logs the step;
    * **forward**: the cycles that ended meanwhile are skipped and logged as
      such (a cycle whose end passed before its start was noticed is never
      run late).  A cycle that overran its interval skips cycles the same way.

    :param label: what the log lines name, e.g. ``source cpu_source``
    """

    def __init__(self, label: str, interval: float, offset: float, stop: threading.Event,
                 leaving: threading.Event, leave_at: Callable[[], float | None]) -> None:
        self.label = label
        self.interval = interval
        self.offset = offset
        self._stop = stop
        self._leaving = leaving
        self._leave_at = leave_at

    def __iter__(self) -> Iterator[tuple[int, float]]:
        interval, offset = self.interval, self.offset
        index, start = next_cycle(time.time(), interval, offset)
        mark = _mark()
        while wait_for_start(start, self._stop, self._leaving, self._leave_at):
            now, jump, mark = _since(mark)
            self._went_back(jump, f"cycle {index} waited for its start")
            if now >= start + interval:  # it ended while we waited: the clock jumped
                following = cycle_index(now, interval, offset) + 1
                self._skipped(index, following, jump, "the wall clock jumped forward")
                index, start = following, cycle_start(following, interval, offset)
                continue
            yield index, start
            now, jump, mark = _since(mark)
            following = max(index + 1, cycle_index(now, interval, offset) + 1)
            self._went_back(jump, f"cycle {following} waits for its start")
            self._skipped(index + 1, following, jump,
                          f"cycle {index} overran its interval ({interval:g}s)")
            index, start = following, cycle_start(following, interval, offset)

    def _went_back(self, jump: float, then: str) -> None:
        if jump <= -JUMP:
            LOG.warning("%s: the wall clock went back %.1fs; %s (a cycle is never run "
                        "twice)", self.label, -jump, then)

    def _skipped(self, first: int, following: int, jump: float, why: str) -> None:
        """Log the cycles ``first`` .. ``following - 1`` as skipped, if any."""
        if following <= first:
            return
        if jump >= JUMP:
            why = f"the wall clock jumped forward {jump:.1f}s"
        LOG.warning("%s: %s; skipped %d cycle(s): %s", self.label, why, following - first,
                    f"{first}" if following - first == 1 else f"{first}..{following - 1}")


def _mark() -> tuple[float, float]:
    return time.time(), time.monotonic()


def _since(mark: tuple[float, float]) -> tuple[float, float, tuple[float, float]]:
    """(wall now, how far the wall clock moved beyond the monotonic one since
    ``mark``, a new mark)."""
    now = _mark()
    return now[0], (now[0] - mark[0]) - (now[1] - mark[1]), now
