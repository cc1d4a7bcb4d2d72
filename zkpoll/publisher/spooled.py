"""A network sink behind the durable spool: the publisher of every ``zkpoll.sender``.

``publish_samples`` encodes the samples and commits them to the spool (see
:mod:`zkpoll.publisher.spool`) before returning: from then on they count as
accepted.  One sender thread per publisher takes the oldest batches (up to
``batch_size`` samples), hands them to the :class:`BatchSender` and deletes
them once it returned.  A failed send is retried, in order, with capped
exponential backoff and jitter, without limit; a batch the sink rejects for
good (:class:`BatchRejected`) is dropped.  Bounds (``[publisher]
spool_max_bytes``, ``spool_max_age``) drop the oldest batches.  Every drop
is counted by reason and logged at ERROR with its count.

Query-string options taken by the spool (the rest goes to the sender):
``batch_size`` (samples per send; default: the sender's), ``retry_backoff``
(1.0 s, doubled per failed attempt) and ``max_backoff`` (30.0 s).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from zkpoll.exceptions import BatchRejected, ConfigError, PublishError
from zkpoll.publisher.base import OptionSpec, Publisher, integer, number, redact_url
from zkpoll.publisher.sender import BatchSender
from zkpoll.publisher.spool import Entry, Spool, orphaned_spools
from zkpoll.publisher.spool_codec import decode_batch, encode_batch
from zkpoll.publisher.spool_options import spool_name, spool_settings
from zkpoll.sample import Sample

__all__ = ["REMOVED_OPTIONS", "SpooledPublisher", "backoff_delay"]

#: Options of the old in-memory queue, refused with the reason.
REMOVED_OPTIONS = {
    "max_retries": "the spool retries without limit; bound it with [publisher] "
                   "spool_max_age and spool_max_bytes",
    "max_queue": "samples wait in the durable spool; bound it with [publisher] "
                 "spool_max_bytes",
}

_IDLE_CHECK = 5.0  # seconds between bound checks while nothing else happens
_ORPHANS_LOCK = threading.Lock()
_ORPHANS_CHECKED: set[Path] = set()  # spool roots already checked for orphans


def backoff_delay(attempt: int, initial: float, cap: float, jitter: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``initial * 2**(attempt-1)``
    capped at ``cap``, scaled by ``jitter`` in [0.5, 1]."""
    return min(cap, initial * 2.0 ** min(attempt - 1, 60)) * jitter


