"""RepeatedFailure: a failure repeated at every heartbeat is logged once, not every time."""

from __future__ import annotations

import logging

import pytest

from zkpoll.coordination import _repeated
from zkpoll.coordination._repeated import RepeatedFailure

LOG = logging.getLogger("test.repeated")


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOG.name]


def test_once_then_a_reminder_then_recovery(caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(_repeated.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, LOG.name)
    failures = RepeatedFailure(LOG, every=60.0)
    for _ in range(50):               # 50 heartbeats within a minute: one line
        failures.failed("publish m", "NoAuth")
        clock[0] += 1.0
    clock[0] += 10.0
    failures.failed("publish m", "NoAuth")  # a minute after the first line: a reminder
    failures.failed("publish m", "ConnectionLoss")  # a different cause: said at once
    failures.succeeded("publish m")
    failures.succeeded("publish m")   # nothing was failing any more: silent
    assert messages(caplog) == [
        ("WARNING", "could not publish m: NoAuth (retrying at every heartbeat)"),
        ("WARNING", "still cannot publish m after 51 attempts: NoAuth"),
        ("WARNING", "could not publish m: ConnectionLoss (retrying at every heartbeat)"),
        ("INFO", "publish m: done after 1 failed attempt(s)"),
    ]


def test_distinct_operations_are_tracked_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOG.name)
    failures = RepeatedFailure(LOG)
    failures.failed("read group a", "x")
    failures.failed("read group b", "x")
    failures.succeeded("read group a")
    assert [m for _, m in messages(caplog)] == [
        "could not read group a: x (retrying at every heartbeat)",
        "could not read group b: x (retrying at every heartbeat)",
        "read group a: done after 1 failed attempt(s)",
    ]
