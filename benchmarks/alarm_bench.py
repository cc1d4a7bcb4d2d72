"""Alarm benchmark: zkpoll-alarm evaluators against an Aodh-style tooz loop, one run.

Prints one JSON line per measurement on stdout (progress on stderr)::

    python -m benchmarks.alarm_bench [--alarms 10000] [--evaluators 3] [--interval 60]
                                     [--cycles 3] [--session-timeout 10]
                                     [--impl zkpoll,tooz] [--skip-eval] [--skip-failover]

Set-up.  One ZooKeeper (tick 200 ms; ``--zk-hosts`` uses a running one),
one real Prometheus (``--prometheus-url`` uses a running one) and, per
implementation, a webhook receiver that records every delivery
(``zkpoll.testing.webhook.WebhookReceiver``).  ``--alarms`` prometheus
alarms, all with ``evaluation_interval = --interval`` (I), query
``floor((vector(time()) + OFFSET) / PERIOD) % 2 > 0.5`` (a function of the
query time only, so Prometheus needs no data): with ``PERIOD = F I`` and
``OFFSET = (i mod F) I`` (F = ``--flip-every``, default 10) one alarm in F
changes state in every cycle; every transition POSTs to the receiver
(``alarm_actions`` and ``ok_actions``).  The implementations run one after
the other, each with ``--evaluators`` processes on the same cycle schedule
(cycle c starts at ``c I + offset``, zkpoll's offset of source
``alarms-<I>s``):

* ``zkpoll``: real ``zkpoll-alarm`` processes (``python -m zkpoll.cmd.alarm``),
  ``backend_url = zookeeper://.../<root>?timeout=<session timeout>``,
  ``heartbeat_interval = min(1, T/10)``, ``settle_time = 5 x heartbeat``,
  ``[alarm] max_parallel_queries = --max-parallel`` (8), one evaluation log
  and one notification spool each;
* ``tooz``: ``benchmarks._tooz_alarm_peer``, what Aodh's evaluator does
  (tooz group on the same ZooKeeper, ``get_members`` and a fresh
  ``tooz.hashring.HashRing`` at every cycle start, alarm state in one znode
  per alarm written without compare-and-set, one POST per transition with
  the header ``Idempotency-Key: <alarm>:<seq>``), same session timeout,
  same parallelism, same evaluation-log format.

Every number below comes from the evaluation logs (one JSON line per
evaluation: ``t`` when its state was written, ``alarm``, ``cycle``,
``start``, ``member``, ``result``, ...), the receiver and psutil.

Per implementation: W = the first cycle in which every alarm was written and
every evaluator wrote, and by the end of which every transition recorded so
far was delivered (checked 1.5 s before the next cycle starts: the start-up
cycle, in which every alarm leaves "insufficient data", skipped); then ``--cycles`` measured cycles for zkpoll
(``--tooz-cycles``, default 1, for tooz); then the failover.

``alarm_eval`` (over the measured cycles):

* ``lag_p50_s`` / ``lag_p99_s``: of ``t - start`` over every written
  evaluation (nearest rank).  zkpoll writes a batch's log lines together,
  after its compare-and-set, so the lag of an evaluation is the time its
  evaluator took for the whole share of that cycle.
* ``cpu_s_per_1000_alarms``: user + system CPU seconds of the evaluator
  processes (psutil), from 1.5 s before the first measured cycle to 1.5 s
  before the cycle after the last one (exactly ``cycles`` intervals, idle
  time included), divided by written evaluations / 1000.
* ``evaluations_per_s_per_evaluator``: per evaluator and cycle, written
  evaluations / (its last ``t`` - the cycle start), averaged: the throughput
  while busy.  (The last minus the first ``t`` of a batch would be
  microseconds for zkpoll, whose batch lines are written at once.)
* ``rss_mb_per_evaluator``: mean RSS at the end; ``loadavg``: 1-min load
  average at the end (``loadavg_start`` at the start); ``gaps`` /
  ``duplicates``: (alarm, cycle) pairs never written / written twice;
  ``query_errors``: evaluations whose query failed; ``deliveries``: webhook
  deliveries received over the same window.

``alarm_failover`` (kill -9 of the evaluator that wrote the most in the last
cycle before it, ~1 s before the next cycle C1 starts, so that its whole
share of C1 is orphaned):

* ``orphans``: the alarms the victim wrote in the cycle before the kill.
* ``max_s`` / ``p50_s``: per orphan, the ``t`` of its first written
  evaluation at or after the kill minus the start of C1 (null unless every
  orphan was evaluated; ``recovered`` says how many were).
* ``missed_evaluations``: (orphan, cycle) pairs for C1 and C2 (the cycles
  starting within 2 intervals of the kill) never written.
* ``duplicate_evaluations``: (alarm, cycle) pairs written more than once,
  from the cycle before the kill to C2; ``lost_writes``: zkpoll evaluations
  whose compare-and-set lost (dropped, not notified).
* ``duplicate_notifications``: deliveries whose Idempotency-Key had been
  delivered before (whole run of that implementation, after waiting up to
  30 s for every recorded transition to arrive; ``undelivered`` counts those
  that did not).
* ``expiry_s``: from the kill until the victim's member znode disappeared
  (seen by the bench polling every 0.1 s).

With the defaults a run takes about 10 minutes (570 and 591 s measured):
zkpoll about 6 (start-up, waiting for the first aligned cycle, W, 3
measured cycles, C1, C2), tooz about 4 (W, one measured cycle, C1, C2);
up to 12 when a fleet's first cycle is not complete and W moves one on.  Anything that prevents
a measurement prints a line with ``error`` and exits 1.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import _alarm_analysis as analysis
from benchmarks._alarm_analysis import (
    Evaluation,
    duplicate_deliveries,
    eval_metrics,
    failover_metrics,
    flip_alarms_yaml,
    parse_evaluation,
)
from benchmarks._bench_util import (
    ROOT,
    BenchError,
    ChildProcess,
    MemberMonitor,
    cpu_seconds,
    emit,
    exit_on_sigterm,
    load1,
    module_command,
    progress,
    require_tooz,
    rounded,
    rss_mb,
    sleep_until,
    spawn_logged,
    stop_children,
)
from zkpoll.service.cycles import source_offset
from zkpoll.testing import ManagedZooKeeper
from zkpoll.testing.prometheus import ManagedPrometheus
from zkpoll.testing.webhook import WebhookReceiver

PEER = "_tooz_alarm_peer"
IMPLS = ("zkpoll", "tooz")
ZKPOLL_GROUP = "alarm"            # no partitioning_group_prefix
CHECK_BEFORE_NEXT = 1.5           # a cycle is checked this long before the next starts
KILL_BEFORE = 1.0                 # the victim dies this long before C1
STOP_TIMEOUT = 30.0


# --- processes --------------------------------------------------------------------------
@dataclass
class EvaluatorProc(ChildProcess):
    """One evaluator process and its evaluation log (read incrementally)."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    evals_path: Path
    evaluations: list[Evaluation] = field(default_factory=list)
    _offset: int = 0

    def read(self) -> None:
        try:
            with self.evals_path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        self.evaluations += [parse_evaluation(self.name, line)
                             for line in chunk[:end].splitlines() if line.strip()]
        self._offset += end

    @property
    def member(self) -> str | None:
        return self.evaluations[-1].member if self.evaluations else None

    def cpu_s(self) -> float:
        return sum(cpu_seconds(self.proc.pid))

    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)


