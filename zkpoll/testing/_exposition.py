"""The payload of :mod:`zkpoll.testing.exposition_server`: a node_exporter-sized
``/metrics`` body whose values move on every scrape, cheap to produce.

:class:`Payload` renders the metric families once, at start, into two
``%``-templates (Prometheus text 0.0.4 and OpenMetrics 1.0.0) with one
``%d``/``%s`` slot per sample. The body of scrape ``n`` of a target is
``template % values(n)``: one C-level format of about a thousand numbers.
Counters are ``base + n * rate`` (they only grow, so every scrape of a
target gives new values), gauges ``base + (n % 16) * rate``; histogram
buckets are cumulative in ``le`` and ``_count`` equals the ``+Inf`` bucket
for every ``n``. All targets serve the same body for the same ``n``, so
bodies (and their gzip) are cached by ``n``: targets scraped in step
share one rendering and one compression.

The mix (:func:`families`), exactly ``series`` samples: a summary
(``go_gc_duration_seconds``), a histogram with 4 handlers and 12 ``le``
buckets, load and memory gauges, process and kernel counters, then per
"unit" 8 ``node_cpu_seconds_total{cpu,mode}``, 5 disk counters
``{device}``, 8 network counters ``{device}`` and 3 filesystem gauges
``{device,fstype,mountpoint}``, and ``node_hwmon_temp_celsius{chip,sensor}``
gauges to make up the exact count.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

from zkpoll.exceptions import ZkpollError

__all__ = ["CONTENT_TYPES", "Family", "Payload", "families", "wants_openmetrics"]

#: Content-Type of each format (``True``: OpenMetrics).
CONTENT_TYPES = {False: b"text/plain; version=0.0.4; charset=utf-8",
                 True: b"application/openmetrics-text; version=1.0.0; charset=utf-8"}

_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0",
            "10.0", "+Inf")
_HANDLERS = ("/metrics", "/api/v1/query", "/api/v1/write", "/health")
_CPU_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
_MEMORY = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active",
           "Inactive", "Active_anon", "Inactive_anon", "Active_file", "Inactive_file", "Dirty",
           "Writeback", "AnonPages", "Mapped", "Shmem", "Slab", "SReclaimable", "SUnreclaim")
_DISK = ("read_bytes", "written_bytes", "reads_completed", "writes_completed")
_NET = tuple(f"{way}_{what}" for way in ("receive", "transmit")
             for what in ("bytes", "packets", "errs", "drop"))
_PERIOD = 16  # gauges repeat with this period (in scrapes)
_CACHED = 8   # bodies kept per format and encoding


@dataclass
class Family:
    """One metric family: ``samples`` are (name suffix, labels, base, rate, is float)."""

    name: str                   #: without ``_total`` for counters (the OpenMetrics name)
    kind: str                   #: counter, gauge, histogram or summary
    help: str
    samples: list[tuple[str, str, float, float, bool]] = field(default_factory=list)

    def add(self, suffix: str, labels: str, base: float, rate: float,
            is_float: bool = False) -> Family:
        self.samples.append((suffix, labels, base, rate, is_float))
        return self


def _counter(name: str, help_: str, labels: list[str], base: float, rate: float,
             is_float: bool = False) -> Family:
    family = Family(name, "counter", help_)
    for i, label in enumerate(labels):
        family.add("_total", label, base * (i + 1), rate * (1 + i % 3), is_float)
    return family


def _gauge(name: str, help_: str, labels: list[str], base: float, rate: float,
           is_float: bool = False) -> Family:
    family = Family(name, "gauge", help_)
    for i, label in enumerate(labels):
        family.add("", label, base + i, rate, is_float)
    return family


def _fixed() -> list[Family]:
    summary = Family("go_gc_duration_seconds", "summary",
                     "A summary of the pause duration of garbage collection cycles.")
    for i, quantile in enumerate(("0", "0.25", "0.5", "0.75", "1")):
        summary.add("", f'quantile="{quantile}"', 2e-5 * (i + 1), 1e-6, True)
    summary.add("_sum", "", 0.5, 0.001, True).add("_count", "", 1000, 3)
    histogram = Family("http_request_duration_seconds", "histogram",
                       "Latency of the HTTP requests served, by handler.")
    for h, handler in enumerate(_HANDLERS):
        for b, le in enumerate(_BUCKETS):
            histogram.add("_bucket", f'handler="{handler}",le="{le}"', 100 * (b + 1) * (h + 1),
                          b + 1)
        histogram.add("_sum", f'handler="{handler}"', 80.5 * (h + 1), 0.25, True)
        histogram.add("_count", f'handler="{handler}"', 100 * len(_BUCKETS) * (h + 1),
                      len(_BUCKETS))
    out = [summary, histogram]
    out += [_gauge(f"node_load{m}", f"{m}m load average.", [""], 0.5, 0.05, True)
            for m in (1, 5, 15)]
    out += [_gauge(f"node_memory_{name}_bytes", f"Memory information field {name}_bytes.",
                   [""], 2 ** 30 + 4096 * i, 4096) for i, name in enumerate(_MEMORY)]
    out += [_counter("process_cpu_seconds", "Total user and system CPU time spent in seconds.",
                     [""], 12.5, 0.05, True),
            _gauge("process_resident_memory_bytes", "Resident memory size in bytes.", [""],
                   2 ** 24, 4096),
            _gauge("process_open_fds", "Number of open file descriptors.", [""], 9, 1),
            _gauge("node_boot_time_seconds", "Node boot time, in unixtime.", [""],
                   1.7e9, 0),
            _counter("node_context_switches", "Total number of context switches.", [""],
                     1e7, 1500),
            _counter("node_intr", "Total number of interrupts serviced.", [""], 5e6, 900),
            _counter("node_forks", "Total number of forks.", [""], 4e4, 3)]
    return out


def _per_unit(units: int) -> list[Family]:
    cpu = Family("node_cpu_seconds", "counter", "Seconds the CPUs spent in each mode.")
    for unit in range(units):
        for m, mode in enumerate(_CPU_MODES):
            cpu.add("_total", f'cpu="{unit}",mode="{mode}"', 1000.0 * (m + 1) + unit,
                    0.5 + 0.25 * m, True)
    disks = [f'device="nvme{unit}n1"' for unit in range(units)]
    nets = [f'device="eth{unit}"' for unit in range(units)]
    out = [_counter(f"node_disk_{name}", f"The total number of {name.replace('_', ' ')}.",
                    disks, 1e6, 4096) for name in _DISK]
    out.append(_counter("node_disk_io_time_seconds", "Total seconds spent doing I/Os.", disks,
                        120.0, 0.02, True))
    out += [_counter(f"node_network_{name}", f"Network device statistic {name}.", nets,
                     1e5, 1500) for name in _NET]
    mounts = [f'device="/dev/nvme{unit}n1p1",fstype="ext4",mountpoint="/srv/{unit}"'
              for unit in range(units)]
    out += [_gauge(f"node_filesystem_{name}_bytes", f"Filesystem {name} in bytes.", mounts,
                   5e10, 4096) for name in ("avail", "size", "free")]
    return [cpu, *out]


def families(series: int = 1000) -> list[Family]:
    """The metric families of one target, exactly ``series`` samples in all.

    :raises ZkpollError: ``series`` is below the fixed part of the mix.
    """
    fixed = _fixed()
    floor = sum(len(family.samples) for family in fixed)
    if series < floor:
        raise ZkpollError(f"an exposition needs at least {floor} series, not {series}")
    per_unit = len(_CPU_MODES) + len(_DISK) + 1 + len(_NET) + 3
    units, rest = divmod(series - floor, per_unit)
    temps = [f'chip="platform_coretemp_0",sensor="temp{i}"' for i in range(rest)]
    tail = [_gauge("node_hwmon_temp_celsius", "Hardware monitor temperature.", temps,
                   40.0, 0.5, True)] if rest else []
    return fixed + (_per_unit(units) if units else []) + tail


def _template(all_families: list[Family], openmetrics: bool) -> str:
    lines = []
    for family in all_families:
        name = family.name if openmetrics or family.kind != "counter" else family.name + "_total"
        lines += [f"# HELP {name} {family.help}", f"# TYPE {name} {family.kind}"]
        for suffix, labels, _, _, is_float in family.samples:
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{family.name}{suffix}{braces} {'%s' if is_float else '%d'}")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def wants_openmetrics(accept: str) -> bool:
    """True if an ``Accept`` header prefers OpenMetrics to text 0.0.4 (by ``q``)."""
    best = {"openmetrics": -1.0, "text": -1.0}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media == "application/openmetrics-text":
            best["openmetrics"] = max(best["openmetrics"], q)
        elif media in ("text/plain", "*/*"):
            best["text"] = max(best["text"], q)
    return best["openmetrics"] > 0 and best["openmetrics"] >= best["text"]


class Payload:
    """Bodies of a ``series``-sample exposition, by scrape number, format and gzip."""

    def __init__(self, series: int = 1000) -> None:
        all_families = families(series)
        samples = [s for family in all_families for s in family.samples]
        self.series = len(samples)
        self._templates = {om: _template(all_families, om) for om in (False, True)}
        # (base, rate, periodic): gauges and summary quantiles go up and down
        self._slots = [(base, rate, family.kind == "gauge" or (family.kind, suffix) == ("summary", ""))
                       for family in all_families
                       for suffix, _, base, rate, _ in family.samples]
        self._cache: OrderedDict[tuple[int, bool, bool], bytes] = OrderedDict()

    def values(self, n: int) -> tuple[float, ...]:
        """The sample values of scrape ``n``, in template order."""
        m = n % _PERIOD
        return tuple(base + (m if periodic else n) * rate
                     for base, rate, periodic in self._slots)

    def body(self, n: int, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """The body of scrape ``n`` (cached: the last few ``n`` of each kind)."""
        key = (n, openmetrics, gzip)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if gzip:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip member
            body = compressor.compress(self.body(n, openmetrics)) + compressor.flush()
        else:
            body = (self._templates[openmetrics] % self.values(n)).encode()
        self._cache[key] = body
        if len(self._cache) > 4 * _CACHED:
            self._cache.popitem(last=False)
        return body
