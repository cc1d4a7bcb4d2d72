"""Scale benchmark: N group members with their own sessions, zkpoll against tooz, one run.

Prints one JSON line per implementation and N::

    python -m benchmarks.scale_bench [--members 100,250,500,1000] [--workers 4]
                                   [--impl zkpoll,tooz] [--ensemble]
                                   [--member-nice 10] [--switch-interval 0.05]

(N = 1000 on a 2-core machine: ``--workers 32 --member-nice 10
--switch-interval 0.05``, see docs/design.md section 10.)

Set-up, per implementation and N: a fresh ZooKeeper (``zkpoll.testing``:
one server with a 200 ms tick, or with ``--ensemble`` three in a quorum;
``--zk-hosts`` uses a running one instead).  N members, each with its own
ZooKeeper session, spread over ``--workers`` processes
(``benchmarks._scale_worker``, driven over pipes), plus ``--victims``
members in one more process that is killed.  zkpoll members are built with
zkpoll's real ``get_coordinator`` and ``Partition`` (member data like the
agent's ``central`` namespace, one source), all zkpoll calls in the
``ZkpollMember`` adapter of the worker; tooz members with ``tooz.coordination.get_coordinator`` on the
same ZooKeeper, as Ceilometer uses group membership (``start(start_heart=
True)``, ``create_group``/``join_group``, ``watch_join_group``/
``watch_leave_group``, ``get_members``; their views change only in
``run_watchers()``, which each member calls every ``--tooz-watch-interval``
seconds).  A member's *view* is the set of member ids it currently
believes in (zkpoll: ``partition.membership.member_ids``).  Every wait is
bounded by ``--converge-timeout`` (the crash by at least 3 session
timeouts): a measure that did not converge is ``null`` and named in
``timed_out``; a step that fails outright ends the line with ``error``
after the measures already taken.

Measures (in this order; times are wall clock, read by every process on the
same machine):

* ``join_converged_s``: all sessions connected first; at one instant every
  member starts joining (a join storm); until every view holds all N.
* ``watches``: ZooKeeper's ``mntr`` zk_watch_count (data and children watches;
  ``wchs`` counts data watches only) ``settle_time`` + 1 s
  after the join (summed over the ensemble), and ``watches_per_member``.
* ``zk_idle_requests_per_member_per_s``: ``mntr`` ``zk_packets_received``
  (every request and ping the servers received, summed) over
  ``--idle-window`` seconds with nothing happening, per member and second:
  the heartbeats (zkpoll's lease reads, kazoo pings; tooz's run_watchers
  listings).  Idle only if the join converged: otherwise its churn counts.
* claims (zkpoll only): at one instant (a barrier at a wall-clock time)
  every member calls ``announce_cycle`` for the same new cycle (timeout
  ``--claim-timeout``).  ``claim_p99_s`` is the 99th percentile of the call
  latencies, ``claims_unconfirmed`` the calls that returned False or had
  not returned ``--converge-timeout`` s after the barrier
  (``claims_not_returned``; counted at the time waited).
  ``claims_seen_s``: from the barrier until every view holds every member's
  claim (``polling_cycle`` in member data); null when the views do not carry
  claims.  For tooz the "cycle" is one ``run_watchers()`` per member at the
  barrier (what a Ceilometer agent does for membership per cycle) and the
  claim fields are null.
* ``zk_requests_per_member_per_cycle``: packets received from just before
  the barrier until the claims are confirmed and seen (plus 1 s), divided by
  N: raw, heartbeats included; ``zk_idle_requests_per_member_same_window`` is
  the idle rate over the same window length, and
  ``zk_net_requests_per_member_per_cycle`` the difference (what the cycle
  itself cost).
* ``rss_mb_per_member``: the sum of the member processes' VmRSS (each
  includes its Python interpreter and imports) divided by N.
* ``leave_converged_s``: one member leaves gracefully (zkpoll:
  ``announce_leave(wait=5)`` then ``leave(wait=5)``, which lingers until
  its last confirmed claim is ``settle_time`` old; tooz: ``leave_group``);
  from the start of the leave until every other view has dropped it.
  ``leave_call_s``: how long the leaver's own calls took; ``leave_errors``:
  what they raised (logged and ignored, as the agent does).
* ``crash_converged_s``: SIGKILL of the victims' process; until every
  surviving view has dropped the victims.  Compare with
  ``session_timeout_s``.
* ``cpu_s``: where the cost goes, per phase (``join``, ``claims``,
  ``leave``): its wall time and the user and system CPU seconds of the
  member processes and of the ZooKeeper servers the bench started (0 with
  ``--zk-hosts``).  Two cores give at most ``2 x wall`` in all.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from benchmarks._bench_util import (
    BenchError,
    cpu_seconds,
    emit,
    exit_on_sigterm,
    load1,
    percentile,
    progress,
    require_tooz,
    rounded,
    rss_mb,
)
from benchmarks._scale_procs import Servers, WorkerProc, call_all, stop_workers

IMPLS = ("zkpoll", "tooz")
STOP_TIMEOUT = 30.0  # s for all member processes to stop gracefully after a run


# --- one implementation at one N ---------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, impl: str, n: int) -> None:
        self.args, self.impl, self.n = args, impl, n
        self.servers: Servers | None = None
        self.workers: list[WorkerProc] = []
        self.victim: WorkerProc | None = None
        self.timed_out: list[str] = []
        self.result: dict[str, Any] = {}
        tag = uuid.uuid4().hex[:6]
        self.ids = [f"bench-{i:04d}.{tag}" for i in range(n)]
        self.group = f"scale-{tag}"
        self.root = f"/scale-bench-{tag}"

    @property
    def all_procs(self) -> list[WorkerProc]:
        return self.workers + ([self.victim] if self.victim else [])

    def start(self) -> None:
        a = self.args
        self.servers = Servers(a.ensemble, a.zk_hosts)
        victims = min(a.victims, self.n - 2)
        regular, victim_ids = self.ids[:self.n - victims], self.ids[self.n - victims:]
        workers = max(1, min(a.workers, len(regular)))
        for w in range(workers):
            self.workers.append(WorkerProc(self.impl, f"worker-{w}", regular[w::workers],
                                           a.worker_log_level, a.member_nice,
                                           a.switch_interval))
        if victim_ids:
            self.victim = WorkerProc(self.impl, "victim", victim_ids, a.worker_log_level,
                                     a.member_nice, a.switch_interval)
        spec = {"hosts": self.servers.hosts, "root": self.root, "group": self.group,
                "session_timeout": a.session_timeout, "heartbeat": a.heartbeat,
                "settle_time": a.settle_time, "watch_interval": a.tooz_watch_interval,
                "connect_timeout": 60.0}
        progress(f"{self.impl} N={self.n}: connecting {self.n} sessions in "
                 f"{len(self.all_procs)} processes")
        replies = call_all(self.all_procs, "setup", 300.0,
                           args_for=lambda w: {"ids": w.ids, "spec": spec})
        connected = sum(r["connected"] for r in replies)
        errors = [e for r in replies for e in r["errors"]]
        progress(f"{self.impl} N={self.n}: {connected}/{self.n} members connected")
        if connected != self.n:
            raise BenchError(f"only {connected} of {self.n} sessions connected: {errors[:3]}")

    def close(self, graceful: bool = True) -> None:
        """Stop every process (``graceful``: members leave first, within
        ``STOP_TIMEOUT`` s in all; else SIGKILL at once), then ZooKeeper."""
        stop_workers(self.all_procs, STOP_TIMEOUT if graceful else 0.0)
        if self.servers is not None:
            self.servers.close()

    def wait_views(self, name: str, kind: str, ids: list[str], procs: list[WorkerProc],
                   skip: list[str] | None = None, index: int | None = None,
                   timeout: float | None = None) -> float | None:
        """Latest time any member (but ``skip``) first satisfied ``kind`` (None: timed out)."""
        timeout = self.args.converge_timeout if timeout is None else timeout
        replies = call_all(procs, "wait", timeout + 30.0, label=f"{self.impl} {name}",
                           kind=kind, ids=ids, skip=skip or [], timeout=timeout, index=index)
        if any(r.get("not_applicable") for r in replies):
            return None
        pending = sum(r["pending"] for r in replies)
        if pending:
            self.timed_out.append(name)
            progress(f"{self.impl} N={self.n}: {name}: {pending} view(s) not converged "
                     f"within {timeout:.0f} s")
            return None
        return max(r["converged_at"] for r in replies)

    def execute(self) -> None:
        """Measure, filling :attr:`result` as it goes (kept if a later step fails)."""
        with self._cpu("join"):
            self._join_storm()
        time.sleep(self.args.settle_time + 1.0)  # every member active, nothing in flight
        self._steady_cycle()
        rss = sum(rss_mb(p.proc.pid) for p in self.all_procs)
        self.result["rss_mb_total"] = round(rss, 1)
        self.result["rss_mb_per_member"] = round(rss / self.n, 2)
        with self._cpu("leave"):
            leaver = self._graceful_leave()
        self._crash(leaver)

    @contextlib.contextmanager
    def _cpu(self, phase: str) -> Iterator[None]:
        """Record ``cpu_s[phase]``: CPU seconds (user, system) the member processes
        and the ZooKeeper servers this bench started used during the phase, and
        its wall time; kept when the phase fails half-way."""
        assert self.servers is not None
        groups = {"members": [p.proc.pid for p in self.all_procs],
                  "zookeeper": self.servers.pids}

        def used() -> dict[str, tuple[float, float]]:
            totals = {}
            for name, pids in groups.items():
                times = [cpu_seconds(pid) for pid in pids]
                totals[name] = (sum(t[0] for t in times), sum(t[1] for t in times))
            return totals
        before, started = used(), time.monotonic()
        try:
            yield
        finally:
            after = used()
            self.result.setdefault("cpu_s", {})[phase] = {
                "wall": round(time.monotonic() - started, 2),
                **{f"{name}_{kind}": round(after[name][i] - before[name][i], 2)
                   for name in groups for i, kind in enumerate(("user", "sys"))}}

    def _join_storm(self) -> None:
        n, impl, result, procs = self.n, self.impl, self.result, self.all_procs
        at = time.time() + 1.0
        joined = call_all(procs, "join", 300.0, at=at)
        progress(f"{impl} N={n}: {n} members joined in "
                 f"{max(r['done'] for r in joined) - at:.2f} s; waiting for views")
        if errors := [e for r in joined for e in r["errors"]]:
            raise BenchError(f"join failed: {errors[:3]}")
        done = self.wait_views("join", "has", self.ids, procs)
        result["join_converged_s"] = rounded(done and done - at)
        if done is not None:
            progress(f"{impl} N={n}: join views converged: {result['join_converged_s']} s")

    def _steady_cycle(self) -> None:
        """Watches, the idle request rate, then one cycle in which all claim at once."""
        assert self.servers is not None
        a, n, impl, result, procs = self.args, self.n, self.impl, self.result, self.all_procs
        result["watches"] = self.servers.watches()
        result["watches_per_member"] = round(result["watches"] / n, 2)

        p0, t0 = self.servers.packets_received(), time.monotonic()
        time.sleep(a.idle_window)
        idle_rate = (self.servers.packets_received() - p0) / (time.monotonic() - t0)
        result["zk_idle_requests_per_member_per_s"] = round(idle_rate / n, 3)

        # zkpoll: every member claims the same new cycle; tooz: runs its watchers
        index = int(time.time())
        at = time.time() + 1.0
        p0, t0 = self.servers.packets_received(), time.time()
        if impl == "zkpoll":
            with self._cpu("claims"):
                claims = call_all(procs, "claim", a.claim_timeout + a.converge_timeout + 60.0,
                                  at=at, index=index, timeout=a.claim_timeout,
                                  grace=a.converge_timeout)
            latencies = [lat for r in claims for lat in r["latencies"]]
            result["claim_p99_s"] = rounded(percentile(latencies, 99))
            result["claim_p50_s"] = rounded(percentile(latencies, 50))
            result["claims_unconfirmed"] = sum(r["unconfirmed"] for r in claims)
            result["claims_not_returned"] = sum(r["not_returned"] for r in claims)
            if result["claims_not_returned"]:
                self.timed_out.append("claims")
            progress(f"{impl} N={n}: claims: p99 {result['claim_p99_s']} s, "
                     f"{result['claims_unconfirmed']} unconfirmed; waiting for views")
            seen = self.wait_views("claims_seen", "claims", self.ids, procs, index=index)
            result["claims_seen_s"] = rounded(seen and seen - at)
        else:
            call_all(procs, "run_watchers", 120.0, at=at)
            result.update(claim_p99_s=None, claim_p50_s=None, claims_unconfirmed=None,
                          claims_not_returned=None, claims_seen_s=None)
        time.sleep(1.0)
        window = time.time() - t0
        packets = self.servers.packets_received() - p0
        result["cycle_window_s"] = round(window, 2)
        result["zk_requests_per_member_per_cycle"] = round(packets / n, 2)
        result["zk_idle_requests_per_member_same_window"] = round(idle_rate * window / n, 2)
        result["zk_net_requests_per_member_per_cycle"] = round(
            (packets - idle_rate * window) / n, 2)

    def _graceful_leave(self) -> str:
        """One member of worker 0 leaves; returns its id."""
        n, impl, result, procs = self.n, self.impl, self.result, self.all_procs
        leaver_proc = self.workers[0]
        leaver = leaver_proc.ids[0]
        started = leaver_proc.reply(leaver_proc.send("leave", member_id=leaver), 30.0)["started"]
        gone = self.wait_views("leave", "lacks", [leaver], procs, skip=[leaver])
        result["leave_converged_s"] = rounded(gone and gone - started)
        left = leaver_proc.reply(leaver_proc.send("leave_result", member_id=leaver,
                                                  timeout=30.0), 60.0)
        result["leave_call_s"] = rounded(left["done"] - started) if "done" in left else None
        result["leave_errors"] = left["leave_errors"]
        progress(f"{impl} N={n}: leave converged: {result['leave_converged_s']} s")
        return leaver

    def _crash(self, leaver: str) -> None:
        """SIGKILL the victims' process."""
        a, n, impl, result = self.args, self.n, self.impl, self.result
        if self.victim is not None:
            t_kill = self.victim.kill()
            gone = self.wait_views("crash", "lacks", self.victim.ids, self.workers,
                                   skip=[leaver],
                                   timeout=max(a.converge_timeout, 3 * a.session_timeout))
            result["crash_converged_s"] = rounded(gone and gone - t_kill)
            result["victims"] = len(self.victim.ids)
            progress(f"{impl} N={n}: crash converged: {result['crash_converged_s']} s "
                     f"(session timeout {a.session_timeout:g} s)")
        else:
            result["crash_converged_s"] = None