class Fleet:
    """The evaluators of one implementation, their receiver and their alarms."""

    def __init__(self, run: Run, impl: str) -> None:
        self.run, self.impl = run, impl
        self.args = run.args
        self.workdir = run.workdir / impl
        self.workdir.mkdir()
        self.receiver = WebhookReceiver().start()
        self.procs: list[EvaluatorProc] = []
        self.tag = uuid.uuid4().hex[:8]
        self.root = f"/alarm-bench-{self.tag}"
        self.tooz_group = f"alarm_evaluator-{self.tag}"
        definitions = self.workdir / "alarms"
        definitions.mkdir()
        ids, chunk = run.ids, 1000
        for part in range(0, len(ids), chunk):
            (definitions / f"part{part // chunk:03d}.yaml").write_text(flip_alarms_yaml(
                ids[part:part + chunk], self.args.interval, self.args.flip_every,
                self.receiver.url_for("/alarm")))
        self.definitions = definitions

    @property
    def members_path(self) -> str:
        if self.impl == "zkpoll":
            return f"{self.root}/groups/{ZKPOLL_GROUP}/members"
        return f"/tooz/{self.tooz_group}"

    def start(self) -> None:
        for i in range(self.args.evaluators):
            self._spawn(f"{self.impl}-{i}")
        progress(f"{self.impl}: started {len(self.procs)} evaluators "
                 f"(pids {', '.join(str(p.proc.pid) for p in self.procs)})")

    def _spawn(self, name: str) -> None:
        a, run = self.args, self.run
        evals = self.workdir / f"{name}.evaluations.jsonl"
        log = self.workdir / f"{name}.log"
        if self.impl == "zkpoll":
            heartbeat = min(1.0, a.session_timeout / 10)
            conf = self.workdir / f"{name}.conf"
            conf.write_text(
                "[coordination]\n"
                f"backend_url = zookeeper://{run.zk_hosts}{self.root}"
                f"?timeout={a.session_timeout:g}\n"
                f"member_name = {name}\n"
                f"heartbeat_interval = {heartbeat:g}\n"
                f"settle_time = {5 * heartbeat:g}\n"
                "[alarm]\n"
                f"definitions_dir = {self.definitions}\n"
                f"prometheus_url = {run.prometheus_url}\n"
                f"query_timeout = {run.query_timeout:g}\n"
                f"max_parallel_queries = {a.max_parallel}\n"
                f"evaluation_log = {evals}\n"
                f"spool_dir = {self.workdir / (name + '-spool')}\n")
            command = [sys.executable, "-m", "zkpoll.cmd.alarm", "--config-file", str(conf)]
            cwd = self.workdir
        else:
            command = module_command(
                PEER, "--url", f"zookeeper://{run.zk_hosts}?timeout={a.session_timeout}",
                "--zk-hosts", run.zk_hosts, "--state-path", f"{self.root}/states",
                "--member-id", f"{name}-{uuid.uuid4().hex[:6]}", "--group", self.tooz_group,
                "--definitions", str(self.definitions),
                "--prometheus-url", run.prometheus_url,
                "--query-timeout", f"{run.query_timeout:g}",
                "--max-parallel", str(a.max_parallel),
                "--interval", str(a.interval), "--offset", repr(run.offset),
                "--session-timeout", str(a.session_timeout), "--evaluation-log", str(evals))
            cwd = ROOT
        self.procs.append(EvaluatorProc(name, spawn_logged(command, log, cwd), log, evals))

    # --- reading --------------------------------------------------------------------
    def read(self) -> None:
        for p in self.procs:
            p.read()

    def check_alive(self, ended: Iterable[str] = ()) -> None:
        dead = [f"{p.name} (rc {p.proc.returncode})" for p in self.procs
                if p.name not in set(ended) and not p.alive]
        if dead:
            raise BenchError(f"{self.impl}: evaluator(s) exited on their own: {', '.join(dead)}")

    def evaluations(self) -> list[Evaluation]:
        return [e for p in self.procs for e in p.evaluations]

    def written_in(self, cycle: int) -> dict[str, set[str]]:
        """agent -> the alarms it wrote in ``cycle``."""
        return analysis.written_in(self.evaluations(), cycle)

    def complete(self, cycle: int, agents: int | None = None) -> bool:
        return analysis.complete(self.evaluations(), cycle, self.run.idset, agents)

    def undelivered(self) -> set[str]:
        """Keys of the transitions recorded (with actions) not delivered yet."""
        return analysis.undelivered(self.evaluations(), self.receiver.keys())

    def cpu_s(self) -> float:
        return sum(p.cpu_s() for p in self.procs)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (rc {p.proc.poll()}) ---\n{p.log_tail()}"
                         for p in self.procs)

    def stop(self) -> None:
        stop_children(self.procs, STOP_TIMEOUT)
        self.receiver.close()


