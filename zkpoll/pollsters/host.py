"""Pollsters of this host's resources, through psutil (``zkpoll.poll.compute``).

Each pollster measures this host only: its one resource is the host id from
the ``local_host`` discovery (:func:`zkpoll.discovery.host_id`); per-mount,
per-disk and per-NIC samples get ``f"{host}:{name}"`` resource ids.

A psutil *reading* (load averages, memory, I/O counters...) is taken once
per cycle and shared through the cycle cache, so the pollsters that use the
same reading (``host.load.1min``/``5min``/``15min``) cost one psutil call.
The pollsters are table-driven: a subclass only names its meter, unit,
reading and the field it takes from the reading.
"""

from __future__ import annotations

import abc
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import psutil

from zkpoll.discovery.local import host_id
from zkpoll.plugin import PollingContext, Pollster
from zkpoll.pollsters import _unique_ids, cycle_cached
from zkpoll.sample import CUMULATIVE, GAUGE, Sample

__all__ = [
    "CPUUtilPollster", "DiskReadBytesPollster", "DiskUsagePollster", "DiskWriteBytesPollster",
    "Load1Pollster", "Load5Pollster", "Load15Pollster", "MemoryAvailablePollster",
    "MemoryUsedPollster", "NetworkIncomingBytesPollster", "NetworkOutgoingBytesPollster",
    "ProcessCountPollster",
]

LOG = logging.getLogger(__name__)

#: (resource id suffix or None for the host itself, volume, metadata)
_Measure = tuple[str | None, int | float, dict[str, Any]]


def _disk_usage() -> list[tuple[Any, Any]]:
    """Return ``(partition, usage)`` of every mounted physical filesystem."""
    result = []
    for part in psutil.disk_partitions(all=False):
        try:
            result.append((part, psutil.disk_usage(part.mountpoint)))
        except OSError as exc:  # unreadable mount point (permissions, stale NFS)
            LOG.debug("host.disk.usage: skipping %s: %s", part.mountpoint, exc)
    return result


# One entry per psutil reading shared within a cycle.  Lambdas, so that the
# psutil function is looked up at call time (tests monkeypatch it).
_READERS: dict[str, Callable[[], Any]] = {
    "cpu_times": lambda: psutil.cpu_times(),
    "loadavg": lambda: psutil.getloadavg(),
    "memory": lambda: psutil.virtual_memory(),
    "disk_usage": _disk_usage,
    "disk_io": lambda: psutil.disk_io_counters(perdisk=True) or {},
    "net_io": lambda: psutil.net_io_counters(pernic=True) or {},
    "pids": lambda: psutil.pids(),
}


def _read(context: PollingContext, reading: str) -> tuple[float, Any]:
    """Return ``(timestamp, value)`` of a psutil reading, once per cycle."""
    return cycle_cached(context, f"zkpoll.pollsters.host:{reading}",
                        lambda: (time.time(), _READERS[reading]()))


class _HostPollster(Pollster):
    """Base of the host pollsters: one reading, samples for this host only."""

    meter: ClassVar[str]
    unit: ClassVar[str]
    sample_type: ClassVar[str] = GAUGE
    default_discovery = "local_host"
    #: key of :data:`_READERS`
    reading: ClassVar[str]

    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        local = host_id(self.conf if self.conf is not None else context.conf)
        samples: list[Sample] = []
        for rid in _unique_ids(resources):
            if rid != local:
                LOG.debug("%s: resource %r is not this host (%r); skipped",
                          self.meter, rid, local)
                continue
            timestamp, value = _read(context, self.reading)
            for suffix, volume, metadata in self._measure(value):
                samples.append(Sample(
                    name=self.meter, type=self.sample_type, unit=self.unit,
                    volume=volume, resource_id=rid if suffix is None else f"{rid}:{suffix}",
                    timestamp=timestamp, resource_metadata=metadata))
        return samples

    @abc.abstractmethod
    def _measure(self, value: Any) -> Iterable[_Measure]:
        """Turn one reading into measures."""


class _ScalarPollster(_HostPollster):
    """One sample for the host: ``field(reading)``."""

    field: ClassVar[Callable[[Any], int | float]]

    def _measure(self, value: Any) -> Iterable[_Measure]:
        return [(None, self.field(value), {})]


class _PerNamePollster(_HostPollster):
    """One sample per name of a ``{name: counters}`` reading (disk, NIC)."""

    sample_type = CUMULATIVE
    unit = "B"
    #: counter attribute taken from each entry
    counter: ClassVar[str]

    def _measure(self, value: Any) -> Iterable[_Measure]:
        return [(name, getattr(counters, self.counter), {})
                for name, counters in sorted(value.items())]


