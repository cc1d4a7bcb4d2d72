"""The latest sample of every (meter, resource) this agent polled, for ``/samples``.

Alarm evaluators without a TSDB read it (``threshold`` alarms, see
docs/alarming.md).  One entry per meter and resource: memory grows with
what the agent polls, not with time.  Entries not refreshed for
``max_age`` seconds are dropped when the meter is next read.  Scraped
Prometheus series (samples with labels) are not kept: many series share a
name and a target, so one entry per (meter, resource) would mix them;
alarms on them query the TSDB they are written to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from zkpoll.sample import Sample

__all__ = ["LatestSamples"]


class LatestSamples:
    """Thread-safe map (meter, resource) -> newest sample."""

    def __init__(self, max_age: float = 3600.0) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._meters: dict[str, dict[str, tuple[float, float, str]]] = {}

    def record(self, samples: Iterable[Sample]) -> None:
        """Keep each sample if it is the newest of its meter and resource."""
        with self._lock:
            for sample in samples:
                if sample.volume is None or sample.labels:
                    continue
                resources = self._meters.setdefault(sample.name, {})
                known = resources.get(sample.resource_id)
                if known is None or sample.timestamp >= known[0]:
                    resources[sample.resource_id] = (sample.timestamp, float(sample.volume),
                                                     sample.unit)

    def meter(self, name: str, now: float | None = None) -> list[dict[str, Any]]:
        """The newest samples of meter ``name`` (dropping those older than ``max_age``)."""
        oldest = (time.time() if now is None else now) - self.max_age
        with self._lock:
            resources = self._meters.get(name, {})
            for stale in [r for r, (stamp, _, _) in resources.items() if stamp < oldest]:
                del resources[stale]
            return [{"resource_id": resource, "timestamp": stamp, "volume": volume,
                     "unit": unit}
                    for resource, (stamp, volume, unit) in sorted(resources.items())]

    def meters(self) -> list[str]:
        """Names of the meters with samples."""
        with self._lock:
            return sorted(self._meters)