# --- the run ----------------------------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.interval = args.interval
        self.offset = source_offset(f"alarms-{args.interval}s", args.interval)
        self.ids = [f"alarm-{i:05d}" for i in range(args.alarms)]
        self.idset = set(self.ids)
        # an integer: zkpoll sends it as Prometheus's "timeout=<n>s"
        self.query_timeout = max(1, min(10, args.interval // 2))
        self.zk: ManagedZooKeeper | None = None
        self.prometheus: ManagedPrometheus | None = None
        self.zk_hosts = args.zk_hosts or ""
        self.prometheus_url = args.prometheus_url or ""
        self.fleet: Fleet | None = None

    def start_servers(self) -> None:
        if not self.zk_hosts:
            self.zk = ManagedZooKeeper(tick_time=200)
            self.zk.start()
            self.zk_hosts = self.zk.address
        if not self.prometheus_url:
            self.prometheus = ManagedPrometheus()
            self.prometheus.start()
            self.prometheus_url = f"http://{self.prometheus.address}"
        progress(f"ZooKeeper {self.zk_hosts}, Prometheus {self.prometheus_url}")

    def close(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
        if self.prometheus is not None:
            self.prometheus.close()
        if self.zk is not None:
            self.zk.close()

    def start_of(self, cycle: int) -> float:
        return cycle * self.interval + self.offset

    def next_cycle(self, t: float) -> int:
        return math.floor((t - self.offset) / self.interval) + 1

    def tick(self, ended: Iterable[str] = ()) -> Callable[[], None]:
        fleet = self.fleet
        assert fleet is not None

        def read() -> None:
            fleet.read()
            fleet.check_alive(ended)
        return read

    # --- one implementation -----------------------------------------------------------
    def execute(self, impl: str) -> None:
        a = self.args
        self.fleet = fleet = Fleet(self, impl)
        fleet.start()
        common = {"impl": impl, "alarms": a.alarms, "evaluators": a.evaluators,
                  "interval_s": a.interval}
        first = self.first_complete_cycle(fleet)
        measured = 0 if a.skip_eval else (a.cycles if impl == "zkpoll" else a.tooz_cycles)
        if measured:
            self.measure(fleet, first, measured, common)
        if not a.skip_failover:
            self.failover(fleet, first + measured, common)
        progress(f"{impl}: stopping the evaluators")
        fleet.stop()
        self.fleet = None

    def first_complete_cycle(self, fleet: Fleet) -> int:
        """The first cycle every alarm was written in, by every evaluator (W)."""
        deadline = time.time() + max(self.args.startup_timeout, 3 * self.interval)
        cycle = self.next_cycle(time.time())
        while True:
            check_at = self.start_of(cycle + 1) - CHECK_BEFORE_NEXT
            if check_at > deadline:
                raise BenchError(f"{fleet.impl}: no cycle evaluated completely by all "
                                 f"{self.args.evaluators} evaluators within "
                                 f"{self.args.startup_timeout:.0f} s of the start")
            sleep_until(check_at, self.tick())
            complete = fleet.complete(cycle, self.args.evaluators)
            pending = fleet.undelivered()
            if complete and not pending:
                progress(f"{fleet.impl}: cycle {cycle} evaluated completely (start-up cycle, "
                         "not measured), every transition delivered")
                return cycle
            progress(f"{fleet.impl}: cycle {cycle}: {len(fleet.written_in(cycle))} "
                     f"evaluator(s) wrote{'' if complete else ', not complete'}; "
                     f"{len(pending)} transition(s) not delivered yet")
            cycle += 1

    def measure(self, fleet: Fleet, first: int, count: int, common: dict[str, Any]) -> None:
        load_start = load1()
        cpu0 = fleet.cpu_s()
        delivered0 = len(fleet.receiver.deliveries())
        cycles = list(range(first + 1, first + 1 + count))
        progress(f"{fleet.impl}: measuring cycles {cycles[0]}..{cycles[-1]} "
                 f"(until {time.strftime('%H:%M:%S', time.localtime(self.start_of(cycles[-1] + 1)))})")
        sleep_until(self.start_of(cycles[-1] + 1) - CHECK_BEFORE_NEXT, self.tick())
        cpu = fleet.cpu_s() - cpu0
        rss = [p.rss_mb() for p in fleet.procs]
        delivered = len(fleet.receiver.deliveries()) - delivered0
        fleet.read()
        m = eval_metrics(fleet.evaluations(), cycles, self.idset)
        per_1000 = cpu / (m["evaluations"] / 1000) if m["evaluations"] else None
        emit(bench="alarm_eval", **common, cycles=count, lag_p50_s=m["lag_p50_s"],
             lag_p99_s=m["lag_p99_s"], cpu_s_per_1000_alarms=rounded(per_1000),
             evaluations_per_s_per_evaluator=m["evaluations_per_s_per_evaluator"],
             rss_mb_per_evaluator=round(sum(rss) / len(rss), 1),
             loadavg=load1(), loadavg_start=load_start,
             lag_max_s=m["lag_max_s"], cpu_s=round(cpu, 2), evaluations=m["evaluations"],
             gaps=m["gaps"], duplicates=m["duplicates"], transitions=m["transitions"],
             query_errors=m["query_errors"], deliveries=delivered,
             max_parallel_queries=self.args.max_parallel,
             session_timeout_s=self.args.session_timeout)

    def failover(self, fleet: Fleet, before: int, common: dict[str, Any]) -> None:
        """kill -9 the busiest evaluator of cycle ``before`` just before the next one."""
        a = self.args
        by_agent = fleet.written_in(before)
        live = [p for p in fleet.procs if p.alive]
        victim = max(live, key=lambda p: len(by_agent.get(p.name, ())))
        orphans = set(by_agent.get(victim.name, ()))
        member = victim.member
        if not orphans or member is None:
            raise BenchError(f"{fleet.impl}: {victim.name} evaluated nothing in cycle {before}")
        c1 = before + 1
        c1_start = self.start_of(c1)
        sleep_until(c1_start - KILL_BEFORE, self.tick())
        t_kill = time.time()
        victim.proc.kill()
        progress(f"{fleet.impl}: SIGKILL {victim.name} ({member}, {len(orphans)} alarms) "
                 f"{c1_start - t_kill:.2f} s before cycle {c1}")
        watch = MemberMonitor(self.zk_hosts, [fleet.members_path], every=0.1)
        watch.start()
        try:
            ended = (victim.name,)
            deadline = self.start_of(c1 + 2) - CHECK_BEFORE_NEXT
            sleep_until(self.start_of(c1 + 1), self.tick(ended))
            while time.time() < deadline:
                self.tick(ended)()
                recovered = {e.alarm for e in fleet.evaluations()
                             if e.written and e.t >= t_kill and e.agent != victim.name}
                if fleet.complete(c1 + 1) and orphans <= recovered:
                    break
                time.sleep(0.5)
            sleep_until(time.time() + 1.0, self.tick(ended))  # grace for late duplicates
        finally:
            watch.stop()
        victim.kill()
        gone = watch.gone(fleet.members_path, member)
        undelivered = self.wait_delivered(fleet)
        m = failover_metrics(fleet.evaluations(), victim.name, orphans, t_kill, c1, c1_start,
                             self.idset)
        emit(bench="alarm_failover", **common, max_s=m["max_s"],
             session_timeout_s=a.session_timeout,
             missed_evaluations=m["missed_evaluations"],
             duplicate_evaluations=m["duplicate_evaluations"],
             duplicate_notifications=duplicate_deliveries(fleet.receiver.keys()),
             orphans=m["orphans"], recovered=m["recovered"], same_cycle=m["same_cycle"],
             p50_s=m["p50_s"], kill_before_cycle_s=round(c1_start - t_kill, 3),
             expiry_s=rounded(None if gone is None else gone - t_kill),
             lost_writes=m["lost_writes"], gaps=m["gaps"], undelivered=undelivered,
             deliveries=len(fleet.receiver.deliveries()),
             loadavg=load1())

    def wait_delivered(self, fleet: Fleet, timeout: float = 30.0) -> int:
        """Wait until every recorded transition with actions was delivered; how many not."""
        deadline = time.monotonic() + timeout
        while True:
            missing = fleet.undelivered()
            if not missing or time.monotonic() > deadline:
                if missing:
                    progress(f"{fleet.impl}: {len(missing)} transition(s) not delivered, "
                             f"e.g. {sorted(missing)[:5]}")
                return len(missing)
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.alarm_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", type=int, default=10000)
    parser.add_argument("--evaluators", type=int, default=3, help="per implementation")
    parser.add_argument("--interval", type=int, default=60, help="evaluation interval, s")
    parser.add_argument("--cycles", type=int, default=3, help="measured cycles (zkpoll)")
    parser.add_argument("--tooz-cycles", type=int, default=1,
                        help="measured cycles of the tooz peers (0: no alarm_eval line)")
    parser.add_argument("--session-timeout", type=int, default=10,
                        help="ZooKeeper session timeout, s (an integer: tooz wants one)")
    parser.add_argument("--impl", default="zkpoll,tooz",
                        help="comma-separated, run in this order: zkpoll, tooz")
    parser.add_argument("--skip-eval", action="store_true", help="no alarm_eval lines")
    parser.add_argument("--skip-failover", action="store_true", help="no alarm_failover lines")
    parser.add_argument("--max-parallel", type=int, default=8,
                        help="queries at once per evaluator ([alarm] max_parallel_queries)")
    parser.add_argument("--flip-every", type=int, default=10,
                        help="each alarm changes state every this many cycles")
    parser.add_argument("--startup-timeout", type=float, default=180.0,
                        help="s until the first complete cycle of a fleet")
    parser.add_argument("--zk-hosts", help="use this ZooKeeper instead of starting one")
    parser.add_argument("--prometheus-url", help="use this Prometheus instead of starting one")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (configs, logs, evaluation logs)")
    args = parser.parse_args()
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    if not impls or set(impls) - set(IMPLS):
        parser.error(f"--impl: a comma-separated list of {', '.join(IMPLS)}")
    if args.alarms < args.evaluators or args.evaluators < 2:
        parser.error("--evaluators: at least 2, and at most --alarms")
    if args.cycles < 1 or args.tooz_cycles < 0 or args.flip_every < 1:
        parser.error("--cycles and --flip-every: at least 1; --tooz-cycles: at least 0")
    if args.interval < 2 * CHECK_BEFORE_NEXT + 1:
        parser.error(f"--interval: at least {2 * CHECK_BEFORE_NEXT + 1:g} s")
    if "tooz" in impls:
        require_tooz()

    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="zkpoll-alarm-bench-"))
    run = Run(args, workdir)
    status = 0
    started = time.monotonic()
    try:
        run.start_servers()
        for impl in impls:
            run.execute(impl)
    except BenchError as exc:
        emit(bench="alarm_bench", impl=run.fleet.impl if run.fleet else None, error=str(exc))
        if run.fleet is not None:
            print(run.fleet.logs(), file=sys.stderr)
        status = 1
    finally:
        run.close()
        progress(f"done in {time.monotonic() - started:.0f} s")
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
