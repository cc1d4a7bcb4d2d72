"""``prometheus.scrape``: each target fetched once per cycle by its owner.

Resources are scrape targets: ``{"id", "target"}`` from the
``prometheus_sd`` discovery (its default), or plain ``host:port`` /
``http(s)://`` strings from a source's ``resources:``.  Per target, one
GET (:mod:`zkpoll.scrape.fetch`), one parse (:mod:`zkpoll.scrape.exposition`)
and, per series, a sample named as scraped with its labels: the
target's labels attached (``honor_labels``), then the source's
``metric_relabel_configs``.  Types: a counter's series and the ``_sum``,
``_count`` and ``_bucket`` of histograms and summaries are
``cumulative``; everything else (gauges, quantiles, untyped) ``gauge``.
Then, as Prometheus, ``up``, ``scrape_duration_seconds``,
``scrape_samples_scraped`` and ``scrape_samples_post_metric_relabeling``
with the target's labels.  A target over ``sample_limit`` or
``body_size_limit`` is a failed scrape: ``up`` 0, no series, one log line.

Every sample of a target has the target's key as ``resource_id`` and the
cycle's start as its time (the spool and remote write use ``cycle_start``),
so a target polled twice (a catch-up) writes the same points.  Series
that end get staleness markers (:mod:`zkpoll.scrape.staleness`).  A target
that cannot be connected to is :class:`~zkpoll.plugin.Unreachable` (its
``up`` 0 published only if no member can reach it).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent import futures
from typing import Any

from zkpoll.exceptions import ZkpollError
from zkpoll.plugin import PollingContext, Pollster, Unreachable, resource_key
from zkpoll.sample import CUMULATIVE, GAUGE, STALE_NAN, Sample
from zkpoll.scrape.config import ClientSettings, ScrapeConfig
from zkpoll.scrape.exposition import Exposition, format_for, parse
from zkpoll.scrape.fetch import ScrapeError, fetch
from zkpoll.scrape.relabel import apply
from zkpoll.scrape.staleness import StaleBook
from zkpoll.scrape.targets import JobConfig, ScrapeTarget, build_target, merge_labels

__all__ = ["MAX_PARALLEL", "ScrapePollster", "sample_type"]

LOG = logging.getLogger(__name__)

#: What ends a series: its name, sample type and labels.
_Mark = tuple[str, str, Mapping[str, str]]

#: Targets fetched at once by one call.
MAX_PARALLEL = 16
_CUMULATIVE_SUFFIXES = ("_total", "_sum", "_count", "_bucket")
_CUMULATIVE_FAMILIES = frozenset(("counter", "histogram", "summary"))
_REPORTS = frozenset(("up", "scrape_duration_seconds", "scrape_samples_scraped",
                      "scrape_samples_post_metric_relabeling"))


def sample_type(exposition: Exposition, name: str) -> str:
    """The sample type of series ``name``: cumulative for counters and the
    ``_sum``/``_count``/``_bucket`` of histograms and summaries, else gauge."""
    family = exposition.family_of(name)
    if family is None or family.type not in _CUMULATIVE_FAMILIES:
        return GAUGE
    if family.type == "counter":
        return GAUGE if name.endswith("_created") else CUMULATIVE
    return CUMULATIVE if name.endswith(_CUMULATIVE_SUFFIXES) else GAUGE


def _target(resource: Any, job: JobConfig) -> ScrapeTarget | None:
    if isinstance(resource, Mapping) and isinstance(resource.get("target"), ScrapeTarget):
        return resource["target"]
    text = resource_key(resource)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        address, slash, path = rest.partition("/")
        labels = {"__address__": address, "__scheme__": scheme}
        if slash:
            labels["__metrics_path__"] = "/" + path.split("?", 1)[0]
        return build_target(labels, job)
    return build_target({"__address__": text}, job)


class _Outcome:
    __slots__ = ("duration", "error", "exposition", "unreachable")

    def __init__(self, duration: float, exposition: Exposition | None = None,
                 error: str | None = None, unreachable: bool = False) -> None:
        self.duration = duration
        self.exposition = exposition
        self.error = error
        self.unreachable = unreachable


class ScrapePollster(Pollster):
    """Scrapes the Prometheus targets it is given (see the module docstring)."""

    default_discovery = "prometheus_sd"

    def __init__(self, conf: Any = None) -> None:
        super().__init__(conf)
        self._stale: StaleBook[_Mark] = StaleBook()
        self._lock = threading.Lock()
        self._failing: dict[tuple[str, str], str] = {}   # (source, key) -> reason
        self._tls: dict[int, tuple[ClientSettings, ssl.SSLContext]] = {}

    # --- fetching -----------------------------------------------------------------
    def _ssl_context(self, client: ClientSettings) -> ssl.SSLContext | None:
        if client.tls is None:
            return None
        with self._lock:
            found = self._tls.get(id(client))
            if found is None or found[0] is not client:
                found = self._tls[id(client)] = (client, client.tls.context())
            return found[1]

    def _scrape(self, target: ScrapeTarget, client: ClientSettings, timeout: float) -> _Outcome:
        began = time.monotonic()
        try:
            body, content_type = fetch(target.url, client, timeout, self._ssl_context(client))
            exposition = parse(body, format_for(content_type))
        except ScrapeError as exc:
            return _Outcome(time.monotonic() - began, error=str(exc),
                            unreachable=exc.unreachable)
        except ZkpollError as exc:   # ExpositionError: an unparsable body
            return _Outcome(time.monotonic() - began, error=f"invalid exposition: {exc}")
        return _Outcome(time.monotonic() - began, exposition)

    # --- the call -------------------------------------------------------------------
    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> list[Sample | Unreachable]:
        config: ScrapeConfig | None = context.scrape
        job = config.job if config is not None else JobConfig(job_name=context.source or "scrape")
        client = config.client if config is not None else ClientSettings()
        budget = context.timeout or 10.0
        timeout = min(client.timeout or budget, budget)
        targets: dict[str, ScrapeTarget] = {}
        for resource in resources:
            target = _target(resource, job)
            if target is not None:
                targets[resource_key(resource)] = target
        out: list[Sample | Unreachable] = []
        if targets:
            with futures.ThreadPoolExecutor(min(MAX_PARALLEL, len(targets)),
                                            thread_name_prefix="zkpoll-scrape") as pool:
                outcomes = dict(zip(targets, pool.map(
                    lambda t: self._scrape(t, client, timeout), targets.values()), strict=True))
            for key, target in targets.items():
                out.extend(self._samples(context, key, target, job, client, outcomes[key]))
        for key, mark in self._stale.cycle(context.source, targets, context.discovered,
                                           context.catch_up):
            out.append(_marker(key, mark))
        return out

    def _samples(self, context: PollingContext, key: str, target: ScrapeTarget, job: JobConfig,
                 client: ClientSettings, outcome: _Outcome) -> Iterable[Sample | Unreachable]:
        source = context.source
        if outcome.unreachable:
            self._stale.forget(source, key)
            return [Unreachable(key, outcome.error or "unreachable",
                                _report(key, target, "up", 0.0))]
        if outcome.exposition is None:
            return self._failed(source, key, target, outcome, outcome.error or "failed")
        marks: dict[Any, _Mark] = {}
        samples, scraped = self._series(key, target, job, outcome.exposition, marks)
        if client.sample_limit and len(samples) > client.sample_limit:
            return self._failed(source, key, target, outcome,
                                f"sample_limit exceeded: {len(samples)} series after "
                                f"metric relabelling, limit {client.sample_limit}")
        self._note(source, key, None)
        reports = self._reports(key, target, 1.0, outcome.duration, scraped, len(samples))
        for report in reports:
            marks[report.name] = (report.name, GAUGE, report.labels)
        ended = self._stale.succeeded(source, key, marks)
        samples += reports
        samples.extend(_marker(key, mark) for mark in ended)
        return samples

    def _series(self, key: str, target: ScrapeTarget, job: JobConfig, exposition: Exposition,
                marks: dict[Any, _Mark]) -> tuple[list[Sample], int]:
        """The samples of one exposition; ``marks`` gets each series' stale marker
        (keyed by the series as scraped: the hot loop, kept lean)."""
        rules = job.metric_relabel_configs
        honor = job.honor_labels
        target_labels = target.labels
        target_names = frozenset(name for name, _ in target_labels)
        types: dict[str, str] = {}
        now = time.time()
        samples: list[Sample] = []
        append = samples.append
        for series in exposition.series:
            name, labels, value, _ = series
            kind = types.get(name)
            if kind is None:
                kind = types[name] = sample_type(exposition, name)
            merged = dict(labels)
            if honor or not target_names.isdisjoint(merged) or "" in merged.values():
                merged = merge_labels(labels, target_labels, honor)
            else:   # the usual case: no conflict, nothing empty
                merged.update(target_labels)
            if rules:
                relabelled = apply(rules, {"__name__": name, **merged})
                if relabelled is None:
                    continue
                name = relabelled.pop("__name__", name)
                merged = relabelled
            append(Sample(name, kind, "", value, key, now, None, labels=merged))
            marks[series[:2]] = (name, kind, merged)
        return samples, len(exposition.series)

    def _failed(self, source: str, key: str, target: ScrapeTarget, outcome: _Outcome,
                reason: str) -> list[Sample]:
        self._note(source, key, reason, target)
        samples = [_marker(key, mark) for mark in self._stale.failed(source, key)
                   if mark[0] not in _REPORTS]   # those get this cycle's values below
        return samples + self._reports(key, target, 0.0, outcome.duration, 0, 0)

    def _reports(self, key: str, target: ScrapeTarget, up: float, duration: float,
                 scraped: int, kept: int) -> list[Sample]:
        return [_report(key, target, "up", up),
                _report(key, target, "scrape_duration_seconds", round(duration, 6)),
                _report(key, target, "scrape_samples_scraped", float(scraped)),
                _report(key, target, "scrape_samples_post_metric_relabeling", float(kept))]

    def _note(self, source: str, key: str, reason: str | None,
              target: ScrapeTarget | None = None) -> None:
        """One WARNING when a target's scrapes start failing (or fail otherwise),
        one INFO when they work again."""
        with self._lock:
            before = self._failing.get((source, key))
            if reason is None:
                self._failing.pop((source, key), None)
            else:
                self._failing[(source, key)] = reason
        if reason is None and before is not None:
            LOG.info("source %s: target %s scrapes again", source, key)
        elif reason is not None and reason != before:
            LOG.warning("source %s: scrape of %s failed: %s (up 0; logged again only if "
                        "the reason changes)", source, target.url if target else key, reason)


def _report(key: str, target: ScrapeTarget, name: str, value: float) -> Sample:
    return Sample(name, GAUGE, "", value, key, labels=dict(target.labels))


def _marker(key: str, mark: _Mark) -> Sample:
    name, kind, labels = mark
    return Sample(name, kind, "", STALE_NAN, key, labels=labels)

