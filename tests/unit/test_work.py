"""zkpoll.work: the pure rules of WorkGroup, its standalone loop, and the
length of docs/library.md's program beside tooz's."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest

from tests.doc_examples import LIBRARY_DOC, code_lines, example
from zkpoll import Cycle, WorkGroup, WorkGroupError
from zkpoll.exceptions import ConfigError, NotJoined
from zkpoll.service.cycles import cycle_index, cycle_start, source_offset
from zkpoll.work import check_cycle, unique_keys

KEYS = [f"k{n}" for n in range(10)]


# --- the documentation ----------------------------------------------------------
def test_our_program_is_not_longer_than_toozs() -> None:
    ours, tooz = code_lines(example("zkpoll")), code_lines(example("tooz"))
    assert ours <= tooz
    row = re.search(r"^\| lines of code \(non-blank, non-comment\) \| (\d+) \| (\d+) \|$",
                    LIBRARY_DOC.read_text(), re.MULTILINE)
    assert row is not None, "the line-count row of the table in docs/library.md"
    assert (int(row.group(1)), int(row.group(2))) == (ours, tooz)


def test_code_lines_skips_blank_lines_and_comments() -> None:
    assert code_lines("import sys\n\n# a comment\n    # indented\nx = 1  # trailing\n") == 2


# --- pure rules ---------------------------------------------------------------------
def test_unique_keys_keeps_the_first_of_each_in_order() -> None:
    assert unique_keys(["b", "a", "b", "c", "a"]) == ("b", "a", "c")


@pytest.mark.parametrize("keys", [["a", 1], "abc", [b"a"]])
def test_unique_keys_refuses_what_is_not_strings(keys: object) -> None:
    with pytest.raises(WorkGroupError, match="string"):
        unique_keys(keys)  # type: ignore[arg-type]


def test_check_cycle_returns_the_start_of_a_cycle_in_flight_or_ahead() -> None:
    assert check_cycle(10, now=105.0, interval=10.0, offset=1.0, last=-1) == 101.0
    assert check_cycle(11, now=105.0, interval=10.0, offset=1.0, last=10) == 111.0
    assert check_cycle(10, now=105.0, interval=10.0, offset=1.0, last=10) == 101.0


def test_check_cycle_refuses_a_cycle_that_is_over() -> None:
    with pytest.raises(WorkGroupError, match="cycle 9 ended 4.0s ago"):
        check_cycle(9, now=105.0, interval=10.0, offset=1.0, last=-1)


def test_check_cycle_refuses_to_claim_backwards() -> None:
    with pytest.raises(WorkGroupError, match="older than cycle 11"):
        check_cycle(10, now=105.0, interval=10.0, offset=1.0, last=11)


def test_cycle_end_is_the_next_start() -> None:
    assert Cycle(3, 30.5, 10.0).end == 40.5
    assert Cycle(3, 30.5, 10.0).kind == "cycle"


# --- arguments and timings ------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1},
                                    {"interval": 1, "name": ""}])
def test_bad_arguments_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="interval must be > 0"):
        WorkGroup(None, "g", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("url, kwargs", [
    ("zookeeper://127.0.0.1:1/x", {"settle_time": 1.0, "heartbeat": 0.5}),
    ("zookeeper://127.0.0.1:1/x?heartbeat=2&timeout=10", {"settle_time": 3.0}),
    ("zookeeper://127.0.0.1:1/x?timeout=2", {"heartbeat": 1.0}),
])
def test_unsafe_timings_are_refused_before_connecting(url: str,
                                                      kwargs: dict[str, float]) -> None:
    group = WorkGroup(url, "g", interval=5, start_timeout=0.1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="heartbeat_interval"):
        group.start()
    assert group.coordinator is None


# --- standalone: a real loop without a backend ---------------------------------------
def test_standalone_owns_every_key_and_claims_forward_only() -> None:
    group = WorkGroup(None, "g", interval=60, member_name="me")
    with pytest.raises(NotJoined):
        group.owned(KEYS)
    with group:
        assert group.member_id is not None and group.member_id.startswith("me.")
        assert group.owned(KEYS + KEYS[:3]) == KEYS
        index = cycle_index(time.time(), 60, source_offset("work", 60))
        assert group.owned(KEYS, index) == KEYS
        with pytest.raises(WorkGroupError, match=f"cycle {index - 1} ended"):
            group.owned(KEYS, index - 1)
        assert group.fenced is None
        with pytest.raises(WorkGroupError, match="already started"):
            group.start()
    with pytest.raises(NotJoined):
        group.owned(KEYS)


def test_every_cycle_calls_back_at_each_aligned_start() -> None:
    interval = 0.2
    calls: list[tuple[Cycle, list[str], float]] = []
    enough = threading.Event()
    asked = []

    def keys() -> list[str]:
        asked.append(1)
        return KEYS

    def callback(cycle: Cycle, mine: list[str]) -> None:
        calls.append((cycle, mine, time.time()))
        if len(calls) == 1:
            raise RuntimeError("a bug in the first cycle does not stop the loop")
        if len(calls) >= 4:
            enough.set()

    with WorkGroup(None, "g", interval=interval) as group:
        group.every_cycle(keys, callback)
        with pytest.raises(WorkGroupError, match="one loop"):
            group.every_cycle(KEYS, callback)
        with pytest.raises(WorkGroupError, match="every_cycle"):
            group.owned(KEYS)
        assert enough.wait(10 * interval * 4)
    offset = source_offset("work", interval)
    indexes = [cycle.index for cycle, _, _ in calls]
    assert indexes[:4] == list(range(indexes[0], indexes[0] + 4))
    for cycle, mine, called in calls:
        assert cycle.kind == "cycle" and mine == KEYS
        assert cycle.start == pytest.approx(cycle_start(cycle.index, interval, offset))
        assert called >= cycle.start
    assert len(asked) == len(calls)  # the key function runs once per cycle
    assert group._thread is not None and not group._thread.is_alive()


def test_run_leaves_on_sigterm_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    calls: list[int] = []

    def callback(cycle: Cycle, mine: list[str]) -> None:
        calls.append(cycle.index)
        os.kill(os.getpid(), signal.SIGTERM)

    with WorkGroup(None, "g", interval=0.2) as group:
        group.run(KEYS, callback)
        with pytest.raises(NotJoined):  # run() closed the group
            group.owned(KEYS)
    assert calls and signal.getsignal(signal.SIGTERM) is before


def test_run_returns_when_its_stop_event_is_set() -> None:
    stop = threading.Event()
    calls: list[int] = []

    def callback(cycle: Cycle, mine: list[str]) -> None:
        calls.append(cycle.index)
        stop.set()

    with WorkGroup(None, "g", interval=0.2) as group:
        group.run(KEYS, callback, stop)
    assert len(calls) == 1
