"""CycleClock, the one loop over cycles: each index once, in order, whatever the
wall clock does (the functional proof with a real stepped clock is
tests/functional/test_clock_skew.py)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from zkpoll.service import cycles
from zkpoll.service.cycles import CycleClock
from zkpoll.testing import wait_for

INTERVAL = 0.5


class SteppedClock:
    """The wall clock as the monotonic clock plus an offset that a test steps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.monotonic() + 1_000_000.0 + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[SteppedClock]:
    stepped = SteppedClock()
    monkeypatch.setattr(cycles, "time", stepped)
    yield stepped


class Loop:
    """A CycleClock iterated on a thread, recording what it yields."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.seen: list[tuple[int, float, float]] = []  # (index, start, wall at yield)
        self.clock = CycleClock("test loop", INTERVAL, 0.0, self.stop, threading.Event(),
                                lambda: None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for index, start in self.clock:
            self.seen.append((index, start, cycles.time.time()))

    def indexes(self) -> list[int]:
        return [index for index, _, _ in self.seen]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)


def test_each_cycle_is_yielded_once_in_order_at_its_start(clock: SteppedClock) -> None:
    loop = Loop()
    try:
        wait_for(lambda: len(loop.seen) >= 3, 10, "three cycles")
    finally:
        loop.close()
    indexes = loop.indexes()
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))
    for index, start, wall in loop.seen:
        assert start == index * INTERVAL
        assert start <= wall, "never before its start"


def run_with_step(clock: SteppedClock, step: float) -> Loop:
    """A loop that ran two cycles, had its wall clock stepped by ``step`` seconds,
    then ran two more."""
    loop = Loop()
    try:
        wait_for(lambda: len(loop.seen) >= 2, 10, "two cycles")
        stepped_after = len(loop.seen)
        clock.offset += step
        wait_for(lambda: len(loop.seen) >= stepped_after + 2, 15, "two cycles after the step")
    finally:
        loop.close()
    return loop


def test_a_clock_stepped_back_never_runs_a_cycle_twice(
        clock: SteppedClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=cycles.__name__)
    loop = run_with_step(clock, -4 * INTERVAL)
    indexes = loop.indexes()
    assert indexes == sorted(set(indexes)), f"a cycle ran twice or out of order: {indexes}"
    assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), "none skipped"
    assert any("went back" in r.getMessage() for r in caplog.records)


def test_a_clock_jumping_forward_skips_the_cycles_that_ended_and_says_so(
        clock: SteppedClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=cycles.__name__)
    loop = run_with_step(clock, 10 * INTERVAL)
    indexes = loop.indexes()
    assert indexes == sorted(set(indexes))
    gaps = [b - a for a, b in itertools.pairwise(indexes)]
    assert max(gaps) >= 9, f"the cycles that ended meanwhile are skipped: {indexes}"
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any("jumped forward" in text for text in skipped), skipped
    for index, start, wall in loop.seen:
        assert wall < start + INTERVAL, "a cycle is never run after its end"
