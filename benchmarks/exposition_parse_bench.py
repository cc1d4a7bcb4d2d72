"""Exposition parsing: zkpoll's parser against prometheus_client's, one run.

Prints one JSON line per (implementation, format) and a ratio line per
format::

    python -m benchmarks.exposition_parse_bench [--seconds 2] [--cpus 16]

The input is node_exporter-like (counters, gauges, histograms and a
summary, with realistic labels); ``--cpus`` sets its size (28 CPUs give
about 1,000 series).  Each measurement parses the same body repeatedly for
``--seconds`` and reports series per second of the fastest third of runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from benchmarks._bench_util import emit
from zkpoll.scrape.exposition import OPENMETRICS, TEXT, parse

_MODES = ("user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice")
_BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10")


def node_exporter_body(cpus: int, om: bool) -> str:
    """A node_exporter-like scrape body with about ``36 * cpus`` series."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("node_cpu_seconds" if om else "node_cpu_seconds_total", "counter",
           "Seconds the CPUs spent in each mode.")
    for cpu in range(cpus):
        for i, mode in enumerate(_MODES):
            out.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} '
                       f"{123456.78 * (i + 1) + cpu:.2f}")
    family("node_cpu_guest_seconds" if om else "node_cpu_guest_seconds_total", "counter",
           "Seconds the CPUs spent in guests (VMs) for each mode.")
    for cpu in range(cpus):
        for mode in ("nice", "user"):
            out.append(f'node_cpu_guest_seconds_total{{cpu="{cpu}",mode="{mode}"}} 0')
    for metric in ("read_bytes", "written_bytes", "reads_completed", "writes_completed",
                   "io_time_seconds", "read_time_seconds", "write_time_seconds"):
        name = f"node_disk_{metric}"
        family(name if om else name + "_total", "counter", f"The total number of {metric}.")
        for dev in range(cpus):
            out.append(f'{name}_total{{device="nvme{dev // 4}n{dev % 4 + 1}"}} '
                       f"{987654321 + dev * 17}")
    for metric in ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets",
                   "receive_errs", "transmit_errs", "receive_drop", "transmit_drop"):
        name = f"node_network_{metric}"
        family(name if om else name + "_total", "counter", f"Network device statistic {metric}.")
        for dev in range(cpus):
            out.append(f'{name}_total{{device="eth{dev}"}} {4.2e10 + dev:.6e}')
    family("node_filesystem_avail_bytes", "gauge", "Filesystem space available to non-root users in bytes.")
    for dev in range(cpus):
        out.append(f'node_filesystem_avail_bytes{{device="/dev/sda{dev}",fstype="ext4",'
                   f'mountpoint="/srv/data{dev}"}} {1.23456789e11 + dev:.9e}')
    family("node_memory_MemAvailable_bytes", "gauge", "Memory information field MemAvailable_bytes.")
    out.append("node_memory_MemAvailable_bytes 1.2345678e+10")
    family("node_load1", "gauge", "1m load average.")
    out.append("node_load1 0.42")
    for i in range(cpus * 3):
        out.append(f"# HELP node_memory_field{i}_bytes Memory information field {i}.")
        out.append(f"# TYPE node_memory_field{i}_bytes gauge")
        out.append(f"node_memory_field{i}_bytes {1024 * 1024 * (i + 1)}")
    family("http_request_duration_seconds", "histogram", "Request latency.")
    for handler in range(max(1, cpus // 4)):
        for method in ("GET", "POST"):
            labels = f'handler="/api/v1/h{handler}",method="{method}"'
            for i, le in enumerate(_BUCKETS):
                out.append(f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {i * 10}')
            out.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} 120')
            out.append(f"http_request_duration_seconds_sum{{{labels}}} 53.2")
            out.append(f"http_request_duration_seconds_count{{{labels}}} 120")
    family("go_gc_duration_seconds", "summary", "A summary of the GC pause durations.")
    for q in ("0", "0.25", "0.5", "0.75", "1"):
        out.append(f'go_gc_duration_seconds{{quantile="{q}"}} 2.1e-05')
    out.append("go_gc_duration_seconds_sum 0.0123")
    out.append("go_gc_duration_seconds_count 1234")
    if om:
        out.append("# EOF")
    return "\n".join(out) + "\n"


def _zkpoll(fmt: str) -> Callable[[str], int]:
    return lambda body: len(parse(body, fmt).series)


def _prometheus_client(fmt: str) -> Callable[[str], int]:
    if fmt == OPENMETRICS:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return lambda body: sum(len(f.samples) for f in text_string_to_metric_families(body))


def measure(fn: Callable[[str], int], body: str, seconds: float) -> tuple[int, float]:
    """(series per parse, series per second of the fastest third of the runs)."""
    times: list[float] = []
    series = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        series = fn(body)
        times.append(time.perf_counter() - start)
    times.sort()
    best = times[:max(1, len(times) // 3)]
    return series, series / (sum(best) / len(best))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--cpus", type=int, default=28, help="size of the node_exporter body")
    args = ap.parse_args()
    for fmt, om in ((TEXT, False), (OPENMETRICS, True)):
        body = node_exporter_body(args.cpus, om)
        rates = {}
        for impl, make in (("zkpoll", _zkpoll), ("prometheus_client", _prometheus_client)):
            series, rate = measure(make(fmt), body, args.seconds)
            rates[impl] = rate
            emit(bench="exposition_parse", impl=impl, format=fmt, series=series,
                 series_per_s=round(rate))
        emit(bench="exposition_parse", ratio="zkpoll/prometheus_client", format=fmt,
             speedup=round(rates["zkpoll"] / rates["prometheus_client"], 1))


if __name__ == "__main__":
    main()
