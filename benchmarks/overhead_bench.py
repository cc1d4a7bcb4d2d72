"""Agent overhead: samples per second through the whole cycle path, and idle RSS.

A no-op pollster (one Sample per resource, no I/O) for 10 meters over
10,000 static resources goes through discovery, partitioning (a real
Partition on a coordinator), the bounded pollster pool, validation and
stamping, and a null publisher.  Prints JSON lines::

    {"bench": "overhead", "samples_per_s": ..., "resources": 10000, "meters": 10, ...}
    {"bench": "idle_rss", "rss_mb": ..., "processes": 1, ...}

The second line starts a real ``zkpoll-polling`` with the embedded default
(standalone, host pollsters) and reads its resident memory once idle.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent import futures
from pathlib import Path
from typing import Any

from oslo_config import cfg

from benchmarks._bench_util import emit, tree_rss_mb, zkpoll_polling_command
from zkpoll.coordination import get_coordinator, register_opts
from zkpoll.ownership import Partition
from zkpoll.plugin import PollingContext, Pollster
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import SourceRunner
from zkpoll.polling.sources import Source
from zkpoll.publisher.null import NullPublisher
from zkpoll.sample import GAUGE, Sample


class NoOpPollster(Pollster):
    """One constant sample per resource; no I/O."""

    default_discovery = None

    def __init__(self, meter: str) -> None:
        super().__init__()
        self.meter = meter

    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        name, ts = self.meter, context.cycle_start
        return [Sample(name, GAUGE, "1", 1.0, r, ts) for r in resources]


def bench_overhead(resources: int, meters: int, cycles: int) -> None:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    coordinator = get_coordinator(conf)
    coordinator.start()
    partition = Partition(coordinator, "bench", settle_time=0.0)
    partition.join({"weight": 1})
    source = Source("bench", 60, ("*",), resources=tuple(f"instance-{i:06d}" for i in range(resources)))
    publisher = NullPublisher(None, urllib.parse.urlsplit("null://"))
    infos = [PollsterInfo(f"noop.{i}", "central", NoOpPollster(f"noop.{i}")) for i in range(meters)]
    with futures.ThreadPoolExecutor(8) as pool:
        runner = SourceRunner(source, infos, LoadedPlugins(), [publisher], pool,
                              lambda src, ns, keys, index, start: partition.owned(keys, start), None,
                              lambda: coordinator.member_id, timeout=60.0, batch_size=500)
        runner.run_cycle(0, time.time())  # warm-up
        start = time.perf_counter()
        total = 0
        for i in range(cycles):
            total += runner.run_cycle(i + 1, time.time() + i * 60).samples
        elapsed = time.perf_counter() - start
    coordinator.stop()
    emit(bench="overhead", samples_per_s=round(total / elapsed), resources=resources,
         meters=meters, cycles=cycles, seconds=round(elapsed, 3),
         published=publisher.stats["published"])


def bench_idle_rss(settle: float) -> None:
    command = zkpoll_polling_command()
    with tempfile.TemporaryDirectory() as workdir:
        conf = Path(workdir, "zkpoll.conf")
        conf.write_text("[publisher]\ndefault_publishers = null://\n")
        proc = subprocess.Popen([*command, "--config-file", str(conf), "--polling-namespaces",
                                 "compute"], cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(settle)
            if proc.poll() is not None:
                sys.exit(f"zkpoll-polling exited early with status {proc.returncode}")
            rss, processes = tree_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    emit(bench="idle_rss", rss_mb=round(rss, 1), processes=processes,
         budget_mb=50, ceilometer_measured_mb=112)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--idle-seconds", type=float, default=15.0,
                        help="how long the idle agent runs before its RSS is read")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    bench_overhead(args.resources, args.meters, args.cycles)
    bench_idle_rss(args.idle_seconds)


if __name__ == "__main__":
    main()
