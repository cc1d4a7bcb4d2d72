"""The durable-delivery loop: a spool, one sender thread, backoff, bounds, close.

Every publisher that must not lose what it accepted (the network publishers
of :mod:`zkpoll.publisher.spooled`, the alarm webhooks of
:mod:`zkpoll.alarm.webhook`) gives a :class:`Sender` to one
:class:`DeliveryLoop`::

    loop = DeliveryLoop(spool, sender, ledger, settings, thread_name="zkpoll-sender-http")
    loop.append(body, count, oldest)   # durable on return (False: closing)
    loop.start(); loop.enforce_bounds()
    loop.health(); loop.probe(); loop.close(5.0)

The owner encodes its items into spool batches; the loop's sender thread
takes the oldest batches (up to ``batch_size`` items), has the sender decode
them and send them (all at once, or ``Sender.send_size`` items per call), and
acknowledges each batch once every item of it was delivered or rejected.

- :class:`~zkpoll.exceptions.PublishError` from :meth:`Sender.send`: retried,
  in order, after ``retry_backoff * 2**(n-1)`` seconds (capped at
  ``max_backoff``, times a jitter in [0.5, 1]), without limit.
- :class:`~zkpoll.exceptions.BatchRejected`: those items are dropped for good,
  counted as ``rejected`` and logged at ERROR; the loop moves on.
- Bounds (``max_bytes``, ``max_age``) drop the oldest batches, counted and
  logged at ERROR; they may be applied from any thread, and never drop the
  batches the sender holds (the batch in flight: ``keep_through``).  Items of
  a partly delivered batch that were already delivered are not counted
  again when a bound drops the rest.
- :meth:`close` delivers what the sink takes before the deadline; the rest
  stays on disk for the next start.
"""

from __future__ import annotations

import abc
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from zkpoll.delivery.ledger import Ledger, PublisherHealth
from zkpoll.delivery.spool import Entry, Spool
from zkpoll.exceptions import BatchRejected, PublishError

__all__ = ["DeliveryLoop", "DeliverySettings", "Sender", "backoff_delay"]

Item = TypeVar("Item")

_IDLE_CHECK = 5.0  # seconds between bound checks while nothing else happens


