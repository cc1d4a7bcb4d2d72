"""Evaluate a batch of alarms for one cycle: query, read state, decide, write, notify.

The decisions are :func:`zkpoll.alarm.rules.evaluate`'s (pure); this module
only carries them out, in an order that keeps the guarantees:

1. read every alarm's stored state (one batch); an alarm already evaluated
   for this cycle or a later one is left alone (never replayed);
2. query the datapoints (``[alarm] max_parallel_queries`` at once), at the
   cycle start so a catch-up sees what the first attempt would have seen;
3. compare-and-set the new states (one batch, fenced by the evaluator
   group's membership): a lost write means another member evaluated that
   alarm for this cycle, or this member is fenced; nothing else happens
   for it;
4. enqueue the notifications of the writes won (durably, in the spool),
   then record ``notified_seq`` with a second compare-and-set.  A crash
   between 3 and 4 leaves ``notified_seq < seq``: whoever evaluates the
   alarm next queues that transition's notification again (same
   idempotency key) *before* its own write, which counts it as sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from zkpoll.alarm.audit import EvaluationLog
from zkpoll.alarm.definitions import AlarmDefinition
from zkpoll.alarm.notify import Notification
from zkpoll.alarm.rules import (
    AlarmState,
    Datapoint,
    Outcome,
    evaluate,
    mark_notified,
    notification_body,
    transition_body,
)
from zkpoll.alarm.store import AlarmStore, Stored
from zkpoll.exceptions import CoordinationError, PublishError
from zkpoll.ownership import PollKind

__all__ = ["BATCH_SIZE", "CycleReport", "Evaluator", "EvaluatorStats", "Query"]

LOG = logging.getLogger(__name__)

#: ``query(alarm, cycle_start) -> Datapoint``
Query = Callable[[AlarmDefinition, float], Datapoint]

#: Alarms read, evaluated and written together: a backend timeout costs one batch,
#: not the member's whole share of the cycle.
BATCH_SIZE = 500

_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))


@dataclass
class CycleReport:
    """What one batch evaluation did (logged, and summed into the metrics)."""

    source: str
    index: int
    start: float
    kind: PollKind
    owned: int = 0
    evaluated: int = 0
    already: int = 0      # evaluated for this cycle before (by anyone): left alone
    lost: int = 0         # compare-and-set lost: someone else won, or fenced
    errors: int = 0       # queries that failed (counted as no data)
    transitions: int = 0
    notifications: int = 0
    redelivered: int = 0  # pending notifications of an earlier transition sent again
    unevaluated: int = 0  # alarms of batches the backend did not read or write in time
    backend_error: str = ""
    failed: str = ""      # why none was evaluated
    duration: float = 0.0


@dataclass
class EvaluatorStats:
    """Counters since start, for ``/metrics``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    evaluations: Counter[str] = field(default_factory=Counter)   # by outcome
    transitions: Counter[str] = field(default_factory=Counter)   # by new state
    lag_buckets: list[int] = field(default_factory=lambda: [0] * len(_LAG_BUCKETS))
    lag_sum: float = 0.0
    lag_count: int = 0
    last_lag: float = 0.0

    def observe_lag(self, lag: float, count: int) -> None:
        """Record ``count`` evaluations finished ``lag`` seconds after their cycle start."""
        with self.lock:
            for i, bound in enumerate(_LAG_BUCKETS):
                if lag <= bound:
                    self.lag_buckets[i] += count
            self.lag_sum += lag * count
            self.lag_count += count
            self.last_lag = lag

    def lag_histogram(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` buckets and the sum, Prometheus style."""
        with self.lock:
            buckets = [("+Inf" if b == float("inf") else f"{b:g}", n)
                       for b, n in zip(_LAG_BUCKETS, self.lag_buckets)]
            return buckets, self.lag_sum


class Evaluator:
    """Carries out evaluations for one member (see the module docstring)."""

    def __init__(self, member_id: Callable[[], str], store: AlarmStore,
                 queries: Mapping[str, Query], notify: Callable[[Sequence[Notification]], None],
                 max_parallel: int, audit: EvaluationLog | None = None,
                 batch_size: int = BATCH_SIZE) -> None:
        self.member_id = member_id
        self.batch_size = batch_size
        self.audit = audit
        self.store = store
        self.queries = dict(queries)
        self.notify = notify
        self.stats = EvaluatorStats()
        self._pool = futures.ThreadPoolExecutor(max_parallel, thread_name_prefix="zkpoll-query")
        #: alarm id -> (state, cycle start) after this member's latest evaluation
        self.latest: dict[str, tuple[AlarmState, float]] = {}
        self._latest_lock = threading.Lock()

    def _count(self, outcome: str, count: int = 1) -> None:
        with self.stats.lock:
            self.stats.evaluations[outcome] += count

    def close(self) -> None:
        """Stop the query threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def evaluate_cycle(self, source: str, index: int, start: float,
                       alarms: Sequence[AlarmDefinition], kind: PollKind = PollKind.CYCLE) -> CycleReport:
        """Evaluate ``alarms`` (this member's share) for cycle ``index`` starting at ``start``."""
        began = time.monotonic()
        report = CycleReport(source, index, start, kind, owned=len(alarms))
        for first in range(0, len(alarms), self.batch_size):
            chunk = alarms[first:first + self.batch_size]
            try:
                self._evaluate(report, chunk)
            except CoordinationError as exc:  # this chunk only: the next may get through
                report.unevaluated += len(chunk)
                report.backend_error = str(exc)
                self._count("backend_error", len(chunk))
        if alarms and report.unevaluated == len(alarms):
            report.failed = report.backend_error
        report.duration = time.monotonic() - began
        return report

    def _evaluate(self, report: CycleReport, alarms: Sequence[AlarmDefinition]) -> None:
        stored = self.store.read(a.id for a in alarms)
        todo = []
        for alarm in alarms:
            known = stored[alarm.id]
            if known.broken:
                self._count("unreadable_state")
            elif known.state.cycle >= report.index:
                report.already += 1
                self._count("already_evaluated")
            else:
                todo.append(alarm)
        points = self._query(todo, report.start)
        member, now = self.member_id(), time.time()
        decided: list[tuple[AlarmDefinition, Stored, Outcome]] = []
        errors: dict[str, str | None] = {}
        for alarm, point in zip(todo, points):
            if point.error:
                report.errors += 1
            errors[alarm.id] = point.error
            outcome = evaluate(alarm, stored[alarm.id].state, point, report.index, now, member)
            if outcome is not None:
                decided.append((alarm, stored[alarm.id], outcome))
        decided = self._resend(report, decided)
        versions = self.store.write([(a.id, o.state, s.version) for a, s, o in decided])
        if self.audit is not None:
            self.audit.write(
                {"t": time.time(), "alarm": a.id, "cycle": report.index, "start": report.start,
                 "member": member, "kind": report.kind,
                 "result": "lost" if versions.get(a.id) is None else "written",
                 "state": o.state.state, "seq": o.state.seq,
                 "transition": o.transition is not None, "value": o.state.last_value,
                 "error": errors.get(a.id)} for a, _, o in decided)
        won = []
        for alarm, _known, outcome in decided:
            if versions.get(alarm.id) is None:
                report.lost += 1
                self._count("lost")
                continue
            won.append((alarm, outcome, versions[alarm.id]))
            report.evaluated += 1
            self._count(outcome.state.state)
            if outcome.transition is not None:
                report.transitions += 1
                with self.stats.lock:
                    self.stats.transitions[outcome.transition.current] += 1
                LOG.info("alarm %s (%s): %s -> %s in cycle %d [seq %d]: %s", alarm.id,
                         alarm.name, outcome.transition.previous, outcome.transition.current,
                         report.index, outcome.transition.seq, outcome.transition.reason)
        self._deliver(report, won)
        self.stats.observe_lag(time.time() - report.start, report.evaluated)
        with self._latest_lock:
            for alarm, outcome, _ in won:
                self.latest[alarm.id] = (outcome.state, report.start)

    def _resend(self, report: CycleReport, decided: list[tuple[AlarmDefinition, Stored, Outcome]]
                ) -> list[tuple[AlarmDefinition, Stored, Outcome]]:
        """Queue the notifications of transitions stored earlier but never confirmed
        queued (an evaluator died in between) *before* writing the outcomes that count
        them as sent; outcomes whose resend cannot be queued are not written."""
        resends = [Notification(o.resend_key or "", url,
                                transition_body(a, o.resend, o.resend_key))
                   for a, _, o in decided if o.resend is not None for url in o.resend_actions]
        if not resends:
            return decided
        try:
            self.notify(resends)
        except PublishError as exc:
            LOG.error("cycle %d: %d earlier notification(s) could not be queued again (%s); "
                      "their alarms are not evaluated this cycle", report.index,
                      len(resends), exc)
            self._count("notify_error", sum(o.resend is not None for _, _, o in decided))
            return [(a, s, o) for a, s, o in decided if o.resend is None]
        report.redelivered += len(resends)
        return decided

    def _query(self, alarms: Sequence[AlarmDefinition], start: float) -> list[Datapoint]:
        def one(alarm: AlarmDefinition) -> Datapoint:
            query = self.queries.get(alarm.type)
            if query is None:
                return Datapoint(None, f"no data source for {alarm.type} alarms")
            try:
                return query(alarm, start)
            except Exception as exc:  # a query bug must not stop the batch
                LOG.exception("alarm %s: query failed", alarm.id)
                return Datapoint(None, f"query failed: {type(exc).__name__}: {exc}")

        if len(alarms) <= 1:
            return [one(a) for a in alarms]
        return list(self._pool.map(one, alarms))

    def _deliver(self, report: CycleReport,
                 won: Sequence[tuple[AlarmDefinition, Outcome, Any]]) -> None:
        """Queue the notifications of the writes won, then record the transitions'
        as queued (``notified_seq``); if queueing fails, the next evaluation resends."""
        batch = [Notification(o.key, url, notification_body(a, o))
                 for a, o, _ in won if o.actions and o.key for url in o.actions]
        if not batch:
            return
        try:
            self.notify(batch)
        except PublishError as exc:
            LOG.error("cycle %d: %d notification(s) could not be queued (%s); the next "
                      "evaluation of their alarms sends them", report.index, len(batch), exc)
            return
        report.notifications += len(batch)
        marks = [(a.id, mark_notified(o.state, o.state.seq), version) for a, o, version in won
                 if o.actions and o.key and o.state.notified_seq < o.state.seq]
        lost = [alarm_id for alarm_id, v in self.store.write(marks).items() if v is None]
        if lost:
            LOG.debug("alarms %s: notified_seq not recorded (written meanwhile)", lost)
