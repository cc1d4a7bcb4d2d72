"""Scrape benchmark: zkpoll's ``prometheus.scrape`` against vmagent and Prometheus agents.

Prints JSON lines on stdout (progress on stderr)::

    python -m benchmarks.scrape_bench [--agents 3] [--targets 300] [--series 200]
                                      [--interval 5] [--quick]

Set-up (all real processes).  One ZooKeeper (tick 200 ms), one
VictoriaMetrics without deduplication (every sample stored is counted,
duplicates included), one exposition generator serving ``--targets``
targets of ``--series`` series each on 127.1.x.y addresses.  Each
implementation scrapes those targets every ``--interval`` seconds into the
same VictoriaMetrics under its own ``job`` (``zkpoll``, ``vmagent``,
``vmagent_rf2``, ``prometheus``), one implementation at a time, so its
samples, CPU and the generator's request counts are its own:

* ``zkpoll``: ``--agents`` real ``zkpoll-polling`` agents,
  ``--polling-namespaces central``, ``backend_url =
  zookeeper://.../<root>?timeout=--session-timeout``, ``heartbeat_interval =
  0.2``, ``settle_time = 1``; one source named ``zkpoll`` (the job), meter
  ``prometheus.scrape``, the targets as its ``resources:``; ``[publisher]
  default_publishers = prometheus+remote-write://VM/api/v1/write``, each
  agent with its own spool;
* ``vmagent``: vmagent cluster mode, ``membersCount = --agents``, one
  process per member; ``vmagent_rf2``: the same with ``replicationFactor=2``
  (every target scraped, and stored, twice);
* ``prometheus``: Prometheus 2.42 in agent mode, ``hashmod`` relabelling of
  ``__address__`` over ``--agents`` shards.

1. Throughput (``scrape`` lines).  Once every target has two stored ``up``
   samples, a window of ``--cycles`` intervals starting on a zkpoll cycle
   boundary.  ``series_per_s``: samples VictoriaMetrics stored with a
   timestamp inside the window (``count_over_time`` over the raw samples,
   read 3 s after the window closed), divided by its length: what was
   scraped *and* delivered (``up`` and the other per-target series
   included; for ``vmagent_rf2`` both copies).  ``cpu_s_per_million_series``:
   user + system CPU seconds of the scrapers' processes over the window
   (psutil), per million stored samples; ``rss_mb_per_agent`` at the end
   of the window; ``requests_per_target_cycle``: the generator's own count
   of ``/metrics`` requests in the window, per target and interval (1.0
   expected, 2.0 for rf2).  ``scrape_ratio``: zkpoll's CPU per series over
   each peer's.

2. Churn (``scrape_churn`` lines), one event per fleet of ``--agents``
   members in steady state (the first event reuses the throughput fleet,
   every other event gets a fresh fleet).  The event fires 0.2 s before a
   zkpoll cycle boundary (the hardest moment for zkpoll; an arbitrary one
   for the peers, whose scrapes are spread over the interval):

   * ``join``: one more member starts.  Peers' membership is static: the
     new member starts as shard N of N+1 and the others are then moved to
     N+1 one at a time (vmagent: restarted with ``membersCount=N+1``;
     Prometheus: config rewritten with modulus N+1 and reloaded, SIGHUP);
   * ``sigterm``: one member stops gracefully, nothing else changes (the
     peers' shard is then scraped by nobody);
   * ``scale_down``: N -> N-1 as an operator does it: zkpoll just stops a
     member; the peers stop one and re-shard the others to N-1 (vmagent
     restarted, Prometheus reloaded);
   * ``kill9``: one member gets SIGKILL.

   Counting rule.  ``up`` samples stored for the job are exported raw
   (stale markers left out).  Each target's buckets are one interval wide
   and centred on its own steady scrape phase: bucket 0 on the target's
   last stored ``up`` at or before ``event - interval/2``, bucket m on that
   time plus m intervals, up to the last bucket that ends by ``event +
   --post`` intervals.  zkpoll stamps a scrape with its cycle's start, so
   its buckets are centred on the cycle starts (every target shares them);
   vmagent and Prometheus stamp the scrape time, and each target keeps a
   fixed phase inside the interval, so centring on that phase keeps
   scrape jitter away from the bucket edges.  ``gaps``: buckets without a
   sample; ``duplicates``: samples beyond the first in a bucket (a peer
   whose target moves to a member with another phase can show one gap and
   one duplicate where no scrape was missed: ``targets_unscraped_max_s``
   tells).  ``buckets``: (target, bucket) pairs counted.  ``vmagent_rf2``
   stores every sample twice by design, so its ``duplicates`` count one per
   bucket in steady state; its lines add ``buckets_below_copies`` (buckets
   with one sample: redundancy lost, nothing missing) and
   ``samples_beyond_copies`` (more than two).
   ``targets_unscraped_max_s``: the longest time any target went without a
   stored ``up`` sample between one interval before the event and the end
   (an open gap runs to the end; steady state: one interval).
   ``request_gap_max_s``: the same from the generator's side: the longest
   time a target received no ``/metrics`` request (counts read every
   0.2 s), which sees zkpoll's catch-up scrapes at the time they happen
   (stored under the cycle's start); ``late_max_s`` = that minus one
   interval.  zkpoll ``kill9`` adds ``expiry_s`` (kill to the victim's
   znode gone) and ``bound_s`` = session timeout + 0.5 s, the promise for
   ``late_max_s``.

3. ``scrape_single_agent``: one zkpoll agent alone, ``--single-targets`` x
   ``--single-series`` every ``--single-interval`` s (the issue's target:
   100k series/s per agent, scrape to spool, one core):
   ``scraped_series_per_s`` (the agent's ``zkpoll_samples_polled_total``),
   ``stored_series_per_s`` (VictoriaMetrics), ``cpu_s_per_s`` (cores used)
   and ``series_per_cpu_s`` (what one core would do); the generator's and
   VictoriaMetrics's CPU show what shares the two cores.  Then
   ``scrape_profile``: the same pipeline in this process on the same
   targets: ``ScrapePollster.get_samples``, the spool's ``encode_batch``,
   the sender's ``decode_batch``, remote-write ``encode`` and snappy, CPU
   per stage (threads included) and the top functions under cProfile (the
   fetches run inline there, so cProfile sees them).

``--quick``: 2 agents, 40 targets x 100 series, interval 3 s, session
timeout 1 s, the ``kill9`` event only, a small single-agent run (~3 min).
Failures print ``{"bench": ..., "error": ...}`` and the run goes on with
the next measurement (exit status 1).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks._bench_util import (
    BenchError,
    cpu_seconds,
    emit,
    exit_on_sigterm,
    progress,
    rounded,
    sleep_until,
)
from benchmarks._scrape_fleet import (
    Fleet,
    PrometheusFleet,
    RequestWatch,
    VmagentFleet,
    ZkpollFleet,
    bucket_counts,
    stored_samples,
    unscraped_max,
    up_times,
)
from benchmarks._scrape_profile import profile
from zkpoll.exceptions import ZkpollError
from zkpoll.service.cycles import source_offset
from zkpoll.testing import ManagedZooKeeper
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics

IMPLS = ("zkpoll", "vmagent", "vmagent_rf2", "prometheus")
EVENTS = ("join", "sigterm", "scale_down", "kill9")
GRACE = 3.0        # s after a window for the last samples to reach VictoriaMetrics
EARLY = 0.2        # s before a zkpoll cycle boundary that an event fires
STEADY_TIMEOUT = 90.0
TARGET_PER_AGENT = 100_000


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, zk: ManagedZooKeeper,
                 vm: ManagedVictoriaMetrics, generator: ManagedExpositionServer) -> None:
        self.args, self.workdir = args, workdir
        self.zk, self.vm, self.generator = zk, vm, generator
        self.interval = args.interval
        self.targets = generator.targets

    # --- fleets and time --------------------------------------------------------------
    def fleet(self, impl: str) -> Fleet:
        a = self.args
        if impl == "zkpoll":
            return ZkpollFleet(self.workdir, self.zk.address, self.vm, self.targets,
                               a.interval, a.session_timeout)
        if impl == "prometheus":
            return PrometheusFleet(self.workdir, self.vm, self.targets, a.interval, job=impl)
        return VmagentFleet(self.workdir, self.vm, self.targets, a.interval, job=impl,
                            replication_factor=2 if impl == "vmagent_rf2" else 1)

    def boundary_after(self, job: str, t: float) -> float:
        """The first zkpoll cycle start of source ``job`` after ``t``."""
        offset = source_offset(job, self.interval)
        return (math.floor((t - offset) / self.interval) + 1) * self.interval + offset

    def wait_steady(self, fleet: Fleet, since: float) -> None:
        """Until every target has two stored ``up`` samples since ``since``."""
        deadline = time.monotonic() + STEADY_TIMEOUT
        while True:
            time.sleep(1.0)
            self.vm.flush()
            times = up_times(self.vm, fleet.job, since, time.time() + 60, self.targets)
            missing = sum(1 for t in self.targets if len(times.get(t, ())) < 2)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"{fleet.impl}: {missing} of {len(self.targets)} targets "
                                 f"without two stored up samples after {STEADY_TIMEOUT:.0f} s")

    def start(self, impl: str) -> Fleet:
        fleet = self.fleet(impl)
        t0 = time.time()
        try:
            fleet.start(self.args.agents)
            self.wait_steady(fleet, t0)
        except BaseException:
            self.close(fleet)
            raise
        progress(f"{impl}: {self.args.agents} members steady after {time.time() - t0:.1f} s")
        return fleet

    @staticmethod
    def close(fleet: Fleet) -> None:
        if isinstance(fleet, ZkpollFleet) and any(not a.alive and a.proc.returncode
                                                  not in (0, -9) for a in fleet.agents):
            progress(fleet.logs())
        fleet.close()

    # --- 1. throughput ----------------------------------------------------------------
    def window(self, fleet: Fleet) -> dict[str, Any]:
        """CPU, RSS and the generator's request counts over ``--cycles`` intervals from
        a zkpoll cycle boundary (the samples are counted later: :meth:`throughput`)."""
        t0 = self.boundary_after(fleet.job, time.time() + 0.5) - 0.05
        t1 = t0 + self.args.cycles * self.interval
        sleep_until(t0)
        cpu0, req0 = fleet.cpu(), self.generator.scrape_counts()
        sleep_until(t1)
        cpu1, req1, rss = fleet.cpu(), self.generator.scrape_counts(), fleet.rss()
        return {"t0": t0, "t1": t1, "cpu": cpu1 - cpu0, "rss": rss,
                "requests": sum(req1.values()) - sum(req0.values())}

    def throughput(self, fleet: Fleet, window: dict[str, Any]) -> dict[str, Any]:
        """The ``scrape`` figures of a :meth:`window`, at least :data:`GRACE` s after it."""
        t0, t1, cpu, cycles = window["t0"], window["t1"], window["cpu"], self.args.cycles
        self.vm.flush()
        stored = stored_samples(self.vm, fleet.job, t0, t1)
        if not stored:
            raise BenchError(f"{fleet.impl}: nothing stored in the window")
        return {"series_per_s": round(stored / (t1 - t0)),
                "cpu_s_per_million_series": round(cpu / stored * 1e6, 2),
                "rss_mb_per_agent": round(window["rss"], 1),
                "cpu_cores": round(cpu / (t1 - t0), 3),
                "stored_per_target_cycle": round(stored / len(self.targets) / cycles, 1),
                "requests_per_target_cycle": round(
                    window["requests"] / len(self.targets) / cycles, 2),
                "window_s": round(t1 - t0, 2), "series_from": "victoriametrics"}

    # --- 2. churn ---------------------------------------------------------------------
    def churn(self, fleet: Fleet, event: str) -> dict[str, Any]:
        interval = self.interval
        watch = RequestWatch(self.generator)
        watch.start()
        try:
            t_event = self.boundary_after(fleet.job, time.time() + 0.5 * interval) - EARLY
            sleep_until(t_event)
            fired = time.time()
            getattr(fleet, event)()
            progress(f"{fleet.impl}: {event} done in {time.time() - fired:.1f} s")
            end = t_event + self.args.post * interval
            sleep_until(end + GRACE)
        finally:
            watch.stop()
        self.vm.flush()
        times = up_times(self.vm, fleet.job, t_event - 3 * interval, end, self.targets)
        counts = bucket_counts(times, interval, t_event, end,
                               copies=getattr(fleet, "replication_factor", 1))
        gap = watch.gap_max(t_event - interval, end)
        line: dict[str, Any] = {
            **counts,
            "targets_unscraped_max_s": round(unscraped_max(times, t_event - interval, end), 3),
            "request_gap_max_s": rounded(gap, 2),
            "late_max_s": None if gap is None else round(max(0.0, gap - interval), 2)}
        if event == "kill9" and isinstance(fleet, ZkpollFleet):
            timeout = self.args.session_timeout
            line.update(expiry_s=fleet.expiry(fired), session_timeout_s=timeout,
                        bound_s=timeout + 0.5,
                        within_bound=line["late_max_s"] is not None
                        and line["late_max_s"] <= timeout + 0.5)
        return line

    def run_impl(self, impl: str) -> dict[str, Any] | None:
        """Throughput, then the first event on the same fleet, then one fresh fleet per
        other event; the throughput figures (None if that part failed)."""
        common = {"impl": impl, "agents": self.args.agents}
        result = None
        for index, event in enumerate(self.args.events):
            fleet = None
            try:
                fleet = self.start(impl)
                window = self.window(fleet) if index == 0 else None
                line = self.churn(fleet, event)   # the window's samples arrive meanwhile
                if window is not None:
                    try:
                        result = self.throughput(fleet, window)
                        emit(bench="scrape", **common, targets=len(self.targets),
                             series_per_target=self.args.series, interval_s=self.interval,
                             **result)
                    except (BenchError, ZkpollError) as exc:
                        emit(bench="scrape", **common, error=str(exc))
                        self.failed = True
                emit(bench="scrape_churn", **common, event=event, targets=len(self.targets),
                     interval_s=self.interval, **line)
            except (BenchError, ZkpollError) as exc:
                emit(bench="scrape_churn", **common, event=event, error=str(exc))
                self.failed = True
            finally:
                if fleet is not None:
                    self.close(fleet)
        return result

    failed = False


# --- 3. one agent, and where its time goes ------------------------------------------
def single_agent(args: argparse.Namespace, workdir: Path, zk: ManagedZooKeeper,
                 vm: ManagedVictoriaMetrics) -> None:
    with ManagedExpositionServer(targets=args.single_targets, series=args.single_series,
                                 first_address="127.2.0.1") as generator:
        interval = args.single_interval
        fleet = ZkpollFleet(workdir, zk.address, vm, generator.targets, interval,
                            args.session_timeout, job="zkpoll_single")
        try:
            t_start = time.time()
            fleet.start(1)
            bench = Bench(args, workdir, zk, vm, generator)
            bench.interval = interval
            bench.wait_steady(fleet, t_start)
            agent = fleet.agents[0]
            t0 = bench.boundary_after(fleet.job, time.time() + 0.5) - 0.05
            t1 = t0 + args.single_cycles * interval
            pids = {"agent": agent.proc.pid, "generator": generator.pid,
                    "vm": vm._process.pid if vm._process else None}
            sleep_until(t0)
            cpu0 = {k: sum(cpu_seconds(p)) if p else 0.0 for k, p in pids.items()}
            m0 = fleet.metrics(agent)
            sleep_until(t1)
            cpu1 = {k: sum(cpu_seconds(p)) if p else 0.0 for k, p in pids.items()}
            m1 = fleet.metrics(agent)
            sleep_until(t1 + GRACE)
            vm.flush()
            stored = stored_samples(vm, fleet.job, t0, t1)
            window = t1 - t0
            def delta(name: str) -> float:
                key = f'{name}{{source="zkpoll_single"}}'
                return m1.get(key, 0.0) - m0.get(key, 0.0)

            scraped = delta("zkpoll_samples_polled_total")
            cpu = {k: cpu1[k] - cpu0[k] for k in pids}
            duration = m1.get('zkpoll_cycle_duration_seconds{source="zkpoll_single"}')
            backlog = sum(v for k, v in m1.items()
                          if k.startswith("zkpoll_publisher_backlog_samples"))
            per_cpu = scraped / cpu["agent"] if cpu["agent"] else None
            emit(bench="scrape_single_agent", targets=len(generator.targets),
                 series_per_target=args.single_series, interval_s=interval,
                 offered_series_per_s=round(len(generator.targets) * args.single_series
                                            / interval),
                 scraped_series_per_s=round(scraped / window),
                 stored_series_per_s=round(stored / window),
                 cpu_s_per_s=round(cpu["agent"] / window, 3),
                 series_per_cpu_s=None if per_cpu is None else round(per_cpu),
                 last_cycle_duration_s=rounded(duration, 3),
                 cycles_in_window=int(delta("zkpoll_cycles_total")),
                 pollster_timeouts=int(delta("zkpoll_pollster_timeouts_total")),
                 spool_backlog_samples=int(backlog),
                 generator_cpu_s_per_s=round(cpu["generator"] / window, 3),
                 vm_cpu_s_per_s=round(cpu["vm"] / window, 3),
                 rss_mb=round(fleet.rss(), 1), window_s=round(window, 2),
                 target_series_per_s=TARGET_PER_AGENT,
                 reached=scraped / window >= TARGET_PER_AGENT,
                 one_core_would_reach=per_cpu is not None and per_cpu >= TARGET_PER_AGENT)
        finally:
            fleet.close()
        profile(args, generator)


# --- main -------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scrape_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3, help="members per implementation")
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--series", type=int, default=200, help="series per target")
    parser.add_argument("--interval", type=int, default=5, help="scrape interval, s")
    parser.add_argument("--session-timeout", type=float, default=2.0,
                        help="zkpoll's ZooKeeper session timeout, s")
    parser.add_argument("--cycles", type=int, default=4, help="throughput window, intervals")
    parser.add_argument("--post", type=int, default=4,
                        help="intervals observed after each churn event")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help=f"comma-separated subset of {','.join(IMPLS)}")
    parser.add_argument("--events", default=",".join(EVENTS),
                        help=f"comma-separated subset of {','.join(EVENTS)}")
    parser.add_argument("--single-targets", type=int, default=200)
    parser.add_argument("--single-series", type=int, default=1000)
    parser.add_argument("--single-interval", type=int, default=2)
    parser.add_argument("--single-cycles", type=int, default=5)
    parser.add_argument("--profile-targets", type=int, default=50)
    parser.add_argument("--profile-rounds", type=int, default=3)
    parser.add_argument("--no-single", action="store_true",
                        help="skip the single-agent run and the profile")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 agents, 40 x 100 series, interval 3, kill9 only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.agents, args.targets, args.series, args.interval = 2, 40, 100, 3
        args.session_timeout, args.cycles, args.post, args.events = 1.0, 2, 3, "kill9"
        args.single_targets, args.single_series, args.single_cycles = 40, 500, 3
        args.profile_targets, args.profile_rounds = 20, 2
    args.impls = [i for i in args.impls.split(",") if i]
    args.events = [e for e in args.events.split(",") if e]
    if set(args.impls) - set(IMPLS) or set(args.events) - set(EVENTS) or not args.events:
        parser.error(f"--impls from {IMPLS}, --events (at least one) from {EVENTS}")
    if args.agents < 2:
        parser.error("--agents: at least 2 (kill9 and sigterm remove one)")
    if args.interval < args.session_timeout + 1.5:
        parser.error("--interval must exceed --session-timeout + 1.5 s (catch-up in the cycle)")

    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="zkpoll-scrape-bench-"))
    status = 0
    try:
        with ExitStack() as stack:
            zk = stack.enter_context(ManagedZooKeeper(tick_time=200))
            vm = stack.enter_context(ManagedVictoriaMetrics())
            with ManagedExpositionServer(targets=args.targets, series=args.series) as generator:
                progress(f"ZooKeeper {zk.address}, VictoriaMetrics {vm.address}, "
                         f"{args.targets} targets x {args.series} series")
                bench = Bench(args, workdir, zk, vm, generator)
                results = {impl: bench.run_impl(impl) for impl in args.impls}
                status |= bench.failed
            zk_cpu = results.get("zkpoll")
            ratio = {f"cpu_per_series_zkpoll_over_{impl}": round(
                zk_cpu["cpu_s_per_million_series"] / r["cpu_s_per_million_series"], 2)
                for impl, r in results.items() if impl != "zkpoll" and r and zk_cpu}
            if ratio:
                emit(bench="scrape_ratio", **ratio)
            if not args.no_single:
                try:
                    single_agent(args, workdir, zk, vm)
                except (BenchError, ZkpollError) as exc:
                    emit(bench="scrape_single_agent", error=str(exc))
                    status = 1
    except (BenchError, ZkpollError, OSError) as exc:
        emit(bench="scrape", error=str(exc))
        status = 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