def _cpu_percent(before: Any, after: Any) -> float | None:
    """Busy % between two ``psutil.cpu_times()``, as psutil computes it.

    None when no CPU time elapsed (two reads too close together).
    """
    delta = {f: max(0.0, getattr(after, f) - getattr(before, f)) for f in after._fields}
    # On Linux guest time is already counted in user and nice.
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    if total <= 0:
        return None
    busy = total - delta["idle"] - delta.get("iowait", 0.0)
    return round(min(100.0, max(0.0, 100.0 * busy / total)), 1)


class CPUUtilPollster(_HostPollster):
    """``host.cpu.util``: % of CPU time busy since the previous cycle.

    Computed from ``psutil.cpu_times()`` against the previous read kept by
    this pollster (primed by the constructor, so the first cycle measures
    something).  ``psutil.cpu_percent(interval=None)`` keeps its previous
    read per calling thread, so priming it here would not help a polling
    thread, nor survive a thread pool.
    """

    meter = "host.cpu.util"
    unit = "%"
    reading = "cpu_times"

    def __init__(self, conf: Any = None) -> None:
        super().__init__(conf)
        self._lock = threading.Lock()
        self._last = psutil.cpu_times()

    def _measure(self, value: Any) -> Iterable[_Measure]:
        with self._lock:
            percent = _cpu_percent(self._last, value)
            if percent is None:
                LOG.debug("host.cpu.util: no CPU time elapsed since the last read; no sample")
                return []
            self._last = value
        return [(None, percent, {})]


class DiskUsagePollster(_HostPollster):
    """``host.disk.usage``: bytes used on each mounted physical filesystem."""

    meter = "host.disk.usage"
    unit = "B"
    reading = "disk_usage"

    def _measure(self, value: Any) -> Iterable[_Measure]:
        measures: dict[str, _Measure] = {}
        for part, usage in value:
            metadata = {"device": part.device, "mountpoint": part.mountpoint,
                        "fstype": part.fstype, "total": usage.total}
            measures.setdefault(part.mountpoint, (part.mountpoint, usage.used, metadata))
        return list(measures.values())


class Load1Pollster(_ScalarPollster):
    """``host.load.1min``: 1-minute load average."""

    meter, unit, reading = "host.load.1min", "process", "loadavg"
    field = staticmethod(operator.itemgetter(0))


class Load5Pollster(_ScalarPollster):
    """``host.load.5min``: 5-minute load average."""

    meter, unit, reading = "host.load.5min", "process", "loadavg"
    field = staticmethod(operator.itemgetter(1))


class Load15Pollster(_ScalarPollster):
    """``host.load.15min``: 15-minute load average."""

    meter, unit, reading = "host.load.15min", "process", "loadavg"
    field = staticmethod(operator.itemgetter(2))


class MemoryUsedPollster(_ScalarPollster):
    """``host.memory.used``: bytes of memory in use (psutil ``used``)."""

    meter, unit, reading = "host.memory.used", "B", "memory"
    field = staticmethod(operator.attrgetter("used"))


class MemoryAvailablePollster(_ScalarPollster):
    """``host.memory.available``: bytes available without swapping (psutil ``available``)."""

    meter, unit, reading = "host.memory.available", "B", "memory"
    field = staticmethod(operator.attrgetter("available"))


class ProcessCountPollster(_ScalarPollster):
    """``host.processes``: number of processes."""

    meter, unit, reading = "host.processes", "process", "pids"
    field = staticmethod(len)


class DiskReadBytesPollster(_PerNamePollster):
    """``host.disk.read.bytes``: bytes read, per block device."""

    meter, reading, counter = "host.disk.read.bytes", "disk_io", "read_bytes"


class DiskWriteBytesPollster(_PerNamePollster):
    """``host.disk.write.bytes``: bytes written, per block device."""

    meter, reading, counter = "host.disk.write.bytes", "disk_io", "write_bytes"


class NetworkIncomingBytesPollster(_PerNamePollster):
    """``host.network.incoming.bytes``: bytes received, per NIC."""

    meter, reading, counter = "host.network.incoming.bytes", "net_io", "bytes_recv"


class NetworkOutgoingBytesPollster(_PerNamePollster):
    """``host.network.outgoing.bytes``: bytes sent, per NIC."""

    meter, reading, counter = "host.network.outgoing.bytes", "net_io", "bytes_sent"
