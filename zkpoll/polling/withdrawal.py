"""Per-source totals, and whether this agent can still do its share.

:class:`Health` keeps the counters the metrics endpoint exposes and
decides a *health withdrawal*: after ``threshold`` consecutive cycles in
which every publisher failed (nothing delivered, something failed or was
dropped, or its latest delivery attempt failed), or in which a cycle
overran its interval, the agent should hand its work over (the same handoff
as SIGTERM) and rejoin once healthy.  :meth:`Health.publishers_report`
says how each publisher is doing and which are degraded
(:func:`zkpoll.publisher.health.state`: a spooled publisher failing for longer
than ``[publisher] degraded_after``, one without a spool at its first lost
batch).  Degraded is reported, not withdrawn: withdrawal follows the cycle
rule above for every publisher, spooled or not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zkpoll.coordination.member_data import MemberData
from zkpoll.exceptions import CoordinationError
from zkpoll.ownership import Partition
from zkpoll.polling.runner import CycleStats
from zkpoll.publisher.base import Publisher
from zkpoll.publisher.health import DEGRADED, publisher_summary
from zkpoll.publisher.spool_options import degraded_after

__all__ = ["Health", "SourceTotals", "Withdrawal"]

LOG = logging.getLogger(__name__)

PUBLISHERS_FAILING = "every publisher failing"
#: Seconds between refreshes of the publishers' summary in the member data.
PUBLISHERS_REPORT_INTERVAL = 30.0
OVERRUNNING = "cycles overrunning their interval"


@dataclass
class SourceTotals:
    """Cumulative counters of one source, and its latest cycle."""

    cycles: int = 0
    samples: int = 0
    catch_up_samples: int = 0
    handoffs_out: int = 0   #: resources handed to another member (per-resource failover)
    handoffs_in: int = 0    #: resources another member handed to us
    unreachable_everywhere: int = 0  #: resources no member tried could reach
    errors: int = 0
    timeouts: int = 0
    last: CycleStats | None = None
    last_completed: int | None = None


class Health:
    """Totals per source and the withdrawal decision (thread-safe)."""

    def __init__(self, publishers: Sequence[Publisher], threshold: int) -> None:
        self.publishers = list(publishers)
        self.threshold = threshold
        self.totals: dict[str, SourceTotals] = {}
        self._lock = threading.Lock()
        self._last_counts = self._publisher_counts()
        self._publish_streak = 0
        self._overrun_streak = 0
        self.withdrawn: str | None = None
        self.withdrawn_at = 0.0

    def _publisher_counts(self) -> list[tuple[int, int]]:
        return [(s["published"], s["errors"] + s["dropped"])
                for s in (p.stats for p in self.publishers)]

    def record(self, stats: CycleStats, interval: float) -> None:
        """Count one cycle (or catch-up) of a source."""
        with self._lock:
            totals = self.totals.setdefault(stats.source, SourceTotals())
            totals.errors += stats.errors
            totals.timeouts += stats.timeouts
            totals.handoffs_out += stats.handed_off
            totals.handoffs_in += stats.handed_in
            totals.unreachable_everywhere += stats.gave_up
            if stats.catch_up:
                totals.catch_up_samples += stats.samples
                return
            totals.cycles += 1
            totals.samples += stats.samples
            totals.last = stats
            if not stats.fenced:
                totals.last_completed = stats.index
            self._overrun_streak = self._overrun_streak + 1 if stats.duration > interval else 0
            counts = self._publisher_counts()
            failing_now = [p.health.failing for p in self.publishers]
            failing = bool(counts) and all(
                now or (published == old_published and failed > old_failed)
                for now, (published, failed), (old_published, old_failed)
                in zip(failing_now, counts, self._last_counts))
            self._last_counts = counts
            self._publish_streak = self._publish_streak + 1 if failing else 0

    def publishers_report(self, now: float, degraded_after: float) -> dict[str, dict[str, Any]]:
        """Per publisher (redacted URL): :func:`publisher_summary`."""
        return {p.redacted_url: publisher_summary(p.health, now, degraded_after)
                for p in self.publishers}

    def degraded(self, now: float, degraded_after: float) -> dict[str, dict[str, Any]]:
        """The degraded publishers (:func:`zkpoll.publisher.health.state`)."""
        return {url: summary for url, summary in
                self.publishers_report(now, degraded_after).items()
                if summary["state"] == DEGRADED}

    def unhealthy(self) -> str | None:
        """Why this agent should withdraw now, or None (0 threshold: never)."""
        if not self.threshold:
            return None
        with self._lock:
            if self._publish_streak >= self.threshold:
                return f"{PUBLISHERS_FAILING} for {self._publish_streak} consecutive cycles"
            if self._overrun_streak >= self.threshold:
                return f"{OVERRUNNING} for {self._overrun_streak} consecutive cycles"
        return None

    def recovered(self, probation: float) -> bool:
        """While withdrawn: True once healthy again.

        Publishers that can probe (http) decide; otherwise the agent rejoins
        after ``probation`` seconds (it cannot measure overruns with no work).
        """
        if self.withdrawn is None:
            return True
        if self.withdrawn.startswith(PUBLISHERS_FAILING):
            answers = [p.probe() for p in self.publishers]
            if any(a is True for a in answers):
                return True
            if any(a is False for a in answers):
                return False
        return time.monotonic() - self.withdrawn_at >= probation

    def mark_withdrawn(self, reason: str | None) -> None:
        """Enter (reason) or leave (None) the withdrawn state; resets the streaks."""
        with self._lock:
            self.withdrawn = reason
            self.withdrawn_at = time.monotonic()
            self._publish_streak = self._overrun_streak = 0
            self._last_counts = self._publisher_counts()


class Withdrawal:
    """Acts on :class:`Health`: withdraw from every group, and rejoin later.

    Withdrawing is the SIGTERM handoff without exiting: ``leave_at`` is
    announced (with a ``withdrawn`` reason in the member data), the agent
    keeps running and probing, and rejoins with a fresh ``active_at``.
    """

    def __init__(self, health: Health, partitions: Mapping[str, Partition],
                 probation: float) -> None:
        self.health = health
        self.partitions = dict(partitions)
        self.probation = probation
        self._lock = threading.Lock()
        self._last_stand: str | None = None
        self._reported: tuple[str, ...] | None = None
        self._reported_at = 0.0

    def report_publishers(self) -> None:
        """Put the publishers' summary in the member data (``publishers``) for
        zkpoll-status: when a publisher's state changes, else every
        :data:`PUBLISHERS_REPORT_INTERVAL` seconds."""
        conf = self.health.publishers[0].conf if self.health.publishers else None
        now = time.time()
        report = self.health.publishers_report(now, degraded_after(conf))
        states = tuple(summary["state"] for summary in report.values())
        if states == self._reported and now - self._reported_at < PUBLISHERS_REPORT_INTERVAL:
            return
        for summary in report.values():
            if summary["last_error"]:
                summary["last_error"] = summary["last_error"][:200]
        try:
            for partition in self.partitions.values():
                partition.report({MemberData.PUBLISHERS: report})  # claims record: unwatched
        except CoordinationError as exc:
            LOG.debug("could not report the publishers' health: %s", exc)
            return
        self._reported, self._reported_at = states, now

    def check(self) -> None:
        """Called after each cycle: report the publishers, withdraw or rejoin."""
        if self.partitions:
            self.report_publishers()
        with self._lock:
            if self.health.withdrawn is not None:
                if self.health.recovered(self.probation):
                    LOG.warning("healthy again after withdrawal (%s): rejoining",
                                self.health.withdrawn)
                    for partition in self.partitions.values():
                        partition.rejoin()
                    self.health.mark_withdrawn(None)
                return
            reason = self.health.unhealthy()
            if reason is None:
                return
            now = time.time()
            if any(len(p.ring_at(now)) <= 1 for p in self.partitions.values()):
                if reason != self._last_stand:
                    LOG.error("unhealthy (%s) but the last active member: NOT withdrawing",
                              reason)
                    self._last_stand = reason
                return
            LOG.error("WITHDRAWING from %s: %s; handing the work over (same handoff as "
                      "SIGTERM) and probing until healthy",
                      ", ".join(p.group for p in self.partitions.values()), reason)
            for partition in self.partitions.values():
                partition.announce_leave(extra={MemberData.WITHDRAWN: reason})
            self.health.mark_withdrawn(reason)
