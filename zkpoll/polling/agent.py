"""The polling agent: configuration, plugins, membership and the cycle loops.

Start-up steps are explicit and ordered so that every configuration error
is reported before the agent joins any group::

    agent = Agent(conf, namespaces)
    agent.setup()      # polling YAML, plugins, publishers, coordinator (no I/O)
    agent.start()      # connect, join groups, start one scheduler thread per source
    agent.stop()       # graceful: announce leave, finish the cycles before it, leave

A namespace's resources are partitioned through the group
``<partitioning_group_prefix>-<namespace>`` (the namespace alone without a
prefix), except ``compute`` unless ``[compute] workload_partitioning`` is
set; without ``backend_url`` the agent owns everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

from oslo_config import cfg

from zkpoll.coordination import Coordinator, get_coordinator
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.endpoint.server import ApiServer
from zkpoll.exceptions import ConfigError, CoordinatorUnreachable
from zkpoll.ownership import Partition, ring_epoch
from zkpoll.polling import options
from zkpoll.polling.groups import group_name, partitioned_namespaces
from zkpoll.polling.latest import LatestSamples
from zkpoll.polling.overlap import OverlapMonitor
from zkpoll.polling.ownership_filter import OwnershipFilter
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo, load_plugins
from zkpoll.polling.reload import Planned, ReloadResult, reload_agent
from zkpoll.polling.runner import CycleStats, SourceRunner
from zkpoll.polling.sources import PollingConfig, Source
from zkpoll.polling.withdrawal import Health, Withdrawal
from zkpoll.publisher import load_publisher
from zkpoll.publisher.base import Publisher
from zkpoll.service.cycles import CycleClock, source_offset
from zkpoll.service.options import check_timing, new_partition

__all__ = ["Agent"]

LOG = logging.getLogger(__name__)


class Agent:
    """One polling agent process (see the module docstring for the steps)."""

    def __init__(self, conf: cfg.ConfigOpts, namespaces: Sequence[str]) -> None:
        self.conf = conf
        self.namespaces = list(dict.fromkeys(namespaces))
        self.polling: PollingConfig | None = None
        self.plugins = LoadedPlugins()
        self.publishers: dict[str, Publisher] = {}
        self.coordinator: Coordinator | None = None
        self.partitions: dict[str, Partition] = {}   # namespace -> partition
        self.ownership = OwnershipFilter()  # the runners' filter; holds no thread
        self.ownership.on_catch_up = self._on_catch_up
        self.monitors: list[OverlapMonitor] = []
        self._refused: dict[str, frozenset[str]] = {}  # group -> meters refused there
        self.health = Health([], 0)
        self.withdrawal = Withdrawal(self.health, {}, 0.0)
        self.api: ApiServer | None = None
        self.runners: list[SourceRunner] = []
        self.last_stats: dict[str, CycleStats] = {}
        self.latest: LatestSamples | None = None  # /samples, with [api] bind
        self._executor: futures.ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._leaving = threading.Event()   # wakes the loops to re-check leave_at
        self._leave_at: float | None = None

    # --- setup ----------------------------------------------------------------
    def setup(self) -> None:
        """Validate and load everything; raise ConfigError on the first problem."""
        options.register_opts(self.conf)
        if not self.namespaces:
            raise ConfigError("--polling-namespaces: give at least one namespace")
        self.polling = options.load_sources(self.conf)
        self.plugins = load_plugins(self.conf, self.namespaces)
        self.coordinator = get_coordinator(self.conf)
        if not isinstance(self.coordinator, StandaloneCoordinator):
            check_timing(self.conf.coordination.settle_time,
                         self.conf.coordination.heartbeat_interval,
                         self.coordinator.session_timeout)
        pconf = self.conf.polling
        if self.conf.api.bind:
            self.latest = LatestSamples()
        self._executor = futures.ThreadPoolExecutor(pconf.max_parallel_pollsters,
                                                    thread_name_prefix="zkpoll-poll")
        planned = self.plan(self.polling, self.plugins)
        hops = options.failover_hops(self.conf, self.coordinator)
        # Ownership first: the runners are built with it as their filter.
        for ns in self.partitioned_namespaces(planned):
            self.partitions[ns] = new_partition(self.coordinator, self.group_name(ns),
                                                self.conf.coordination, hops)
        self.ownership.attach(self.partitions)
        self.runners = [self.build_runner(source, pollsters, self.plugins)
                        for source, pollsters in planned]
        self.ownership.set_runners(self.runners)
        self.health = Health(list(self.publishers.values()), pconf.withdraw_after)
        if self.conf.api.bind:
            self.api = ApiServer(self, self.conf.api.bind)

    def plan(self, polling: PollingConfig, plugins: LoadedPlugins) -> list[Planned]:
        """(source, pollsters) of every source that polls a loaded meter, in order;
        ConfigError when none does (at start and on a reload)."""
        planned = []
        for source in polling.sources:
            meters = source.select_meters(plugins.pollsters)
            if not meters:
                LOG.warning("source %s (%s): no loaded pollster matches meters %s in "
                            "namespaces %s; it polls nothing", source.name, polling.path,
                            list(source.meters), self.namespaces)
                continue
            planned.append((source, [plugins.pollsters[m] for m in meters]))
        if not planned:
            raise ConfigError(f"{polling.path}: no source polls any loaded meter "
                              f"(namespaces {', '.join(self.namespaces)}; loaded meters: "
                              f"{', '.join(sorted(plugins.pollsters)) or 'none'})")
        return planned

    def build_runner(self, source: Source, pollsters: Sequence[PollsterInfo],
                     plugins: LoadedPlugins) -> SourceRunner:
        """The runner of one source (at start and on a reload)."""
        assert self._executor is not None, "call setup() first"
        pconf = self.conf.polling
        publishers = [self.publisher(url) for url in
                      (source.publishers or self.conf.publisher.default_publishers)]
        return SourceRunner(source, pollsters, plugins, publishers, self._executor,
                            self.ownership, self.conf, self._member_id,
                            timeout=min(pconf.pollster_timeout, source.interval),
                            batch_size=pconf.batch_size, latest=self.latest,
                            hand_off=self.ownership.hand_off)

    def publisher(self, url: str) -> Publisher:
        """The publisher of ``url``, loaded once and shared by every source naming it."""
        if url not in self.publishers:
            self.publishers[url] = load_publisher(self.conf, url)
        return self.publishers[url]

    def _member_id(self) -> str:
        return self.coordinator.member_id if self.coordinator else "unknown"

    def partitioned_namespaces(self, planned: Sequence[Planned]) -> list[str]:
        """Namespaces whose work ``planned`` splits with other agents."""
        return partitioned_namespaces(
            self.namespaces, (info.namespace for _, infos in planned for info in infos),
            coordinated=not isinstance(self.coordinator, StandaloneCoordinator),
            compute_partitioned=self.conf.compute.workload_partitioning)

    def group_name(self, namespace: str) -> str:
        """``<prefix>-<namespace>``, or the namespace alone without a prefix."""
        return group_name(self.conf.polling.partitioning_group_prefix, namespace)

    # --- run ------------------------------------------------------------------
    def start(self) -> None:
        """Connect, join the groups and start the scheduler threads."""
        assert self.coordinator is not None, "call setup() first"
        try:
            self.coordinator.start(timeout=self.conf.coordination.start_timeout)
        except CoordinatorUnreachable as exc:
            LOG.error("%s; partitioned sources wait until it answers", exc)
        longest = max(r.source.interval for r in self.runners)
        self.withdrawal = Withdrawal(self.health, self.partitions,
                                     probation=longest * max(1, self.health.threshold))
        for ns, partition in self.partitions.items():
            data = self.member_data(ns)
            partition.join(data)
            monitor = OverlapMonitor(
                self.coordinator, partition.group, ns,
                {m for meters in data[MemberData.METERS].values() for m in meters},
                self.conf.polling.overlap_fatal,
                lambda meters, group=partition.group: self._refuse(group, meters))
            monitor.start()
            self.monitors.append(monitor)
        if self.api is not None:
            self.api.start()
        for runner in self.runners:
            self.start_loop(runner)
        LOG.info("agent %s polling %d source(s) in namespaces %s; partitioned: %s",
                 self.coordinator.member_id, len(self.runners), ", ".join(self.namespaces),
                 ", ".join(self.group_name(ns) for ns in self.partitions) or "none")

    def _refuse(self, group: str, meters: frozenset[str]) -> None:
        self._refused[group] = meters
        refused = frozenset().union(*self._refused.values())
        for runner in self.runners:
            runner.refused_meters = refused

    def member_data(self, namespace: str) -> dict[str, Any]:
        """What this agent publishes in the group of ``namespace``."""
        sources = {r.source.name: sorted(i.meter for i in r.pollsters if i.namespace == namespace)
                   for r in self.runners}
        polled = {name: meters for name, meters in sources.items() if meters}
        return {MemberData.NAMESPACE: namespace, MemberData.WEIGHT: self.conf.coordination.weight,
                MemberData.METERS: polled,
                MemberData.INTERVALS: {r.source.name: r.source.interval for r in self.runners
                                       if r.source.name in polled}}

    def _loop(self, runner: SourceRunner) -> None:
        source = runner.source
        offset = source_offset(source.name, source.interval)
        cycles = CycleClock(f"source {source.name}", source.interval, offset, self._stop,
                            self._leaving, lambda: self._leave_at)
        for index, start in cycles:
            if runner not in self.runners:  # reload: gone -> end
                return
            self._run_one(runner, index, start)

    def _run_one(self, runner: SourceRunner, index: int, start: float) -> None:
        try:
            stats = runner.run_cycle(index, start)
        except Exception:  # a bug must not kill the source's thread
            LOG.exception("source %s: cycle %d failed", runner.source.name, index)
            return
        self.last_stats[runner.source.name] = stats
        self.health.record(stats, runner.source.interval)
        self.ownership.cycle_done(stats, sorted({i.namespace for i in runner.pollsters}))
        self._log_cycle(stats)
        if self.partitions and self._leave_at is None:
            self.withdrawal.check()

    def _on_catch_up(self, stats: CycleStats) -> None:
        self.health.record(stats, float("inf"))
        self._log_cycle(stats)

    def _log_cycle(self, stats: CycleStats) -> None:
        level = logging.WARNING if stats.errors or stats.timeouts or stats.fenced \
            or stats.publish_errors else logging.INFO
        if stats.handoff:
            polled = f"handoff: polled {stats.owned} resource(s) another member could not reach"
        elif stats.catch_up:
            what = ("resumed: polled our %d resource(s) skipped while fenced" if stats.resumed
                    else "catch-up: polled %d resource(s) inherited from a vanished member")
            polled = what % stats.owned
        elif stats.fenced:
            polled = f"FENCED: polled none of its {stats.resources} resource(s)"
        else:
            polled = f"polled {stats.owned} of {stats.resources} resource(s)"
        unreachable = f", {stats.unreachable} unreachable" if stats.unreachable else ""
        if stats.handed_off or stats.gave_up:
            unreachable += (f" ({stats.handed_off} handed off, {stats.gave_up} unreachable from "
                            "every member tried)")
        LOG.log(level, "source %s cycle %d: %s, %d samples in %.3fs, %d errors, %d timeouts, "
                "%d publish errors%s; %s", stats.source, stats.index, polled, stats.samples,
                stats.duration, stats.errors, stats.timeouts, stats.publish_errors,
                unreachable, self._ring_summary(stats.start))

    def _ring_summary(self, start: float) -> str:
        if not self.partitions:
            return "standalone"
        return ", ".join(f"group {p.group} ring {ring_epoch(p.membership, start)} with "
                         f"{len(p.ring_at(start))} member(s)" for p in self.partitions.values())

    def stop(self, graceful: bool = True) -> None:
        """Stop polling; with ``graceful``, hand the work over without gap or duplicate."""
        if graceful and self.partitions:
            leave_at = time.time()
            for partition in self.partitions.values():
                try:
                    leave_at = max(leave_at, partition.announce_leave(wait=5.0))
                except CoordinatorUnreachable as exc:
                    LOG.error("could not announce the leave: %s", exc)
            self._leave_at = leave_at
            self._leaving.set()
            LOG.info("graceful stop: polling the cycles that start in the next %.1fs, then "
                     "handing over", max(0.0, leave_at - time.time()))
            for thread in self._threads:
                thread.join(max(0.0, leave_at - time.time()) + self._longest_timeout())
        self._stop.set()
        self._leaving.set()
        for thread in self._threads:
            thread.join(self._longest_timeout())
        for partition in self.partitions.values():
            try:
                partition.leave(wait=5.0)
            except CoordinatorUnreachable as exc:
                LOG.warning("%s", exc)
        if self.coordinator is not None:
            self.coordinator.stop()
        for monitor in self.monitors:
            monitor.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for publisher in self.publishers.values():
            publisher.close(timeout=5.0)
        if self.api is not None:
            self.api.stop()
        LOG.info("agent stopped")

    def pollsters_of(self, meter: str) -> dict[str, Any]:
        """{source: the pollster of ``meter``} of every running source polling ``meter``
        (the endpoint's ``/sd`` reads the ``prometheus.allocate`` pollster's records)."""
        return {r.source.name: info.pollster for r in list(self.runners)
                for info in r.pollsters if info.meter == meter}

    @property
    def stopping(self) -> bool:
        """True once a stop (graceful or not) has begun."""
        return self._leave_at is not None or self._stop.is_set()

    def _longest_timeout(self) -> float:
        return max((r.timeout for r in self.runners), default=1.0) + 1.0

    # --- reload (SIGHUP); the logic is in zkpoll/polling/reload.py ----------------
    def reload(self) -> ReloadResult:
        """Reload the polling YAML and dynamic pollsters, validated first (SIGHUP)."""
        return reload_agent(self)

    def start_loop(self, runner: SourceRunner) -> None:
        """Start the scheduler thread of a runner (at start, or added by :meth:`reload`)."""
        thread = threading.Thread(target=self._loop, args=(runner,),
                                  name=f"zkpoll-source-{runner.source.name}", daemon=True)
        thread.start()
        self._threads.append(thread)
