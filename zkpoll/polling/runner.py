"""Run one cycle of one polling source: discover, partition, poll, publish.

Pollsters run concurrently in a bounded thread pool shared by all sources,
each with a deadline.  A pollster that raises, hangs or returns garbage is
logged with its name and counted; the rest of the cycle completes.  A
pollster still hung from an earlier cycle is skipped (not stacked) until it
returns, so hung plugins cannot exhaust the pool.

A pollster's :class:`~zkpoll.plugin.Unreachable` results are set apart from
its samples, counted (``CycleStats.unreachable``, ``unreachable_keys``) and
settled in one step once every call is in,
:meth:`SourceRunner._settle_unreachable`: the resources nothing reached are
handed to another member in the same cycle (``hand_off``, per-resource
failover), the rest publish each one's ``sample``
(:mod:`zkpoll.polling.unreachable`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from zkpoll.plugin import PollingContext, Unreachable, resource_key
from zkpoll.polling.latest import LatestSamples
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.sources import Source
from zkpoll.polling.unreachable import Settled, UnreachableBook
from zkpoll.publisher.base import Publisher
from zkpoll.sample import TYPES, Sample

__all__ = ["CycleStats", "HandOffKeys", "OwnedKeys", "SourceRunner"]

LOG = logging.getLogger(__name__)

#: (source, namespace, resource keys, cycle index, cycle start) -> owned keys, or
#: None when the agent must not poll that namespace's partitioned work this cycle
#: (:class:`zkpoll.polling.ownership_filter.OwnershipFilter` in the agent).
OwnedKeys = Callable[[str, str, Sequence[str], int, float], "Sequence[str] | None"]
#: (source, namespace, unreachable keys, cycle index, cycle start, members tried before
#: us) -> the keys given up on here, or None when that namespace has no failover
#: (:meth:`zkpoll.polling.ownership_filter.OwnershipFilter.hand_off` in the agent).
HandOffKeys = Callable[[str, str, Sequence[str], int, float, tuple[str, ...]],
                       "Sequence[str] | None"]


@dataclass
class CycleStats:
    """What one cycle did; also the content of the per-cycle log line."""

    source: str
    index: int
    start: float
    resources: int = 0
    owned: int = 0
    samples: int = 0
    errors: int = 0
    timeouts: int = 0
    fenced: bool = False
    catch_up: bool = False
    resumed: bool = False  #: a catch_up run of our own share, skipped while fenced
    duration: float = 0.0
    #: publishers whose latest delivery failed, plus samples they dropped since
    #: this source's previous cycle, plus publish calls that raised
    publish_errors: int = 0
    owned_keys: set[str] = field(default_factory=set)
    #: valid Unreachable results (one per meter and resource) and their resource keys
    unreachable: int = 0
    unreachable_keys: set[str] = field(default_factory=set)
    #: keys handed to another member, keys given up on (unreachable from every member
    #: tried), and keys a handoff gave us (``handoff``: this is such a poll)
    handed_off: int = 0
    gave_up: int = 0
    handed_in: int = 0
    handoff: bool = False


@dataclass(frozen=True)
class _Call:
    """One pollster call of a cycle: the pollster, and the resource keys it was given."""

    info: PollsterInfo
    keys: frozenset[str]


class SourceRunner:
    """Polls one source; :meth:`run_cycle` is called by the scheduler."""

    def __init__(self, source: Source, pollsters: Sequence[PollsterInfo],
                 plugins: LoadedPlugins, publishers: Sequence[Publisher],
                 executor: futures.ThreadPoolExecutor, ownership: OwnedKeys,
                 conf: Any, member_id: Callable[[], str], timeout: float,
                 batch_size: int, latest: LatestSamples | None = None,
                 hand_off: HandOffKeys | None = None) -> None:
        self.source = source
        self.pollsters = list(pollsters)
        self.plugins = plugins
        self.publishers = list(publishers)
        self.executor = executor
        self.ownership = ownership
        self.conf = conf
        self.member_id = member_id
        self.timeout = timeout
        self.batch_size = batch_size
        self.latest = latest  # served on /samples for alarm evaluators
        self.hand_off: HandOffKeys = hand_off or (lambda *args: None)
        self._handing: set[str] = set()  # keys handed off in our latest own cycle
        self._busy: dict[str, float] = {}  # meter -> start of a call still running
        self._busy_lock = threading.Lock()
        #: meters not to poll (another sub-group polls them; overlap_fatal)
        self.refused_meters: frozenset[str] = frozenset()
        # meter -> (cycle start, resources by key) of the latest cycle planned
        self._planned: dict[str, tuple[float, dict[str, Any]]] = {}
        self._dropped_seen = sum(p.stats["dropped"] for p in self.publishers)

    # --- resources ---------------------------------------------------------
    def _discover(self, name: str, context: PollingContext, stats: CycleStats) -> list[Any]:
        cache_key = f"discovery:{name}"
        if cache_key in context.cache:
            return context.cache[cache_key]
        plugin_name, _, param = name.partition("://")
        discovery = self.plugins.discoveries.get(plugin_name)
        found: list[Any] = []
        if discovery is None:
            stats.errors += 1
            LOG.error("source %s: unknown discovery %r (loaded: %s)", self.source.name,
                      plugin_name, ", ".join(sorted(self.plugins.discoveries)) or "none")
        else:
            try:
                found = list(discovery.discover(context, param or None))
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is logged and counted
                stats.errors += 1
                LOG.error("source %s: discovery %s failed: %s: %s", self.source.name, name,
                          type(exc).__name__, exc)
        context.cache[cache_key] = found
        return found

    def _resources(self, info: PollsterInfo, context: PollingContext,
                   stats: CycleStats) -> dict[str, Any]:
        """Resources for one pollster, keyed by their partitioning key."""
        resources: list[Any] = list(self.source.resources)
        names = list(self.source.discovery)
        if not resources and not names and info.pollster.default_discovery:
            names = [info.pollster.default_discovery]
        for name in names:
            resources.extend(self._discover(name, context, stats))
        keyed: dict[str, Any] = {}
        for resource in resources:
            try:
                keyed.setdefault(resource_key(resource), resource)
            except ValueError as exc:
                stats.errors += 1
                LOG.warning("source %s: skipping a resource: %s", self.source.name, exc)
        return keyed

    # --- cycle ---------------------------------------------------------------
    def run_cycle(self, index: int, start: float) -> CycleStats:
        """Poll cycle ``index`` (starting at wall-clock ``start``)."""
        began = time.monotonic()
        stats = CycleStats(self.source.name, index, start)
        context = PollingContext(self.conf, {}, self.source.name, start, self.timeout,
                                 self._meters(), self.source.scrape, frozenset(),
                                 float(self.source.interval))
        calls: dict[futures.Future[list[Any]], _Call] = {}
        book = UnreachableBook()
        owned_cache: dict[tuple[str, tuple[str, ...]], Sequence[str] | None] = {}
        plan: list[tuple[PollsterInfo, dict[str, Any]]] = []
        for info in self.pollsters:
            if info.meter in self.refused_meters:
                continue
            keyed = self._resources(info, context, stats)
            self._planned[info.meter] = (start, keyed)
            plan.append((info, keyed))
        context.discovered = frozenset(k for _, keyed in plan for k in keyed)
        for info, keyed in plan:
            keys = tuple(keyed)
            stats.resources = max(stats.resources, len(keys))
            cache_key = (info.namespace, keys)
            if cache_key not in owned_cache:
                owned_cache[cache_key] = self.ownership(self.source.name, info.namespace,
                                                        keys, index, start)
            owned = owned_cache[cache_key]
            if owned is None:
                stats.fenced = True
                continue
            stats.owned = max(stats.owned, len(owned))
            stats.owned_keys.update(owned)
            if owned and self._claim(info.meter):
                batch = [keyed[k] for k in owned]
                calls[self.executor.submit(self._call, info, context, batch)] = \
                    _Call(info, frozenset(owned))
                book.given(info.namespace, owned)
        self._collect(calls, stats, began, book)
        self._note_streak(self._settle_unreachable(book, stats, ()).handed)
        stats.duration = time.monotonic() - began
        stats.publish_errors += self._publish_problems()
        return stats

    def _note_streak(self, handed: Sequence[str]) -> None:
        """Say once when resources start being handed off from here, and once when
        they stop (a streak, not every cycle)."""
        now, before = set(handed), self._handing
        started, ended = sorted(now - before), sorted(before - now)
        if started:
            LOG.warning("source %s: %d resource(s) unreachable from here, handed to other "
                        "members each cycle until reachable again: %s", self.source.name,
                        len(started), _some(started))
        if ended:
            LOG.info("source %s: %d resource(s) no longer handed off from here: %s",
                     self.source.name, len(ended), _some(ended))
        self._handing = now

    def _publish_problems(self) -> int:
        """Publishers failing now plus samples dropped since the previous call."""
        dropped = sum(p.stats["dropped"] for p in self.publishers)
        new, self._dropped_seen = max(0, dropped - self._dropped_seen), dropped
        return new + sum(1 for p in self.publishers if p.health.failing)

    def planned_keys(self, namespace: str, start: float) -> list[str]:
        """Keys of ``namespace`` planned for the cycle starting at ``start``."""
        keys: dict[str, None] = {}
        for info in self.pollsters:
            planned = self._planned.get(info.meter)
            if info.namespace == namespace and planned is not None and planned[0] == start:
                keys.update(dict.fromkeys(planned[1]))
        return list(keys)

    def catch_up(self, index: int, start: float, namespace: str, keys: Sequence[str],
                 tried: tuple[str, ...] = ()) -> CycleStats:
        """Poll ``keys`` of ``namespace`` for cycle ``index`` now: inherited orphans,
        our share resumed, or (``tried``: the members that could not reach them)
        keys handed to us.

        Uses the resources discovered when the cycle was planned; keys not
        planned for that cycle are ignored.  A handoff may arrive before we
        planned its cycle (clocks differ a little): its resources are
        discovered now.
        """
        began = time.monotonic()
        stats = CycleStats(self.source.name, index, start, catch_up=True, handoff=bool(tried))
        planned = [p[1] for p in self._planned.values() if p[0] == start]
        context = PollingContext(self.conf, {}, self.source.name, start, self.timeout,
                                 self._meters(namespace), self.source.scrape,
                                 frozenset(k for keyed in planned for k in keyed)
                                 if planned else None, float(self.source.interval),
                                 catch_up=True)
        calls: dict[futures.Future[list[Any]], _Call] = {}
        book = UnreachableBook()
        for info in self.pollsters:
            if info.namespace != namespace or info.meter in self.refused_meters:
                continue
            planned = self._planned.get(info.meter)
            if planned is not None and planned[0] == start:
                keyed = planned[1]
            elif tried:
                keyed = self._resources(info, context, stats)
            else:
                continue
            given = [k for k in keys if k in keyed]
            stats.owned = max(stats.owned, len(given))
            if given:
                batch = [keyed[k] for k in given]
                calls[self.executor.submit(self._call, info, context, batch, False)] = \
                    _Call(info, frozenset(given))
                book.given(namespace, given)
        if tried:
            stats.handed_in = stats.owned
        self._collect(calls, stats, began, book)
        self._settle_unreachable(book, stats, tried)
        stats.duration = time.monotonic() - began
        return stats

    def _meters(self, namespace: str | None = None) -> tuple[str, ...]:
        """The meters a cycle (or a catch-up of ``namespace``) polls."""
        return tuple(info.meter for info in self.pollsters
                     if info.meter not in self.refused_meters
                     and (namespace is None or info.namespace == namespace))

    def _claim(self, meter: str) -> bool:
        with self._busy_lock:
            since = self._busy.get(meter)
            if since is not None:
                LOG.warning("source %s: pollster %s still running for %.1fs; skipped this "
                            "cycle", self.source.name, meter, time.monotonic() - since)
                return False
            self._busy[meter] = time.monotonic()
            return True

    def _call(self, info: PollsterInfo, context: PollingContext, resources: list[Any],
              claimed: bool = True) -> list[Any]:
        try:
            return list(info.pollster.get_samples(context, resources) or ())
        finally:
            if claimed:
                with self._busy_lock:
                    self._busy.pop(info.meter, None)

    def _collect(self, calls: dict[futures.Future[list[Any]], _Call], stats: CycleStats,
                 began: float, book: UnreachableBook) -> None:
        deadline = began + self.timeout
        pending = set(calls)
        while pending:
            done, pending = futures.wait(pending, timeout=max(0.0, deadline - time.monotonic()),
                                         return_when=futures.FIRST_COMPLETED)
            if not done:
                for call in pending:
                    stats.timeouts += 1
                    LOG.error("source %s: pollster %s did not return within %.1fs; its "
                              "samples for this cycle are lost", self.source.name,
                              calls[call].info.meter, self.timeout)
                return
            for call in done:
                info = calls[call].info
                try:
                    results = call.result()
                except Exception as exc:  # noqa: BLE001 - a plugin's failure is logged and counted
                    stats.errors += 1
                    LOG.error("source %s: pollster %s failed: %s: %s", self.source.name,
                              info.meter, type(exc).__name__, exc)
                    continue
                # Its samples now; its Unreachables once every call is in.
                samples, unreachable = self._separate(calls[call], results, stats)
                book.answered(info.namespace, info.meter, samples, unreachable)
                self._publish(info.meter, self._stamp(info.meter, samples, stats), stats)

    def _separate(self, call: _Call, results: list[Any],
                  stats: CycleStats) -> tuple[list[Any], list[Unreachable]]:
        """Split one call's results into the rest (samples, unchecked) and Unreachables.

        An Unreachable for a resource the call was not given, a second one for
        the same resource, or one beside a sample with its resource_id, breaks
        the contract: it is dropped, logged and counted as an error.
        """
        found = [r for r in results if isinstance(r, Unreachable)]  # the hot path: one pass
        if not found:
            return results, []
        rest = [r for r in results if not isinstance(r, Unreachable)]
        sampled = {r.resource_id for r in rest
                   if isinstance(r, Sample) and isinstance(r.resource_id, str)}
        kept: dict[str, Unreachable] = {}
        bad = 0
        for result in found:
            rid = result.resource_id
            if not isinstance(rid, str) or rid not in call.keys or rid in kept or rid in sampled:
                bad += 1
                continue
            kept[rid] = result
        if bad:
            stats.errors += 1
            LOG.error("source %s: pollster %s returned %d invalid Unreachable(s) (for a "
                      "resource not given, twice, or beside a sample); dropped",
                      self.source.name, call.info.meter, bad)
        stats.unreachable += len(kept)
        stats.unreachable_keys.update(kept)
        return rest, list(kept.values())

    def _settle_unreachable(self, book: UnreachableBook, stats: CycleStats,
                            tried: tuple[str, ...]) -> Settled:
        """The one place where the fate of resources this member cannot reach is
        decided: handed to another member in the same cycle (failover), or their
        Unreachables' samples published now (no failover, or given up)."""
        def hand_off(namespace: str, keys: Sequence[str]) -> Sequence[str] | None:
            return self.hand_off(self.source.name, namespace, keys, stats.index,
                                 stats.start, tried)
        settled = book.settle(hand_off)
        for meter, samples in settled.samples:
            self._publish(meter, self._stamp(meter, samples, stats), stats)
        stats.handed_off += len(settled.handed)
        stats.gave_up += len(settled.gave_up)
        return settled

    def _stamp(self, meter: str, samples: list[Any], stats: CycleStats) -> list[Sample]:
        """Keep valid samples and fill in the cycle fields."""
        good: list[Sample] = []
        source, member, start = self.source.name, self.member_id(), stats.start
        bad = 0
        for sample in samples:
            if (type(sample) is not Sample and not isinstance(sample, Sample)) \
                    or sample.type not in TYPES or not isinstance(sample.resource_id, str):
                bad += 1
                continue
            sample.source = source
            sample.member_id = member
            sample.cycle_start = start
            good.append(sample)
        if bad:
            stats.errors += 1
            LOG.error("source %s: pollster %s returned %d invalid sample(s) (not a Sample, "
                      "bad type or resource_id); dropped", self.source.name, meter, bad)
        stats.samples += len(good)
        return good

    def _publish(self, meter: str, samples: list[Sample], stats: CycleStats) -> None:
        if self.latest is not None:
            self.latest.record(samples)
        size = self.batch_size
        for publisher in self.publishers:
            for i in range(0, len(samples), size):
                try:
                    publisher.publish_samples(samples[i:i + size])
                except Exception as exc:  # noqa: BLE001 - a publisher must not raise; go on
                    stats.errors += 1
                    stats.publish_errors += 1
                    LOG.error("publisher %r raised %s: %s (samples of %s counted lost)",
                              publisher, type(exc).__name__, exc, meter)
                    break


def _some(keys: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more
