"""DeliveryLoop: what the publisher and webhook tests do not reach directly.

A real sqlite3 spool in tmp_path and the loop's real sender thread; the
sender is a small in-test class that decodes JSON lists and fails or
blocks on demand.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from zkpoll.delivery import DeliveryLoop, DeliverySettings, Ledger, Sender, Spool
from zkpoll.exceptions import BatchRejected, PublishError

LOG = logging.getLogger("tests.delivery")


class Items(Sender[str]):
    """Sends ``send_size`` items per call; ``fail`` raises, ``gate`` blocks a send."""

    noun = "items"

    def __init__(self, send_size: int | None = None) -> None:
        self.send_size = send_size
        self.sent: list[str] = []
        self.calls = 0
        self.fail: Exception | None = None
        self.fail_after = 0  # calls that succeed before ``fail`` applies
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.closed = False

    def decode(self, body: bytes) -> Sequence[str]:
        items = json.loads(body)
        if not isinstance(items, list):
            raise ValueError("not a list")  # noqa: TRY004 - the Sender contract says ValueError
        return items

    def send(self, items: Sequence[str]) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None and self.calls > self.fail_after:
            raise self.fail
        self.sent.extend(items)

    def close(self) -> None:
        self.closed = True


def make_loop(tmp_path: Path, sender: Items, **settings: float) -> DeliveryLoop[str]:
    values = {"batch_size": 100, "retry_backoff": 0.01, "max_backoff": 0.05, **settings}
    return DeliveryLoop(Spool(tmp_path / "spool"), sender, Ledger(LOG, "test loop"),
                        DeliverySettings(**values), thread_name="test-delivery")  # type: ignore[arg-type]


def put(loop: DeliveryLoop[str], items: list[str], oldest: float | None = None) -> None:
    assert loop.append(json.dumps(items).encode(), len(items),
                       time.time() if oldest is None else oldest)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_items_sent_one_by_one_resume_after_a_failure_without_resending(tmp_path):
    sender = Items(send_size=1)
    sender.fail, sender.fail_after = PublishError("down"), 2
    loop = make_loop(tmp_path, sender)
    put(loop, ["a", "b", "c", "d"])
    wait_for(lambda: loop.retried >= 2)
    assert sender.sent == ["a", "b"]
    assert loop.depth == 2 and loop.spool.depth == 4  # the batch stays until all are done
    sender.fail = None
    wait_for(lambda: loop.spool.depth == 0)
    assert sender.sent == ["a", "b", "c", "d"]  # nothing twice
    assert loop.ledger.counts() == {"published": 4, "dropped": 0, "errors": loop.retried}
    assert loop.close() == 0 and sender.closed


def test_a_bound_dropping_a_partly_sent_batch_counts_only_the_undelivered(tmp_path):
    sender = Items(send_size=1)
    sender.fail, sender.fail_after = PublishError("down"), 1
    loop = make_loop(tmp_path, sender, retry_backoff=30.0, max_backoff=30.0, max_age=60.0)
    put(loop, ["a", "b", "c"], oldest=time.time() - 50)
    wait_for(lambda: loop.retried == 1)  # "a" delivered, "b" failed: 30 s until the retry
    assert loop.depth == 2
    put(loop, ["x"])
    loop.settings = DeliverySettings(100, 30.0, 30.0, 0, 10.0)  # the first batch is too old now
    loop.enforce_bounds()
    assert loop.health().drops == {"max_age": 2}  # b and c; a was delivered
    assert loop.ledger.counts()["published"] == 1 and loop.depth == 1
    loop.close(timeout=0)


def test_the_batch_in_flight_is_never_dropped_by_a_bound(tmp_path, caplog):
    sender = Items()
    sender.gate = threading.Event()
    loop = make_loop(tmp_path, sender, max_bytes=1)
    put(loop, ["a", "b"])
    assert sender.entered.wait(10)  # the sender holds ["a", "b"] and waits at the gate
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        put(loop, ["c"])
        loop.enforce_bounds()  # from the accepting thread, during the send
    assert loop.health().drops == {"max_bytes": 1}  # c, not the batch being sent
    assert "spool bound spool_max_bytes=1 reached: DROPPED the 1 oldest undelivered items" \
        in caplog.text
    sender.gate.set()
    wait_for(lambda: loop.ledger.counts()["published"] == 2)
    assert sender.sent == ["a", "b"] and loop.spool.depth == 0
    loop.close()


def test_a_partial_rejection_counts_the_rest_as_delivered(tmp_path, caplog):
    sender = Items()
    sender.fail = BatchRejected("too old", rejected=2)
    loop = make_loop(tmp_path, sender)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        put(loop, ["a", "b", "c", "d", "e"])
        wait_for(lambda: loop.spool.depth == 0)
    assert loop.ledger.counts() == {"published": 3, "dropped": 2, "errors": 1}
    assert loop.health().drops == {"rejected": 2} and loop.retried == 0
    assert "test loop: the sink rejected 2 of 5 items for good: too old; dropped" in caplog.text
    loop.close()


def test_an_unreadable_batch_is_dropped_and_the_next_one_sent(tmp_path):
    sender = Items()
    loop = make_loop(tmp_path, sender)
    assert loop.append(b'{"not": "a list"}', 3, time.time())
    put(loop, ["a"])
    wait_for(lambda: loop.spool.depth == 0)
    assert sender.sent == ["a"] and loop.health().drops == {"corrupt": 3}
    loop.close()


def test_close_stops_between_items_after_the_deadline_and_keeps_the_rest(tmp_path):
    sender = Items(send_size=1)
    sender.gate = threading.Event()
    loop = make_loop(tmp_path, sender)
    put(loop, ["a", "b", "c"])
    assert sender.entered.wait(10)
    deadline = time.monotonic()
    loop.begin_close(deadline)
    assert not loop.append(b"[]", 0, time.time())  # closing: refused
    sender.gate.set()  # "a" goes out; the deadline has passed: b and c stay
    assert loop.finish_close(deadline) == 3  # the batch is on disk until all of it is done
    assert sender.sent == ["a"]
    assert loop.close() == 0  # closing twice is a no-op
    again = make_loop(tmp_path, Items())
    assert again.spool.depth == 3  # redelivered after a restart: at least once
    again.close(timeout=0)


@pytest.mark.parametrize("failures", [1, 3])
def test_probe_says_false_while_failing_and_true_after_recovery(tmp_path, failures):
    sender = Items()
    sender.fail = PublishError("503")
    loop = make_loop(tmp_path, sender)
    assert loop.probe() is None  # nothing tried yet
    put(loop, ["a"])
    wait_for(lambda: loop.retried >= failures)
    assert loop.probe() is False and loop.health().failing
    sender.fail = None
    wait_for(lambda: loop.spool.depth == 0)
    assert loop.probe() is True and not loop.health().failing
    loop.close()
