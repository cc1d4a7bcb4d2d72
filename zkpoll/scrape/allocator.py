"""zkpoll as a Prometheus target allocator: the ``prometheus.allocate`` pollster.

The pollster scrapes nothing and yields no samples.  Each cycle it is given
the targets this member owns of its source and records them
(:class:`AllocationBook`); the agent's endpoint serves them at ``/sd/SOURCE``
in Prometheus's ``http_sd`` format (:mod:`zkpoll.endpoint.sd`), so a
Prometheus or vmagent beside each agent scrapes exactly this member's
share (docs/allocator.md)::

    pollster.get_samples(context, owned)           # records, yields nothing
    served_groups(book.get(source), time.time(), latest_cycle)   # what /sd serves

**Only the current cycle is served.**  A member that owns none of the
source's targets in a cycle is not called at all, so an earlier record
must expire by itself.  :func:`served_groups` serves a record of the cycle
starting at ``S`` (interval ``I``) only while both hold:

* no later cycle of the source has completed on this agent
  (``latest_cycle``, the agent's last completed cycle start, is not after
  ``S``): a later cycle that did not call the pollster owned nothing;
* the wall clock is before ``S + I + slack(I)``: the next cycle starts at
  ``S + I``, and a member still owning targets then records them a moment
  later (discovery, ownership); :func:`slack` covers that moment, so a
  member that keeps its targets never serves an empty list in between,
  and a stuck or fenced agent stops serving shortly after.

The first rule ends a record as soon as the agent has finished a cycle
without it; the second one when the agent cannot finish cycles at all.
A record of the same cycle arriving later (a catch-up of a vanished
member's targets) is added to it; one of an older cycle is ignored.

Each served group carries the target's public labels (final: zkpoll's
``relabel_configs`` have run) plus ``__scheme__``, ``__metrics_path__``,
``__param_<name>`` (the first value of each query parameter) and
``__scrape_interval__`` / ``__scrape_timeout__`` when the target sets them,
so the scraper rebuilds the same URL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from zkpoll.exceptions import ConfigError
from zkpoll.plugin import PollingContext, Pollster
from zkpoll.sample import Sample
from zkpoll.scrape.targets import JobConfig, ScrapeTarget, build_target

__all__ = ["METER", "AllocatePollster", "Allocation", "AllocationBook", "sd_group",
           "served_groups", "slack", "to_target"]

LOG = logging.getLogger(__name__)

#: The pollster's entry-point name (namespace ``central``).
METER = "prometheus.allocate"
#: The discovery used when the source names neither ``resources`` nor ``discovery``.
DEFAULT_DISCOVERY = "prometheus_sd"


def slack(interval: float) -> float:
    """Seconds a record outlives its cycle: a quarter of the interval, at least
    1 s and at most the interval."""
    return min(interval, max(1.0, interval / 4))


@dataclass(frozen=True)
class Allocation:
    """The targets this member owns in one cycle of one source.

    ``interval``: the source's, in seconds (None: unknown, no wall-clock expiry).
    """

    source: str
    cycle_start: float
    interval: float | None
    targets: Mapping[str, ScrapeTarget]  #: by target id

    @property
    def expires(self) -> float | None:
        """Wall-clock time from which this record is no longer served (None: never)."""
        if not self.interval:
            return None
        return self.cycle_start + self.interval + slack(self.interval)


class AllocationBook:
    """The latest :class:`Allocation` of each source; thread-safe, records swapped whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Allocation] = {}

    def record(self, source: str, cycle_start: float, interval: float | None,
               targets: Mapping[str, ScrapeTarget]) -> Allocation:
        """Record ``targets`` owned in the cycle of ``source`` starting at
        ``cycle_start``; a later cycle replaces the record, the same cycle adds to
        it, an older one is ignored.  Returns the record kept."""
        with self._lock:
            known = self._latest.get(source)
            if known is not None and cycle_start < known.cycle_start:
                return known
            if known is not None and cycle_start == known.cycle_start:
                targets = {**known.targets, **targets}
            kept = Allocation(source, cycle_start, interval or None, dict(targets))
            self._latest[source] = kept
            return kept

    def get(self, source: str) -> Allocation | None:
        """The latest record of ``source``, or None."""
        with self._lock:
            return self._latest.get(source)

    def sources(self) -> list[str]:
        """Sources with a record."""
        with self._lock:
            return sorted(self._latest)


