"""Base classes for pollsters that read one answer per resource per cycle.

Many services give all their statistics in one answer: ZooKeeper's
``mntr``, Redis ``INFO``, a JSON status page.  Each meter is a field of it.
:class:`ReadingPollster` fetches that answer (the *reading*) once per
resource per cycle, shared through the cycle cache by every pollster with
the same :attr:`~ReadingPollster.reading` name, fetches several resources
concurrently, and never waits longer than the polling timeout: a resource
that has not answered by then counts as failed.

A failed read (it raised, or timed out) is cached for the cycle too, so a
dead server costs one timeout per cycle, not one per meter.  It gives no
sample (a WARNING names the resource) unless the subclass turns it into one
(:meth:`ReadingPollster.failure_samples`, e.g. an ``up`` meter of 0).  A
subclass whose :meth:`~ReadingPollster.is_unreachable` says a failure means
"not reachable from here" gets an :class:`~zkpoll.plugin.Unreachable`
instead, so another member can try.  When every resource failed
otherwise, :meth:`~ReadingPollster.get_samples` raises
:class:`~zkpoll.exceptions.PluginError`, so the agent counts an error.

:class:`FieldPollster` is the table-driven case: one sample per resource
from one field of a mapping.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any, ClassVar

from zkpoll.exceptions import PluginError
from zkpoll.plugin import PollingContext, Pollster, Unreachable, resource_key
from zkpoll.pollsters import cycle_cached
from zkpoll.sample import GAUGE, Sample

__all__ = ["FieldPollster", "Reading", "ReadingPollster"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """The outcome of one read: ``value``, or the ``error`` that stopped it."""

    timestamp: float
    value: Any = None
    error: str | None = None
    unreachable: bool = False  #: the error means "not reachable from here"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ReadingPollster(Pollster):
    """A meter computed from one reading per resource, shared within a cycle.

    Subclasses set :attr:`meter`, :attr:`unit`, :attr:`sample_type` and
    :attr:`reading`, and implement :meth:`read` (identical for every
    pollster sharing a ``reading`` name) and :meth:`make_samples`.
    """

    meter: ClassVar[str]
    unit: ClassVar[str]
    sample_type: ClassVar[str] = GAUGE
    default_discovery: str | None = None
    #: Cycle-cache name of the reading; prefix it with your package name.
    reading: ClassVar[str]
    #: Resources read at once by one call.
    max_workers: ClassVar[int] = 8
    #: Upper bound (seconds) of a read, whatever the polling timeout.
    max_timeout: float | None = 10.0
    #: Raise PluginError when every resource failed (False: the subclass
    #: reports failures itself, e.g. once per resource per streak).
    raise_when_all_failed: ClassVar[bool] = True

    @abc.abstractmethod
    def read(self, resource: Any, timeout: float) -> Any:
        """Fetch the reading of ``resource`` within ``timeout`` seconds; raise on failure."""

    @abc.abstractmethod
    def make_samples(self, resource_id: str, reading: Any,
                     timestamp: float) -> Iterable[Sample]:
        """Turn one successful reading into samples."""

    def failure_samples(self, resource_id: str, error: str,
                        timestamp: float) -> Iterable[Sample]:
        """Samples for a failed read (default none: a WARNING is logged)."""
        LOG.warning("%s: reading %s failed: %s", self.meter, resource_id, error)
        return ()

    def accepts(self, resource: Any) -> bool:
        """Whether this pollster can poll ``resource`` at all (default: yes)."""
        return True

    def is_unreachable(self, exc: BaseException) -> bool:
        """Whether a failed read means the resource is not reachable from this
        member (default: never; see :func:`zkpoll.pollsters.connect_failed`)."""
        return False

    def read_in_context(self, context: PollingContext, resource: Any, timeout: float) -> Any:
        """:meth:`read`, for a subclass that needs the cycle (e.g. every meter
        of the source, to fetch them in one conversation)."""
        return self.read(resource, timeout)

    def sample_resource_id(self, resource: Any) -> str:
        """The ``resource_id`` of the samples of ``resource`` (default its key)."""
        return resource_key(resource)

    def timeout(self, context: PollingContext) -> float:
        """Seconds a read may take: the polling timeout capped by :attr:`max_timeout`."""
        limits = [t for t in (context.timeout, self.max_timeout) if t and t > 0]
        return min(limits) if limits else 10.0

    def cache_key(self, resource: Any) -> str:
        """Cycle-cache key of the reading of ``resource``."""
        return f"{self.reading}:{resource_key(resource)}"

    def _attempt(self, context: PollingContext, resource: Any, timeout: float) -> Reading:
        started = time.time()
        try:
            return Reading(started, value=self.read_in_context(context, resource, timeout))
        except Exception as exc:  # noqa: BLE001 - a failed read is a result, cached for the cycle
            return Reading(started, error=_describe(exc), unreachable=self.is_unreachable(exc))

    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> list[Sample | Unreachable]:
        timeout = self.timeout(context)
        chosen: dict[str, Any] = {}
        for resource in resources:
            if self.accepts(resource):
                chosen.setdefault(resource_key(resource), resource)
            else:
                LOG.debug("%s: resource %r is not one this pollster reads; skipped",
                          self.meter, resource)
        if not chosen:
            return []
        readings = self._read_all(context, list(chosen.values()), timeout)
        samples: list[Sample | Unreachable] = []
        failed: list[str] = []
        for (key, resource), reading in zip(chosen.items(), readings):
            rid = self.sample_resource_id(resource)
            if reading.unreachable:
                samples.append(Unreachable(key, reading.error or "unreachable"))
            elif reading.error is None:
                samples.extend(self.make_samples(rid, reading.value, reading.timestamp))
            else:
                failed.append(f"{rid}: {reading.error}")
                samples.extend(self.failure_samples(rid, reading.error, reading.timestamp))
        if self.raise_when_all_failed and failed and len(failed) == len(chosen) \
                and not samples:
            raise PluginError(f"{self.meter}: every resource failed: {'; '.join(failed)}")
        return samples

    def _read_all(self, context: PollingContext, resources: list[Any],
                  timeout: float) -> list[Reading]:
        def one(resource: Any) -> Reading:
            return cycle_cached(context, self.cache_key(resource),
                                lambda: self._attempt(context, resource, timeout))

        deadline = time.monotonic() + timeout
        pool = futures.ThreadPoolExecutor(min(self.max_workers, len(resources)),
                                          thread_name_prefix=f"zkpoll-{self.meter}")
        try:
            calls = [pool.submit(one, r) for r in resources]
            futures.wait(calls, timeout=max(0.0, deadline - time.monotonic()))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # never wait for a straggler
        now = time.time()
        return [call.result() if call.done() and not call.cancelled()
                else Reading(now, error=f"no answer within {timeout:.1f}s")
                for call in calls]


class FieldPollster(ReadingPollster):
    """One sample per resource: :meth:`volume` of a mapping reading.

    The default :meth:`volume` takes ``reading[field]`` as a number; a
    missing field gives no sample (DEBUG), a field that is not a number is
    an error for that resource (WARNING).
    """

    #: Key of the reading that holds the volume.
    field: ClassVar[str]

    def volume(self, reading: Mapping[str, Any]) -> float | None:
        """The sample's volume, or None for no sample."""
        value = reading.get(self.field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return float(value)  # ValueError when not a number
        return value

    def metadata(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        """The sample's ``resource_metadata`` (default empty)."""
        return {}

    def make_samples(self, resource_id: str, reading: Any,
                     timestamp: float) -> Iterable[Sample]:
        try:
            volume = self.volume(reading)
        except (TypeError, ValueError) as exc:
            LOG.warning("%s: %s: field %r is not a number: %s", self.meter, resource_id,
                        self.field, exc)
            return []
        if volume is None:
            LOG.debug("%s: %s has no %r; no sample", self.meter, resource_id, self.field)
            return []
        return [Sample(self.meter, self.sample_type, self.unit, volume, resource_id,
                       timestamp=timestamp, resource_metadata=self.metadata(reading))]
