"""The alarm evaluator agent: definitions, membership and one loop per interval.

Like the polling agent (``zkpoll.polling.agent``), in explicit steps::

    agent = AlarmAgent(conf)
    agent.setup()   # alarm definitions, data sources, notifiers, coordinator (no I/O)
    agent.start()   # connect, join the evaluator group, start the loops
    agent.stop()    # graceful: announce leave, finish the cycles before it, leave

Alarm ids are partitioned through the group ``<[alarm]
partitioning_group_prefix>-alarm`` exactly as resources are for polling:
one "source" ``alarms-<interval>s`` per evaluation interval, whose keys
are the ids of the enabled alarms with that interval, claimed write-ahead
each cycle through :class:`zkpoll.ownership.Partition` (settle on join and
leave, same-cycle catch-up after a crash, fencing and resume).  Without a
``backend_url`` the agent evaluates every alarm itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from zkpoll.alarm import options
from zkpoll.alarm.audit import EvaluationLog
from zkpoll.alarm.definitions import AlarmDefinition, AlarmSet, load_alarm_dir
from zkpoll.alarm.endpoint import alarm_api
from zkpoll.alarm.evaluator import CycleReport, Evaluator, Query
from zkpoll.alarm.notify import Notifiers
from zkpoll.alarm.queries import PrometheusQuery, SamplesQuery
from zkpoll.alarm.state import STATES
from zkpoll.alarm.store import AlarmStore
from zkpoll.coordination import Coordinator, get_coordinator
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.endpoint.server import ApiServer
from zkpoll.exceptions import ConfigError, CoordinatorUnreachable
from zkpoll.ownership import Partition, Poll, PollKind
from zkpoll.service.cycles import CycleClock, source_offset
from zkpoll.service.options import check_timing, new_partition

__all__ = ["AlarmAgent", "source_name"]

LOG = logging.getLogger(__name__)
#: The cycle log line's verb per poll kind.
_EVALUATED = {PollKind.CYCLE: "evaluated", PollKind.CATCH_UP: "catch-up: evaluated",
              PollKind.RESUME: "resumed: evaluated"}


def source_name(interval: int) -> str:
    """The ownership source of the alarms evaluated every ``interval`` seconds."""
    return f"alarms-{interval}s"


class AlarmAgent:
    """One evaluator process (see the module docstring for the steps)."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.alarms = AlarmSet("", (), ())
        self.coordinator: Coordinator | None = None
        self.partition: Partition | None = None
        self.group = ""
        self.store: AlarmStore | None = None
        self.notifiers: Notifiers | None = None
        self.evaluator: Evaluator | None = None
        self.api: ApiServer | None = None
        self.last_reports: dict[str, CycleReport] = {}
        self._loops: dict[int, threading.Thread] = {}
        self._by_interval: dict[int, dict[str, AlarmDefinition]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._leaving = threading.Event()
        self._leave_at: float | None = None

    # --- setup ------------------------------------------------------------------
    def setup(self) -> None:
        """Validate and load everything; raise ConfigError on the first problem."""
        aconf = self.conf.alarm
        self.alarms = load_alarm_dir(options.definitions_dir(self.conf))
        queries = self._queries(self.alarms)
        self.coordinator = get_coordinator(self.conf)
        if not isinstance(self.coordinator, StandaloneCoordinator):
            check_timing(self.conf.coordination.settle_time,
                         self.conf.coordination.heartbeat_interval,
                         self.coordinator.session_timeout)
        self.group = options.group_name(self.conf)
        self.store = AlarmStore(self.coordinator, self.group,
                                timeout=max(1.0, self.coordinator.session_timeout / 2))
        self.notifiers = Notifiers(self.conf, aconf.spool_dir, self._action_urls(self.alarms))
        audit = EvaluationLog(aconf.evaluation_log) if aconf.evaluation_log else None
        self.evaluator = Evaluator(self._member_id, self.store, queries,
                                   self.notifiers.notify, aconf.max_parallel_queries, audit)
        self._set_alarms(self.alarms)
        if self.conf.api.bind:
            self.api = alarm_api(self, self.conf.api.bind)

    def _queries(self, alarms: AlarmSet) -> dict[str, Query]:
        aconf = self.conf.alarm
        types = {a.type for a in alarms.alarms}
        queries: dict[str, Query] = {}
        if aconf.prometheus_url:
            queries["prometheus"] = PrometheusQuery(aconf.prometheus_url, aconf.query_timeout,
                                                    aconf.prometheus_verify,
                                                    aconf.prometheus_ca_file)
        elif "prometheus" in types:
            first = next(a for a in alarms.alarms if a.type == "prometheus")
            raise ConfigError(f"{first.location} (alarm {first.id!r}): a prometheus alarm "
                              "needs [alarm] prometheus_url")
        queries["threshold"] = SamplesQuery(aconf.sample_endpoints, aconf.query_timeout,
                                            aconf.sample_max_age)
        if "threshold" in types and not aconf.sample_endpoints:
            first = next(a for a in alarms.alarms if a.type == "threshold")
            raise ConfigError(f"{first.location} (alarm {first.id!r}): a threshold alarm "
                              "needs [alarm] sample_endpoints (the polling agents' [api] "
                              "bind URLs)")
        return queries

    @staticmethod
    def _action_urls(alarms: AlarmSet) -> list[str]:
        urls = {url for a in alarms.alarms for state in STATES for url in a.actions_for(state)}
        return sorted(urls)

    def _set_alarms(self, alarms: AlarmSet) -> None:
        by_interval: dict[int, dict[str, AlarmDefinition]] = {}
        for interval, defs in alarms.by_interval().items():
            by_interval[interval] = {a.id: a for a in defs}
        with self._lock:
            self.alarms = alarms
            self._by_interval = by_interval

    def _member_id(self) -> str:
        return self.coordinator.member_id if self.coordinator else "unknown"

    # --- run --------------------------------------------------------------------
    def start(self) -> None:
        """Connect, join the evaluator group and start one loop per interval."""
        assert self.coordinator is not None, "call setup() first"
        try:
            self.coordinator.start(timeout=self.conf.coordination.start_timeout)
        except CoordinatorUnreachable as exc:
            LOG.error("%s; alarms wait until it answers", exc)
        if not isinstance(self.coordinator, StandaloneCoordinator):
            self.partition = new_partition(self.coordinator, self.group, self.conf.coordination)
            self.partition.on_poll = self._on_poll
            self.partition.join(self._member_data())
        else:  # the only member: join so that its state writes pass the fence
            self.coordinator.join(self.group, self._member_data())
        if self.api is not None:
            self.api.start()
        self._start_loops()
        LOG.info("alarm evaluator %s: %d alarm(s) from %s in %d interval(s); group %s",
                 self.coordinator.member_id, len(self.alarms.alarms), self.alarms.directory,
                 len(self._by_interval), self.group if self.partition else "none (standalone)")

    def _member_data(self) -> dict[str, Any]:
        """What ``zkpoll-status`` reads: the interval sources (as polling agents' sources)."""
        with self._lock:
            intervals = sorted(self._by_interval)
        return {MemberData.NAMESPACE: "alarm", MemberData.ROLE: "alarm-evaluator",
                MemberData.WEIGHT: self.conf.coordination.weight,
                MemberData.METERS: {source_name(i): ["alarms"] for i in intervals},
                MemberData.INTERVALS: {source_name(i): i for i in intervals}}

    def _start_loops(self) -> None:
        with self._lock:
            intervals = sorted(self._by_interval)
        for interval in intervals:
            if interval not in self._loops or not self._loops[interval].is_alive():
                thread = threading.Thread(target=self._loop, args=(interval,), daemon=True,
                                          name=f"zkpoll-alarms-{interval}s")
                self._loops[interval] = thread
                thread.start()

    def _alarms_of(self, interval: int, ids: Sequence[str] | None = None
                   ) -> list[AlarmDefinition]:
        with self._lock:
            known = self._by_interval.get(interval, {})
            if ids is None:
                return [known[i] for i in sorted(known)]
            return [known[i] for i in ids if i in known]

    def _loop(self, interval: int) -> None:
        source = source_name(interval)
        offset = source_offset(source, interval)
        cycles = CycleClock(f"alarms every {interval}s", interval, offset, self._stop,
                            self._leaving, lambda: self._leave_at)
        for index, start in cycles:
            alarms = self._alarms_of(interval)
            if not alarms and interval not in self._by_interval:
                LOG.info("no alarm has evaluation_interval %ds any more: its loop ends",
                         interval)
                return
            self._run_cycle(source, interval, index, start, alarms)

    def _run_cycle(self, source: str, interval: int, index: int, start: float,
                   alarms: Sequence[AlarmDefinition]) -> None:
        assert self.evaluator is not None
        keys = [a.id for a in alarms]
        if self.partition is None:
            owned: Sequence[str] | None = keys
        else:
            owned = self.partition.plan_cycle(source, index, start, interval, keys)
        if owned is None:
            report = CycleReport(source, index, start, PollKind.CYCLE, failed="fenced")
            self._log(report)
            self.last_reports[source] = report
            return
        try:
            report = self.evaluator.evaluate_cycle(source, index, start,
                                                   self._alarms_of(interval, owned))
        except Exception:  # a bug must not kill the loop
            LOG.exception("alarms every %ds: cycle %d failed", interval, index)
            return
        self.last_reports[source] = report
        if self.partition is not None and not report.failed:
            self.partition.cycle_done(source, index, report.owned)
        self._log(report)

    def _on_poll(self, poll: Poll) -> None:
        """Catch-up (a vanished member's share) or resume (ours, skipped while fenced)."""
        assert self.evaluator is not None
        interval = _interval_of(poll.source)
        if interval is None:
            return
        report = self.evaluator.evaluate_cycle(poll.source, poll.index, poll.start,
                                               self._alarms_of(interval, poll.keys),
                                               kind=poll.kind)
        self._log(report)

    def _log(self, report: CycleReport) -> None:
        if report.failed:
            LOG.warning("%s cycle %d: NOT evaluated: %s", report.source, report.index,
                        report.failed)
            return
        what = _EVALUATED[report.kind]
        if report.unevaluated:
            LOG.warning("%s cycle %d: %d alarm(s) NOT evaluated: %s", report.source,
                        report.index, report.unevaluated, report.backend_error)
        level = logging.WARNING if report.lost or report.errors else logging.INFO
        LOG.log(level, "%s cycle %d: %s %d of %d owned alarm(s) in %.3fs (%d already "
                "evaluated, %d lost to another writer, %d query errors, %d transitions, "
                "%d notifications)", report.source, report.index, what, report.evaluated,
                report.owned, report.duration, report.already, report.lost, report.errors,
                report.transitions, report.notifications)

    # --- stop / reload ------------------------------------------------------------
    def stop(self, graceful: bool = True) -> None:
        """Stop evaluating; with ``graceful``, hand over without gap or duplicate."""
        if graceful and self.partition is not None:
            try:
                self._leave_at = max(time.time(), self.partition.announce_leave(wait=5.0))
            except CoordinatorUnreachable as exc:
                LOG.error("could not announce the leave: %s", exc)
                self._leave_at = time.time()
            self._leaving.set()
            LOG.info("graceful stop: evaluating the cycles that start in the next %.1fs, "
                     "then handing over", max(0.0, self._leave_at - time.time()))
            for thread in list(self._loops.values()):
                thread.join(max(0.0, self._leave_at - time.time())
                            + self.conf.alarm.query_timeout * 2 + 5.0)
        self._stop.set()
        self._leaving.set()
        for thread in list(self._loops.values()):
            thread.join(self.conf.alarm.query_timeout * 2 + 5.0)
        if self.partition is not None:
            try:
                self.partition.leave(wait=5.0)
            except CoordinatorUnreachable as exc:
                LOG.warning("%s", exc)
        if self.coordinator is not None:
            self.coordinator.stop()
        if self.evaluator is not None:
            self.evaluator.close()
            if self.evaluator.audit is not None:
                self.evaluator.audit.close()
        if self.notifiers is not None:
            self.notifiers.close(timeout=5.0)
        if self.api is not None:
            self.api.stop()
        LOG.info("alarm evaluator stopped")

    @property
    def stopping(self) -> bool:
        """True once a stop (graceful or not) has begun."""
        return self._leave_at is not None or self._stop.is_set()

    def reload(self) -> None:
        """SIGHUP: reload the alarm definitions (validated first; kept on error)."""
        try:
            alarms = load_alarm_dir(options.definitions_dir(self.conf))
            self._queries(alarms)  # the data sources the new alarms need are configured
        except ConfigError as exc:
            LOG.error("reload refused, keeping the %d running alarm(s): %s",
                      len(self.alarms.alarms), exc)
            return
        before = {a.id: a for a in self.alarms.alarms}
        after = {a.id: a for a in alarms.alarms}
        if self.notifiers is not None:
            self.notifiers.ensure(self._action_urls(alarms))
        self._set_alarms(alarms)
        if not self._stop.is_set() and self._leave_at is None:
            self._start_loops()
            if self.partition is not None:
                self.partition.update(self._member_data())
        changed = sum(1 for i in after if i in before and after[i] != before[i])
        LOG.info("reloaded %s: %d alarm(s): %d added, %d removed, %d changed",
                 alarms.directory, len(after), len(after.keys() - before.keys()),
                 len(before.keys() - after.keys()), changed)


def _interval_of(source: str) -> int | None:
    if source.startswith("alarms-") and source.endswith("s"):
        number = source[len("alarms-"):-1]
        if number.isdigit():
            return int(number)
    return None

