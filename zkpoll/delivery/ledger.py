"""What a publisher delivered, failed and dropped: :class:`Ledger`, one per publisher.

Every publisher keeps one, the simple ones (:class:`zkpoll.publisher.base.Publisher`)
and the durable ones (:class:`zkpoll.delivery.loop.DeliveryLoop`, for the
network publishers and the alarm webhooks).  Counters:

- ``published``: items handed over for good (written, sent, acknowledged);
- ``dropped``: items lost, by reason in ``drops`` (``rejected``, ``max_age``,
  ``max_bytes``, ``corrupt``, ``closed``, ...);
- ``errors``: failed delivery operations (a write, a POST attempt, a
  rejection), retried ones included;
- ``lost_batches``: failed operations that lost items (a failed write or
  send of a publisher without a spool, a failed spool write, a rejection),
  by the reason their items are dropped under.

Every loss and failure is logged with the publisher's name, each distinct
message at once and then at most once a minute (:class:`~zkpoll.log_limit.LogLimiter`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from zkpoll.log_limit import LogLimiter

__all__ = ["Ledger", "PublisherHealth"]


@dataclass(frozen=True)
class PublisherHealth:
    """How one publisher is doing now (for /healthz, /metrics and zkpoll-status)."""

    failing_since: float | None = None  #: epoch time of the first failure since the last success
    last_success: float | None = None   #: epoch time of the last delivery that worked
    last_error: str | None = None       #: the latest failure, redacted
    depth: int = 0                      #: samples accepted, not yet delivered or dropped
    oldest: float | None = None         #: poll time of the oldest undelivered sample
    spool_bytes: int | None = None      #: bytes in the spool (None: no spool)
    drops: Mapping[str, int] = field(default_factory=dict)  #: samples dropped, by reason
    lost_batches: Mapping[str, int] = field(default_factory=dict)  #: by drop reason

    @property
    def failing(self) -> bool:
        """True while the latest delivery attempt failed."""
        return self.failing_since is not None

    @property
    def spooled(self) -> bool:
        """True when undelivered samples wait in a durable spool (a failure loses
        nothing yet); False for a publisher whose failed batch is lost."""
        return self.spool_bytes is not None


def _same(text: str) -> str:
    return text


class Ledger:
    """Counters, failure state and rate-limited logs of one publisher (thread-safe).

    :param log: where to log
    :param who: how log lines name the publisher (``publisher http://...``)
    :param redact: removes secrets from failure reasons before they are kept or logged
    """

    def __init__(self, log: logging.Logger, who: str,
                 redact: Callable[[str], str] = _same) -> None:
        self.log = log
        self.who = who
        self._redact = redact
        self._lock = threading.Lock()
        self.published = self.dropped = self.errors = 0
        self.drops: Counter[str] = Counter()
        self.lost_batches: Counter[str] = Counter()
        self.failing_since: float | None = None
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._error_log = LogLimiter()  # delivery errors: forgotten on success
        self._drop_log = LogLimiter()  # other losses: at most once a minute each

    def counts(self) -> dict[str, int]:
        """``published``, ``dropped`` and ``errors``, read together."""
        with self._lock:
            return {"published": self.published, "dropped": self.dropped,
                    "errors": self.errors}

    def health(self, depth: int, oldest: float | None,
               spool_bytes: int | None) -> PublisherHealth:
        """The failure state and drops, with the backlog the caller measured."""
        with self._lock:
            return PublisherHealth(self.failing_since, self.last_success, self.last_error,
                                   depth, oldest, spool_bytes, dict(self.drops),
                                   dict(self.lost_batches))

    def add_published(self, count: int) -> None:
        """Count ``count`` items as published without touching the failure state."""
        with self._lock:
            self.published += count

    def delivered(self, count: int) -> None:
        """Count ``count`` items as published; note a recovery after failures."""
        with self._lock:
            self.published += count
            self.failing_since = None
            self.last_success = time.time()
        if self._error_log.reset():
            self.log.info("%s: delivering again", self.who)

    def failed(self, reason: str, dropped: int = 0, *, error: bool = True,
               level: int = logging.ERROR, drop_reason: str = "failed") -> None:
        """Count a failure (and ``dropped`` items); log each distinct reason once a minute.

        ``error`` marks a failed delivery operation: it counts in ``errors``,
        marks the publisher failing until the next success, and is logged
        again at once after delivery has worked in between.  Dropped items
        are counted under ``drop_reason``, and a failed operation that
        dropped items as one lost batch under the same reason.
        """
        reason = self._redact(reason)
        with self._lock:
            self.errors += int(error)
            self.dropped += dropped
            if dropped:
                self.drops[drop_reason] += dropped
                if error:
                    self.lost_batches[drop_reason] += 1
            if error:
                self.last_error = reason
                if self.failing_since is None:
                    self.failing_since = time.time()
        repeats = (self._error_log if error else self._drop_log).hit(reason)
        if repeats is None:
            self.log.debug("%s: %s", self.who, reason)
        else:
            suffix = "" if repeats == 1 else f" (x{repeats} in the last minute)"
            self.log.log(level, "%s: %s%s", self.who, reason, suffix)

    def dropped_oldest(self, count: int, reason: str, bound: str, noun: str,
                       since: str) -> None:
        """Count ``count`` items a spool bound dropped; log it at ERROR, with the
        total for ``reason``, at most once a minute per reason."""
        with self._lock:
            self.dropped += count
            self.drops[reason] += count
            total = self.drops[reason]
        pending = self._drop_log.hit(reason, count)
        if pending is not None:
            self.log.error("%s: spool bound %s reached: DROPPED the %d oldest undelivered "
                           "%s (%s); %d dropped for %s since start (logged at most once a "
                           "minute)", self.who, bound, pending, noun, since, total, reason)