def run_one(args: argparse.Namespace, impl: str, n: int) -> int:
    run = Run(args, impl, n)
    common = {"bench": "scale", "impl": impl, "members": n, "workers": args.workers,
              "ensemble": args.ensemble, "session_timeout_s": args.session_timeout,
              "settle_time_s": args.settle_time, "heartbeat_s": args.heartbeat,
              "member_nice": args.member_nice, "switch_interval": args.switch_interval}
    if impl == "tooz":
        common["tooz_watch_interval_s"] = args.tooz_watch_interval
    started, load_start = time.monotonic(), load1()
    graceful, error = False, None
    try:
        run.start()
        run.execute()
        graceful = True
    except BenchError as exc:
        graceful, error = True, str(exc)
    finally:
        run.close(graceful)  # interrupted: kill at once
    emit(**common, **run.result, timed_out=run.timed_out,
         **({"error": error} if error else {}),
         run_s=round(time.monotonic() - started, 1), loadavg_start=load_start,
         loadavg=load1())
    return 0 if error is None else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="100,250,500,1000",
                        help="comma-separated group sizes N")
    parser.add_argument("--impl", default="zkpoll,tooz", help="zkpoll, tooz or both")
    parser.add_argument("--workers", type=int, default=4, help="member processes")
    parser.add_argument("--victims", type=int, default=1,
                        help="members in the process killed with SIGKILL")
    parser.add_argument("--ensemble", action="store_true",
                        help="a 3-server ZooKeeper ensemble instead of one server")
    parser.add_argument("--zk-hosts", help="use this running ZooKeeper (host:port,...) "
                        "instead of starting one; its maxClientCnxns must allow N "
                        "connections from this host")
    parser.add_argument("--session-timeout", type=int, default=10,
                        help="ZooKeeper session timeout, s (an integer: tooz wants one)")
    parser.add_argument("--heartbeat", type=float, default=1.0,
                        help="zkpoll [coordination] heartbeat_interval, s")
    parser.add_argument("--settle-time", type=float, default=5.0,
                        help="zkpoll settle_time, s")
    parser.add_argument("--tooz-watch-interval", type=float, default=1.0,
                        help="seconds between a tooz member's run_watchers() calls")
    parser.add_argument("--claim-timeout", type=float, default=1.0,
                        help="announce_cycle timeout, s")
    parser.add_argument("--idle-window", type=float, default=5.0,
                        help="seconds over which the idle request rate is measured")
    parser.add_argument("--converge-timeout", type=float, default=120.0,
                        help="bound of every wait for views to converge, s")
    parser.add_argument("--member-nice", type=int, default=0,
                        help="nice value of the member processes (0-19): N simulated "
                        "members share the machine with the ZooKeeper they measure and "
                        "can starve it of CPU, which a deployment (ZooKeeper on its own "
                        "hosts) never does")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval() of the member processes (Python's "
                        "default 0.005 s if omitted): a process hosting many members "
                        "runs 2 threads per member under one GIL, and each thread "
                        "waiting for it wakes every interval (a deployment runs one "
                        "member per process)")
    parser.add_argument("--worker-log-level", default="ERROR",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level of the member processes (stderr)")
    args = parser.parse_args()
    try:
        sizes = [int(x) for x in args.members.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--members: comma-separated integers, not {args.members!r}")
    impls = [x.strip() for x in args.impl.split(",") if x.strip()]
    if unknown := set(impls) - set(IMPLS):
        parser.error(f"--impl: unknown {', '.join(sorted(unknown))}; choose from {IMPLS}")
    if any(n < 3 for n in sizes):
        parser.error("--members: at least 3 (one leaves, one is killed)")
    if args.workers < 1 or args.victims < 0:
        parser.error("--workers must be >= 1 and --victims >= 0")
    if not 0 <= args.member_nice <= 19:
        parser.error("--member-nice: 0 to 19")
    if args.switch_interval is not None and not 0 < args.switch_interval <= 1:
        parser.error("--switch-interval: seconds, above 0 and at most 1")
    if "tooz" in impls:
        require_tooz()

    exit_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    status = 0
    try:
        for n in sizes:
            for impl in impls:
                status |= run_one(args, impl, n)
    except KeyboardInterrupt:
        progress("interrupted: cleaning up")
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
