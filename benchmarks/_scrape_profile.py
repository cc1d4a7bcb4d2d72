"""``scrape_profile`` of ``benchmarks.scrape_bench``: the agent's scrape pipeline,
stage by stage, in this process (pollster, spool codec both ways, remote write)."""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any, Self

from benchmarks._bench_util import emit
from zkpoll.testing.exposition_control import ManagedExpositionServer

__all__ = ["profile"]


class _InlineExecutor:
    """A ThreadPoolExecutor stand-in running each call in the caller's thread
    (so cProfile, which sees one thread, sees the fetches and parses)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn: Any, *iterables: Any) -> Any:
        return list(map(fn, *iterables))


def profile(args: argparse.Namespace, generator: ManagedExpositionServer) -> None:
    """``scrape_profile``: the agent's pipeline, stage by stage, in this process (with
    the daemon's garbage-collection thresholds, as in the agent)."""
    import gc
    import urllib.parse
    from unittest import mock

    import cramjam

    from zkpoll.cmd._run import GC_THRESHOLDS
    from zkpoll.publisher.remote_write import RemoteWriteSender
    from zkpoll.publisher.spool_codec import decode_batch, encode_batch
    from zkpoll.sample import Sample
    from zkpoll.scrape import pollster as pollster_module
    from zkpoll.testing.plugins import make_context

    gc.set_threshold(*GC_THRESHOLDS)

    targets = generator.targets[:args.profile_targets]
    scraper = pollster_module.ScrapePollster()
    sender = RemoteWriteSender(None, urllib.parse.urlsplit(
        "prometheus+remote-write://127.0.0.1:9/api/v1/write"))
    batch = 500   # [polling] batch_size: samples per publish call, one spool batch each

    def pipeline(stages: dict[str, float]) -> int:
        clock = time.process_time
        began = clock()
        context = make_context(timeout=30.0, source="profile", cycle_start=time.time())
        results = scraper.get_samples(context, list(targets))
        samples = [s for s in results if isinstance(s, Sample)]
        for s in samples:   # what the agent's runner stamps before publishing
            s.source, s.member_id, s.cycle_start = "profile", "m1", context.cycle_start
        t1 = clock()
        bodies = [encode_batch(samples[i:i + batch])[0] for i in range(0, len(samples), batch)]
        t2 = clock()
        decoded = [decode_batch(body) for body in bodies]
        t3 = clock()
        for chunk in decoded:
            for i in range(0, len(chunk), sender.batch_size):
                cramjam.snappy.compress_raw(sender.encode(chunk[i:i + sender.batch_size]))
        t4 = clock()
        for name, spent in (("get_samples", t1 - began), ("encode_batch", t2 - t1),
                            ("decode_batch", t3 - t2), ("remote_write_encode", t4 - t3)):
            stages[name] = stages.get(name, 0.0) + spent
        return len(samples)

    pipeline({})   # warm-up: connections, label caches
    stages: dict[str, float] = {}
    series = sum(pipeline(stages) for _ in range(args.profile_rounds))
    profiler = cProfile.Profile()
    with mock.patch.object(pollster_module.futures, "ThreadPoolExecutor", _InlineExecutor):
        profiler.enable()
        pipeline({})
        profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    cpu = sum(stages.values())
    emit(bench="scrape_profile", targets=len(targets), series_per_round=series // args.profile_rounds,
         rounds=args.profile_rounds, series_per_cpu_s=round(series / cpu),
         scrape_to_spool_series_per_cpu_s=round(
             series / (stages["get_samples"] + stages["encode_batch"])),
         cpu_us_per_series={k: round(v / series * 1e6, 3) for k, v in stages.items()},
         share={k: round(v / cpu, 3) for k, v in stages.items()},
         top_tottime=[{"function": f"{Path(file).name}:{line}:{name}",
                       "share": round(row[2] / total, 3)}
                      for (file, line, name), row in top[:12]])