def _duration(seconds: float) -> str:
    """Seconds as a Prometheus duration (``15s``, ``1500ms``)."""
    return f"{seconds:g}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def sd_group(target: ScrapeTarget) -> dict[str, Any]:
    """One ``http_sd`` target group for ``target``: its address, its public labels
    and the reserved labels that rebuild its URL (repeated query parameters keep
    their first value only: ``__param_<name>`` holds one)."""
    parts = urlsplit(target.url)
    labels = dict(target.labels)
    labels["__scheme__"] = parts.scheme
    labels["__metrics_path__"] = unquote(parts.path)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        labels.setdefault(f"__param_{name}", value)
    if target.interval is not None:
        labels["__scrape_interval__"] = _duration(target.interval)
    if target.timeout is not None:
        labels["__scrape_timeout__"] = _duration(target.timeout)
    return {"targets": [parts.netloc], "labels": labels}


def served_groups(allocation: Allocation | None, now: float,
                  latest_cycle: float | None = None) -> list[dict[str, Any]]:
    """What ``/sd/SOURCE`` serves at wall-clock ``now`` (module docstring): the
    groups of ``allocation`` if it is the current cycle's, else none.

    :param latest_cycle: start of the source's latest cycle completed on this
        agent (None: unknown)
    """
    if allocation is None:
        return []
    if latest_cycle is not None and latest_cycle > allocation.cycle_start:
        return []
    expires = allocation.expires
    if expires is not None and now >= expires:
        return []
    return [sd_group(allocation.targets[tid]) for tid in sorted(allocation.targets)]


def to_target(resource: Any, job: JobConfig) -> ScrapeTarget | None:
    """The scrape target of one resource: a ``{"id", "target"}`` mapping (the
    ``prometheus_sd`` discovery), a :class:`ScrapeTarget`, or an address string
    (built for ``job``).  None when ``job``'s relabelling drops it; ConfigError
    when it is no target."""
    if isinstance(resource, ScrapeTarget):
        return resource
    if isinstance(resource, Mapping) and isinstance(resource.get("target"), ScrapeTarget):
        target: ScrapeTarget = resource["target"]
        return target
    if isinstance(resource, str):
        return build_target({"__address__": resource}, job)
    raise ConfigError(f"{resource!r} is not a scrape target (expected an address, a "
                      "ScrapeTarget or a mapping with one under 'target')")


class AllocatePollster(Pollster):
    """``prometheus.allocate``: records the targets this member owns; no samples.

    :attr:`book` holds the records the endpoint serves.
    """

    def __init__(self, conf: Any = None) -> None:
        super().__init__(conf)
        self.book = AllocationBook()
        self._problems: dict[str, frozenset[str]] = {}  # source -> last problems logged

    @property
    def default_discovery(self) -> str | None:
        return DEFAULT_DISCOVERY

    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> Iterable[Sample]:
        scrape = context.scrape
        job = scrape.job if scrape is not None else JobConfig(job_name=context.source)
        targets: dict[str, ScrapeTarget] = {}
        problems: set[str] = set()
        for resource in resources:
            try:
                target = to_target(resource, job)
            except ConfigError as exc:
                problems.add(f"{resource!r}: {exc}")
                continue
            if target is not None:
                targets[target.id] = target
        self._note_problems(context.source, problems)
        self.book.record(context.source, context.cycle_start, context.interval or None,
                         targets)
        return []

    def _note_problems(self, source: str, problems: set[str]) -> None:
        """Log the resources that are no target when that set changes (not each cycle)."""
        frozen = frozenset(problems)
        if frozen != self._problems.get(source, frozenset()):
            if frozen:
                shown = sorted(frozen)
                LOG.warning("source %s: %d resource(s) are not scrape targets and are not "
                            "served: %s", source, len(shown), "; ".join(shown[:3]))
            self._problems[source] = frozen
