"""ReadingPollster and FieldPollster: one read per resource per cycle, bounded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from zkpoll.exceptions import PluginError
from zkpoll.pollsters.reading import FieldPollster
from zkpoll.testing.plugins import make_context, poll

READS: Counter[str] = Counter()
RELEASE = threading.Event()


class _Stats(FieldPollster):
    reading = "tests:stats"
    unit = "1"

    def read(self, resource: Any, timeout: float) -> dict[str, Any]:
        READS[resource] += 1
        if resource.startswith("down"):
            raise ConnectionRefusedError("refused")
        if resource.startswith("hang"):
            RELEASE.wait(10)
        return {"a": 1, "b": "2.5", "c": "text"}


class A(_Stats):
    meter, field = "t.a", "a"


class B(_Stats):
    meter, field = "t.b", "b"


class C(_Stats):
    meter, field = "t.c", "c"


class Missing(_Stats):
    meter, field = "t.missing", "zz"


class OnlyOdd(A):
    meter = "t.odd"

    def accepts(self, resource: Any) -> bool:
        return resource.endswith(("1", "3"))


@pytest.fixture(autouse=True)
def _reset() -> None:
    READS.clear()
    RELEASE.clear()


def test_one_read_per_resource_per_cycle_shared_by_the_family() -> None:
    context = make_context()
    assert [s.volume for s in poll(A(), ["r1", "r2"], context=context)] == [1, 1]
    assert [s.volume for s in poll(B(), ["r1", "r2"], context=context)] == [2.5, 2.5]
    assert READS == {"r1": 1, "r2": 1}
    poll(A(), ["r1"])  # a new cycle reads again
    assert READS["r1"] == 2


def test_failures_are_cached_for_the_cycle_and_do_not_hide_the_others() -> None:
    context = make_context()
    assert [s.resource_id for s in poll(A(), ["down1", "r1"], context=context)] == ["r1"]
    assert [s.resource_id for s in poll(B(), ["down1", "r1"], context=context)] == ["r1"]
    assert READS["down1"] == 1


def test_every_resource_failing_raises() -> None:
    with pytest.raises(PluginError, match="t.a: every resource failed: down1: "
                                          "ConnectionRefusedError: refused"):
        poll(A(), ["down1"])


def test_a_hung_read_is_abandoned_at_the_timeout() -> None:
    started = time.monotonic()
    try:
        samples = poll(A(), ["hang1", "r1"], context=make_context(timeout=0.3))
    finally:
        RELEASE.set()
    assert time.monotonic() - started < 1.0
    assert [s.resource_id for s in samples] == ["r1"]


def test_missing_and_non_numeric_fields_give_no_sample(caplog: pytest.LogCaptureFixture) -> None:
    assert poll(Missing(), ["r1"]) == []
    assert poll(C(), ["r1"]) == []
    assert "field 'c' is not a number" in caplog.text


def test_accepts_filters_and_duplicates_are_polled_once() -> None:
    assert [s.resource_id for s in poll(OnlyOdd(), ["r1", "r2", "r3", "r1"])] == ["r1", "r3"]
    assert READS == {"r1": 1, "r3": 1}