class SpooledPublisher(Publisher):
    """Spool + one sender thread in front of a :class:`BatchSender` (module docstring)."""

    OPTIONS: ClassVar[OptionSpec] = {
        "batch_size": (integer(1, 1_000_000), None),
        "retry_backoff": (number(0.001), 1.0),
        "max_backoff": (number(0.001), 30.0),
    }

    def __init__(self, conf: Any, url: urllib.parse.SplitResult,
                 sender_class: type[BatchSender]) -> None:
        where = f"publisher URL {redact_url(url)!r}"
        try:
            pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        except ValueError as exc:
            raise ConfigError(f"{where}: malformed query string: {exc}") from exc
        for name, _ in pairs:
            if name in REMOVED_OPTIONS:
                raise ConfigError(f"{where}: parameter {name!r} was removed: "
                                  f"{REMOVED_OPTIONS[name]}")
        mine = [(k, v) for k, v in pairs if k in self.OPTIONS]
        theirs = [(k, v) for k, v in pairs if k not in self.OPTIONS]
        super().__init__(conf, url._replace(query=urllib.parse.urlencode(mine)))
        self.url = url
        self.log = logging.getLogger(sender_class.__module__)
        self.sender = sender_class(conf, url._replace(query=urllib.parse.urlencode(theirs)))
        self.batch_size: int = (self.options["batch_size"]
                                or int(getattr(sender_class, "batch_size", 500)))
        self.retry_backoff: float = self.options["retry_backoff"]
        self.max_backoff: float = self.options["max_backoff"]
        self.settings = spool_settings(conf)
        self.spool = Spool(self.settings.directory / spool_name(url), self.settings.fsync)
        self._describe_spool()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False
        self._deadline = float("inf")
        self._retry_at = 0.0
        self._attempts = 0
        self._inflight = 0  # seq of the last batch being sent (never dropped by bounds)
        if self.spool.depth:
            self.log.warning("publisher %s: %d samples from an earlier run wait in the spool "
                             "%s; delivering them first", self.redacted_url, self.spool.depth,
                             self.spool.directory)

    def _describe_spool(self) -> None:
        try:
            (self.spool.directory / "url").write_text(self.redacted_url + "\n")
        except OSError:
            pass  # only a hint for operators

    # --- accepting --------------------------------------------------------------
    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Commit ``samples`` to the spool; never blocks on the sink, never raises."""
        size = self.batch_size
        for i in range(0, len(samples), size):
            self._accept(samples[i:i + size])
        if samples and not self._closed:
            self._enforce_bounds()

    def _accept(self, samples: Sequence[Sample]) -> None:
        body, count, bad = encode_batch(samples)
        for sample, why in bad:
            self._failed(f"dropped a {sample.name} sample that cannot be encoded: {why}", 1,
                         error=False, drop_reason="unencodable")
        if not count:
            return
        oldest = min(s.cycle_start if s.cycle_start is not None else s.timestamp
                     for s in samples)
        with self._cond:
            closed = self._closed or self._closing
            if not closed:
                try:
                    self.spool.append(body, count, oldest)
                except sqlite3.Error as exc:
                    self._failed(f"cannot write to the spool {self.spool.directory}: {exc}; "
                                 f"samples dropped", count, drop_reason="spool_write")
                    return
                self._start_sender()
                self._cond.notify_all()
        if closed:
            self._failed("publisher is closed; samples dropped", count, error=False,
                         level=logging.WARNING, drop_reason="closed")

    def _start_sender(self) -> None:
        if self._thread is None:
            self._warn_orphans()
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"zkpoll-sender-{self.url.scheme}")
            self._thread.start()

    def _warn_orphans(self) -> None:
        """Once per spool root and process: name spools that hold samples nobody sends
        (a publisher removed from the configuration, or an agent gone for good)."""
        root = self.settings.directory
        with _ORPHANS_LOCK:
            if root in _ORPHANS_CHECKED:
                return
            _ORPHANS_CHECKED.add(root)
        for directory, count in orphaned_spools(root):
            try:
                url = (directory / "url").read_text().strip()
            except OSError:
                url = "unknown"
            self.log.warning("spool %s (publisher %s) holds %d undelivered samples that no "
                             "running agent sends: configure that publisher again to deliver "
                             "them, or delete the directory", directory, url, count)

    def _enforce_bounds(self) -> None:
        """Apply spool_max_bytes and spool_max_age; count and log what they drop."""
        settings = self.settings
        try:
            by_age, by_size = self.spool.enforce_bounds(
                settings.max_bytes, settings.max_age, time.time(), keep_through=self._inflight)
        except sqlite3.Error as exc:
            self.log.error("publisher %s: cannot apply the spool bounds: %s",
                           self.redacted_url, exc)
            return
        for entries, reason, bound in ((by_age, "max_age", f"spool_max_age={settings.max_age:g}s"),
                                       (by_size, "max_bytes",
                                        f"spool_max_bytes={settings.max_bytes}")):
            if entries:
                self._dropped_oldest(entries, reason, bound)

    def _dropped_oldest(self, entries: Sequence[Entry], reason: str, bound: str) -> None:
        count = sum(e.count for e in entries)
        with self._stats_lock:
            self._dropped += count
            self._drops[reason] += count
            total = self._drops[reason]
        pending = self._drop_log.hit(reason, count)
        if pending is not None:
            self.log.error("publisher %s: spool bound %s reached: DROPPED the %d oldest "
                           "undelivered samples (polled from %s); %d dropped for %s since "
                           "start (logged at most once a minute)", self.redacted_url, bound,
                           pending, time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                  time.gmtime(entries[0].oldest)),
                           total, reason)

    # --- sending ------------------------------------------------------------------
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
                    self.log.exception("publisher %s: cannot read or update the spool %s",
                                       self.redacted_url, self.spool.directory)
                    self._retry_later(f"spool error: {type(exc).__name__}: {exc}")
            self._enforce_bounds()

    def _send_head(self) -> None:
        chunk = self.spool.head(self.batch_size)
        samples: list[Sample] = []
        corrupt: list[int] = []
        for entry, body in chunk:
            try:
                samples.extend(decode_batch(body))
            except ValueError as exc:
                corrupt.append(entry.seq)
                self._failed(f"a spooled batch is unreadable ({exc}); dropped", entry.count,
                             error=False, drop_reason="corrupt")
        if corrupt:
            self.spool.drop(corrupt)
        if not chunk or corrupt:
            return
        last = chunk[-1][0].seq
        self._inflight = last
        try:
            self.sender.send(samples)
        except BatchRejected as exc:
            count = sum(e.count for e in self.spool.ack(last))
            rejected = count if exc.rejected is None else min(count, exc.rejected)
            if count > rejected:
                self._delivered(count - rejected)
            self._failed(f"the sink rejected {rejected} of {count} samples for good: {exc}; "
                         f"dropped", rejected, drop_reason="rejected")
            self._attempts = 0
        except PublishError as exc:
            self._retry_later(str(exc))
        except Exception as exc:  # a bug in a sender must not stop delivery
            self.log.exception("publisher %s: unexpected error in the sender",
                               self.redacted_url)
            self._retry_later(f"unexpected {type(exc).__name__}: {exc}")
        else:
            removed = self.spool.ack(last)
            self._attempts = 0
            self._delivered(sum(e.count for e in removed))
        finally:
            self._inflight = 0

    def _retry_later(self, reason: str) -> None:
        self._attempts += 1
        delay = backoff_delay(self._attempts, self.retry_backoff, self.max_backoff,
                              random.uniform(0.5, 1.0))
        with self._cond:
            self._retry_at = time.monotonic() + delay
        self._failed(f"delivery failed ({self.spool.depth} samples waiting in the spool, "
                     f"retrying without limit): {reason}", level=logging.WARNING)

    # --- state and shutdown -----------------------------------------------------------
    def _queue_depth(self) -> int:
        return self.spool.depth

    def _backlog(self) -> tuple[int, float | None, int | None]:
        return self.spool.depth, self.spool.oldest(), self.spool.size

    def probe(self) -> bool | None:
        """True once a delivery worked since the last failure, False while the
        spooled backlog keeps failing, None when there is nothing to tell."""
        health = self.health
        if not health.failing:
            return True if health.last_success is not None else None
        return False if health.depth else None

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what the sink takes within ``timeout`` s; the rest stays on disk."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._deadline = time.monotonic() + max(0.0, timeout)
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout) + 1.0)
        with self._cond:
            self._closed = True
            left = self.spool.depth
            if thread is None or not thread.is_alive():
                self.spool.close()
                self.sender.close()
        if left:
            self.log.warning("publisher %s: %d undelivered samples stay in the spool %s "
                             "and are sent after the next start", self.redacted_url, left,
                             self.spool.directory)