def backoff_delay(attempt: int, initial: float, cap: float, jitter: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``initial * 2**(attempt-1)``
    capped at ``cap``, scaled by ``jitter`` in [0.5, 1]."""
    return min(cap, initial * 2.0 ** min(attempt - 1, 60)) * jitter


@dataclass(frozen=True)
class DeliverySettings:
    """How one loop sends and bounds its spool.

    ``max_bytes_option`` and ``max_age_option`` name the options in the
    ERROR line of a bound drop (``spool_max_bytes``, ``notify_spool_max_age``).
    """

    batch_size: int                  #: items per head chunk taken from the spool
    retry_backoff: float = 1.0       #: seconds before the first retry
    max_backoff: float = 30.0        #: cap of the doubled delay
    max_bytes: int = 0               #: spool size bound (0: none)
    max_age: float = 0.0             #: age bound in seconds (0: none)
    max_bytes_option: str = "spool_max_bytes"
    max_age_option: str = "spool_max_age"


class Sender(abc.ABC, Generic[Item]):
    """What a destination gives the loop: read a stored batch back, send items."""

    #: Who refuses items, in the rejection line ("the sink rejected ...").
    kind = "sink"
    #: What the items are called in log lines.
    noun = "samples"
    #: What a batch's ``oldest`` time is ("polled from ...").
    stamped = "polled"
    #: Items per :meth:`send` call; None: every item of the head chunk at once.
    send_size: int | None = None

    @abc.abstractmethod
    def decode(self, body: bytes) -> Sequence[Item]:
        """The items of one stored batch.

        :raises ValueError: the batch is unreadable (it is dropped as ``corrupt``)
        """

    @abc.abstractmethod
    def send(self, items: Sequence[Item]) -> None:
        """Deliver ``items`` synchronously.

        :raises BatchRejected: refused for good (dropped, not retried)
        :raises PublishError: not delivered; retried with backoff
        """

    def describe(self, items: Sequence[Item], rejected: int) -> str:
        """What was rejected, for the ERROR line (``4 of 10 samples``)."""
        return f"{rejected} of {len(items)} {self.noun}"

    def close(self) -> None:
        """Release connections (once, after the last :meth:`send`)."""


class DeliveryLoop(Generic[Item]):
    """One spool and one sender thread in front of a :class:`Sender` (module docstring).

    :param spool: the open spool; the loop closes it
    :param sender: the publisher's :class:`Sender` (decodes and sends); the loop closes it
    :param ledger: where deliveries, failures and drops are counted and logged
    """

    def __init__(self, spool: Spool, sender: Sender[Item], ledger: Ledger,
                 settings: DeliverySettings, *, thread_name: str) -> None:
        self.spool = spool
        self.sender = sender
        self.ledger = ledger
        self.settings = settings
        self.thread_name = thread_name
        self.log = ledger.log
        self.retried = 0  # failed attempts (each retried)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._deadline = float("inf")
        self._retry_at = 0.0
        self._attempts = 0
        self._inflight = 0  # seq of the last batch the sender holds (never dropped by bounds)
        self._progress = (0, 0)  # (seq of a partly delivered batch, items of it done)

    # --- accepting -------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once closing began: :meth:`append` refuses."""
        return self._closing or self._closed

    def append(self, body: bytes, count: int, oldest: float) -> bool:
        """Store one encoded batch of ``count`` items and wake the sender (which
        :meth:`start` must have started).  False, and nothing stored, once closing.

        :raises sqlite3.Error: the spool cannot be written (nothing was stored)
        """
        with self._cond:
            if self._closing or self._closed:
                return False
            self.spool.append(body, count, oldest)
            self._start()
            self._cond.notify_all()
            return True

    def start(self) -> None:
        """Start the sender thread (idempotent)."""
        with self._cond:
            self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=self.thread_name)
            self._thread.start()

    # --- bounds ----------------------------------------------------------------
    def enforce_bounds(self) -> None:
        """Apply the bounds (any thread); count and log what they drop.  The
        batches the sender holds are kept (``keep_through``): they are being sent."""
        settings = self.settings
        with self._cond:
            try:
                by_age, by_size = self.spool.enforce_bounds(
                    settings.max_bytes, settings.max_age, time.time(),
                    keep_through=self._inflight)
            except sqlite3.Error as exc:
                self.log.error("%s: cannot apply the spool bounds: %s", self.ledger.who, exc)
                return
            drops = [(entries, reason, bound, self._forget_progress(entries))
                     for entries, reason, bound in (
                         (by_age, "max_age", f"{settings.max_age_option}={settings.max_age:g}s"),
                         (by_size, "max_bytes",
                          f"{settings.max_bytes_option}={settings.max_bytes}"))
                     if entries]
        for entries, reason, bound, done in drops:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entries[0].oldest))
            self.ledger.dropped_oldest(sum(e.count for e in entries) - done, reason, bound,
                                       self.sender.noun, f"{self.sender.stamped} from {when}")

    def _forget_progress(self, entries: Sequence[Entry]) -> int:
        """Items of ``entries`` already delivered (a partly sent batch); under the lock."""
        seq, done = self._progress
        if not any(e.seq == seq for e in entries):
            return 0
        self._progress = (0, 0)
        return done

    # --- sending ---------------------------------------------------------------
    def _run(self) -> None:
        """Sender thread: deliver the oldest batches until closed."""
        while True:
            with self._cond:
                while not self._closing and (
                        not self.spool.batches or time.monotonic() < self._retry_at):
                    wait = _IDLE_CHECK if not self.spool.batches else \
                        min(_IDLE_CHECK, self._retry_at - time.monotonic())
                    if not self._cond.wait(max(0.0, wait)):
                        break  # timed out: check the bounds, maybe retry
                if self._closing and (not self.spool.batches or self._attempts
                                      or time.monotonic() >= self._deadline):
                    return
                ready = self.spool.batches and time.monotonic() >= self._retry_at
            if ready:
                try:
                    self._send_head()
                except Exception as exc:  # the spool itself failed (disk full, I/O error)
                    self.log.exception("%s: cannot read or update the spool %s",
                                       self.ledger.who, self.spool.directory)
                    self._retry_later(f"spool error: {type(exc).__name__}: {exc}")
            self.enforce_bounds()

    def _send_head(self) -> None:
        with self._cond:  # taken and protected from the bounds in one step
            chunk = self.spool.head(self.settings.batch_size)
            self._inflight = chunk[-1][0].seq if chunk else 0
            seq, done = self._progress
            done = done if chunk and seq == chunk[0][0].seq else 0
        try:
            parts = self._decode(chunk)
            if parts:
                self._send_parts(parts, done)
        finally:
            self._inflight = 0

    def _decode(self, chunk: list[tuple[Entry, bytes]]) -> list[tuple[Entry, Sequence[Item]]]:
        """The decoded batches of ``chunk``; none when one is unreadable (it is dropped)."""
        parts: list[tuple[Entry, Sequence[Item]]] = []
        corrupt: list[int] = []
        for entry, body in chunk:
            try:
                parts.append((entry, self.sender.decode(body)))
            except ValueError as exc:
                corrupt.append(entry.seq)
                self.ledger.failed(f"a spooled batch is unreadable ({exc}); dropped",
                                   entry.count, error=False, drop_reason="corrupt")
        if corrupt:
            self.spool.drop(corrupt)
            return []
        return parts

    def _send_parts(self, parts: list[tuple[Entry, Sequence[Item]]], done: int) -> None:
        """Send the items of ``parts`` from item ``done`` on; acknowledge each batch
        once all its items are delivered or rejected."""
        items = [item for _, batch in parts for item in batch]
        step = self.sender.send_size or len(items)
        while done < len(items):
            if self._closing and time.monotonic() >= self._deadline:
                return  # the rest of the batch stays on disk
            part = items[done:done + step]
            rejection: BatchRejected | None = None
            try:
                self.sender.send(part)
            except BatchRejected as exc:
                rejection = exc
            except PublishError as exc:
                self._retry_later(str(exc))
                return
            except Exception as exc:  # a bug in a sender must not stop delivery
                self.log.exception("%s: unexpected error in the sender", self.ledger.who)
                self._retry_later(f"unexpected {type(exc).__name__}: {exc}")
                return
            self._attempts = 0
            done += len(part)
            # The spool first: a counter never runs ahead of what the spool holds.
            self._acknowledge(parts, done)
            if rejection is None:
                self.ledger.delivered(len(part))
                continue
            rejected = len(part) if rejection.rejected is None \
                else min(len(part), rejection.rejected)
            if len(part) > rejected:
                self.ledger.delivered(len(part) - rejected)
            self.ledger.failed(f"the {self.sender.kind} rejected "
                               f"{self.sender.describe(part, rejected)} for good: {rejection}; "
                               f"dropped", rejected, drop_reason="rejected")

    def _acknowledge(self, parts: list[tuple[Entry, Sequence[Item]]], done: int) -> None:
        """Forget the batches whose items are all done; note progress in the next."""
        last = 0
        for entry, batch in parts:
            if done < len(batch):
                break
            done -= len(batch)
            last = entry.seq
        with self._cond:
            if last:
                self.spool.ack(last)
            following = [entry for entry, _ in parts if entry.seq > last]
            self._progress = (following[0].seq, done) if following and done else (0, 0)

    def _retry_later(self, reason: str) -> None:
        self._attempts += 1
        self.retried += 1
        delay = backoff_delay(self._attempts, self.settings.retry_backoff,
                              self.settings.max_backoff, random.uniform(0.5, 1.0))
        with self._cond:
            self._retry_at = time.monotonic() + delay
        self.ledger.failed(f"delivery failed ({self.spool.depth} {self.sender.noun} waiting in "
                           f"the spool, retrying without limit): {reason}",
                           level=logging.WARNING)

    # --- state -----------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Items waiting: in the spool, less those of a partly sent batch already done."""
        with self._cond:
            seq, done = self._progress
            return self.spool.depth - (done if seq else 0)

    def health(self) -> PublisherHealth:
        """Failure state, backlog and drops by reason."""
        return self.ledger.health(self.depth, self.spool.oldest(), self.spool.size)

    def probe(self) -> bool | None:
        """True once a delivery worked since the last failure, False while the
        spooled backlog keeps failing, None when there is nothing to tell."""
        health = self.health()
        if not health.failing:
            return True if health.last_success is not None else None
        return False if health.depth else None

    # --- shutdown --------------------------------------------------------------
    def begin_close(self, deadline: float) -> None:
        """Stop accepting; the sender delivers what it can until ``deadline`` (monotonic)."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._deadline = deadline
            self._cond.notify_all()

    def finish_close(self, deadline: float) -> int:
        """Wait for the sender until ``deadline`` (+1 s); close the spool and the
        sender; return the items left on disk (0 when already closed)."""
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        with self._cond:
            if self._closed:
                return 0
            self._closed = True
            left = self.spool.depth
            if thread is None or not thread.is_alive():
                self.spool.close()
                self.sender.close()
        if left:
            self.log.warning("%s: %d undelivered %s stay in the spool %s and are sent after "
                             "the next start", self.ledger.who, left, self.sender.noun,
                             self.spool.directory)
        return left

    def close(self, timeout: float = 5.0) -> int:
        """Deliver what the sink takes within ``timeout`` s; the rest stays on disk."""
        deadline = time.monotonic() + max(0.0, timeout)
        self.begin_close(deadline)
        return self.finish_close(deadline)
