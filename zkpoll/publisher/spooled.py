"""A network publisher behind the durable spool: the publisher of every ``zkpoll.sender``.

``publish_samples`` encodes the samples (:mod:`zkpoll.publisher.spool_codec`)
and commits them to the spool before returning: from then on they count as
accepted.  Delivery is the one durable-delivery loop
(:class:`zkpoll.delivery.DeliveryLoop`): one sender thread per publisher
takes the oldest batches (up to ``batch_size`` samples), hands them to the
:class:`BatchSender` and deletes them once it returned.  A failed send is
retried, in order, with capped exponential backoff and jitter, without
limit; a batch the sink rejects for good (:class:`BatchRejected`) is
dropped.  Bounds (``[publisher] spool_max_bytes``, ``spool_max_age``) drop
the oldest batches.  Every drop is counted by reason and logged at ERROR
with its count.

Query-string options taken by the spool (the rest goes to the sender):
``batch_size`` (samples per send; default: the sender's), ``retry_backoff``
(1.0 s, doubled per failed attempt) and ``max_backoff`` (30.0 s).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from zkpoll.delivery import (
    DeliveryLoop,
    DeliverySettings,
    PublisherHealth,
    Sender,
    Spool,
)
from zkpoll.delivery.spool import orphaned_spools
from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import OptionSpec, Publisher, integer, number, redact_url
from zkpoll.publisher.sender import BatchSender
from zkpoll.publisher.spool_codec import decode_batch, encode_batch
from zkpoll.publisher.spool_options import spool_name, spool_settings
from zkpoll.sample import Sample

__all__ = ["REMOVED_OPTIONS", "SpooledPublisher"]

#: Options of the old in-memory queue, refused with the reason.
REMOVED_OPTIONS = {
    "max_retries": "the spool retries without limit; bound it with [publisher] "
                   "spool_max_age and spool_max_bytes",
    "max_queue": "samples wait in the durable spool; bound it with [publisher] "
                 "spool_max_bytes",
}

_ORPHANS_LOCK = threading.Lock()
_ORPHANS_CHECKED: set[Path] = set()  # spool roots already checked for orphans


class _SampleSender(Sender[Sample]):
    """The loop's view of a :class:`BatchSender`: spooled batches are samples."""

    def __init__(self, sender: BatchSender) -> None:
        self.sender = sender

    def decode(self, body: bytes) -> Sequence[Sample]:
        return decode_batch(body)

    def send(self, items: Sequence[Sample]) -> None:
        self.sender.send(items)

    def close(self) -> None:
        self.sender.close()


class SpooledPublisher(Publisher):
    """Spool + the delivery loop in front of a :class:`BatchSender` (module docstring)."""

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
        self.log = self.ledger.log = logging.getLogger(sender_class.__module__)
        self.ledger.who = f"publisher {self.redacted_url}"
        self.sender = sender_class(conf, url._replace(query=urllib.parse.urlencode(theirs)))
        self.batch_size: int = (self.options["batch_size"]
                                or int(getattr(sender_class, "batch_size", 500)))
        self.settings = spool_settings(conf)
        spool = Spool(self.settings.directory / spool_name(url), self.settings.fsync)
        self.spool = spool
        self._describe_spool()
        self.loop: DeliveryLoop[Sample] = DeliveryLoop(
            spool, _SampleSender(self.sender), self.ledger,
            DeliverySettings(self.batch_size, self.options["retry_backoff"],
                             self.options["max_backoff"], self.settings.max_bytes,
                             self.settings.max_age),
            thread_name=f"zkpoll-sender-{url.scheme}")
        self._started = False
        if spool.depth:
            self.log.warning("publisher %s: %d samples from an earlier run wait in the spool "
                             "%s; delivering them first", self.redacted_url, spool.depth,
                             spool.directory)

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
        if samples and not self.loop.closed:
            self.loop.enforce_bounds()

    def _accept(self, samples: Sequence[Sample]) -> None:
        body, count, bad = encode_batch(samples)
        for sample, why in bad:
            self._failed(f"dropped a {sample.name} sample that cannot be encoded: {why}", 1,
                         error=False, drop_reason="unencodable")
        if not count:
            return
        if not self._started:
            self._start_sender()
        oldest = min(s.cycle_start if s.cycle_start is not None else s.timestamp
                     for s in samples)
        try:
            accepted = self.loop.append(body, count, oldest)
        except sqlite3.Error as exc:
            self._failed(f"cannot write to the spool {self.spool.directory}: {exc}; "
                         f"samples dropped", count, drop_reason="spool_write")
            return
        if not accepted:
            self._failed("publisher is closed; samples dropped", count, error=False,
                         level=logging.WARNING, drop_reason="closed")

    def _start_sender(self) -> None:
        """Name the orphaned spools once, then let the loop's thread start."""
        with _ORPHANS_LOCK:
            if self._started:
                return
            self._started = True
            root = self.settings.directory
            first = root not in _ORPHANS_CHECKED
            _ORPHANS_CHECKED.add(root)
        if first:
            self._warn_orphans(root)

    def _warn_orphans(self, root: Path) -> None:
        """Name spools that hold samples nobody sends (a publisher removed from the
        configuration, or an agent gone for good)."""
        for directory, count in orphaned_spools(root):
            try:
                url = (directory / "url").read_text().strip()
            except OSError:
                url = "unknown"
            self.log.warning("spool %s (publisher %s) holds %d undelivered samples that no "
                             "running agent sends: configure that publisher again to deliver "
                             "them, or delete the directory", directory, url, count)

    # --- state and shutdown -----------------------------------------------------------
    def _queue_depth(self) -> int:
        return self.loop.depth

    @property
    def health(self) -> PublisherHealth:
        """Failure state, backlog in the spool and drops by reason."""
        return self.loop.health()

    def probe(self) -> bool | None:
        """True once a delivery worked since the last failure, False while the
        spooled backlog keeps failing, None when there is nothing to tell."""
        return self.loop.probe()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what the sink takes within ``timeout`` s; the rest stays on disk."""
        self.loop.close(timeout)
