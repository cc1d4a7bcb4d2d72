"""Failover benchmark: zkpoll agents against Ceilometer-style tooz agents, one run.

Prints one JSON line per measurement::

    python -m benchmarks.failover_bench [--interval 60] [--agents 5] [--quick]

Set-up.  One ZooKeeper server (tick 200 ms) on a free loopback port.  Two
fleets of ``--agents`` processes poll the same static source of
``--resources`` ids (meter ``synthetic.constant``) with interval ``I``, at
the same time and on the same cycle schedule (cycle ``c`` starts at
``c * I + offset``, zkpoll's per-source offset):

* ``zkpoll``: real ``zkpoll-polling`` agents, ``--polling-namespaces
  synthetic``, ``backend_url = zookeeper://127.0.0.1:PORT/<root>?timeout=2``,
  ``heartbeat_interval = 0.2``, ``settle_time = 1.0``, one ``file://``
  publisher per agent;
* ``tooz``: ``benchmarks._tooz_peer``, what Ceilometer's polling manager
  does (tooz ``Partitioner`` on the tooz hash ring, ``run_watchers()`` at each
  cycle start, leave the group on SIGTERM), same session timeout, same
  sample format.

Every sample line carries ``resource_id``, ``member_id``, ``cycle_start``
and ``timestamp`` (wall-clock time of the poll); everything below is
computed from those lines and from the bench's own clock.

Agent ``i`` of each fleet starts ``--start-spread`` seconds (default 1)
after agent ``i - 1``, a rolling start.  With ``--start-spread 0`` the tooz
peers can keep a wrong ring for good: ``Partitioner`` builds its ring from
one listing of the group, then ``watch_join_group`` caches a second
listing, and a member that joined between the two is in the cache but not
in the ring, so ``run_watchers()`` never reports it (one run here: two of
five peers with a 4-member ring, 69 duplicates every cycle).  The
``steady_state`` line shows the gaps and duplicates of the first complete
cycle, before any fault, so such a pre-existing problem is not mistaken
for the effect of a fault.

Schedule (``Tb`` is the first cycle that all agents of both fleets poll
completely; ``T1 = Tb + I`` and so on; each event hits one agent of each
fleet at the same instant, chosen per fleet as the live agent that polled
the most resources in the last cycle, and each event has its cycles to
itself so that gaps and duplicates are attributable):

1. ``failover_kill9`` (variant ``hung_at_boundary``, the main line): the
   victim gets SIGSTOP at ``T1 - 1 s`` and SIGKILL at ``T1 + 0.5 s``.  It
   never polls cycle ``T1`` and never records it as completed, and its
   session expires about one session timeout after the SIGSTOP, i.e. after
   ``T1`` had begun.  Orphans: the resources the victim polled in ``Tb``
   (its slice for ``T1``: the member set did not change in between).  Each
   orphan was due at ``T1``.
2. ``failover_kill9`` (variant ``mid_cycle``): SIGKILL at ``T2 + 0.55 I``.
   The victim had polled (and, for zkpoll, recorded) cycle ``T2``, so
   nothing is owed for ``T2``; orphans are the resources it polled in
   ``T2``, due at ``T3``.  The session expires long before ``T3``, so both
   implementations should show ``max_s`` close to 0.
3. ``handoff_sigterm``: SIGTERM at ``T3 + 0.5 I``.  Resources handed over:
   those the leaver polled in ``T3``, due at ``T4``.

Definitions (per line):

* ``delay`` of an orphan = (timestamp of its first poll by another agent in
  the cycle it was due or a later one) - max(due, failure time), where the
  failure time is the SIGSTOP / SIGKILL / SIGTERM.  ``recovered`` counts the
  orphans polled within ``window_s`` of being due (1.5 I for the main line;
  the other lines are observed until the run ends, reported as
  ``window_s``); ``max_s`` and ``p50_s`` are over the delays, and ``max_s``
  is null unless every orphan was recovered within the window.
* ``same_cycle``: orphans polled with the ``cycle_start`` of the cycle they
  were due in (zkpoll's promise: catch-up in the cycle in flight).
  ``within_bound``: orphans whose delay is at most ``bound_s`` = session
  timeout + 0.5 s.
* ``expiry_s``: from the failure to the disappearance of the victim's member
  znode, as seen by a ZooKeeper client in the bench polling every 50 ms.
* ``gaps`` / ``duplicates``: over every resource, in the cycles listed in
  ``cycles`` (cycle indexes relative to ``Tb``): resources with no poll /
  with more than one poll carrying that ``cycle_start``.  The main line
  looks at ``T1``, ``mid_cycle`` at ``T2`` (the cycle in flight: a
  duplicate there would be a needless re-poll) and ``T3``, the handoff at
  ``T3`` and ``T4``.  The last cycle is read until every resource has been
  polled in it (plus a 1 s grace) or the run's deadline.

With ``I = 60`` the run takes 4 to 6 minutes (waiting for the first aligned
cycle, then four intervals); ``--quick`` uses ``I = 20``.

Then ``resource_failover`` (issue 21; needs root: network namespaces), in a
lab of its own (:mod:`tests.functional.netns`): three zkpoll agents, each in
its own network namespace, poll ``http.status`` of ``--rf-resources`` HTTP
targets in a targets namespace every ``--rf-interval`` seconds, with
``[polling] failover_hops = 1`` and ``pollster_timeout =`` :data:`RF_TIMEOUT`.
Once every agent polled two steady cycles, ``--rf-blocked`` targets of the
agent that owns the most are blackholed from its namespace only (``connect()``
fails at once there, EINVAL; ``--rf-route unreachable``: EHOSTUNREACH), for
the ``--rf-cycles`` cycles that start after the routes were added (the blocked
cycles):

* ``polled_same_cycle``: blocked (target, cycle) pairs polled with status 200
  by another member, with that cycle's ``cycle_start`` (of ``blocked`` x
  ``cycles``); ``unreachable_published``: blocked pairs published as the
  pollster's unreachable sample (status 0) instead;
* ``max_s_after_due`` / ``p50_s_after_due``: seconds from a blocked pair's
  cycle start to the timestamp of the other member's sample (when its GET
  began), over the polled pairs (null if none); its target is ``target_s`` =
  the pollster timeout + 1 s;
* ``gaps`` / ``duplicates``: over every target, in the blocked cycles.

``--only-resource-failover`` runs that line alone (no tooz needed);
``--no-resource-failover`` skips it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._bench_util import (
    ROOT,
    BenchError,
    ChildProcess,
    MemberMonitor,
    emit,
    exit_on_sigterm,
    module_command,
    require_tooz,
    sleep_until,
    spawn_logged,
    zkpoll_polling_command,
)
from zkpoll.service.cycles import source_offset
from zkpoll.testing import ManagedZooKeeper

SOURCE = "static"
METER = "synthetic.constant"
ZKPOLL_GROUP = "synthetic"  # the namespace alone: no partitioning_group_prefix
TOOZ_GROUP = "central"
PEER = "_tooz_peer"
IMPLS = ("zkpoll", "tooz")
EPS = 1e-3
TICK = 0.2  # s between reads of the samples while the bench waits
RF_AGENTS = ("a1", "a2", "a3")
RF_TIMEOUT = 2.0  # [polling] pollster_timeout of the resource_failover agents


def parse_ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


# --- agents and what they polled ------------------------------------------------
@dataclass(frozen=True)
class Poll:
    agent: str
    resource: str
    cycle: float  # cycle_start, seconds, rounded to the millisecond
    ts: float     # wall-clock time of the poll


@dataclass
class Agent(ChildProcess):
    """One agent process and the samples it wrote (read incrementally)."""

    impl: str
    name: str
    proc: subprocess.Popen[bytes]
    samples_path: Path
    log_path: Path
    polls: list[Poll] = field(default_factory=list)
    member_id: str | None = None
    exited_at: float | None = None
    _offset: int = 0
    _partial: bytes = b""

    def read(self) -> None:
        if self.exited_at is None and self.proc.poll() is not None:
            self.exited_at = time.time()
        try:
            with self.samples_path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            s = json.loads(line)
            self.member_id = s["member_id"]
            self.polls.append(Poll(self.name, s["resource_id"],
                                   round(parse_ts(s["cycle_start"]), 3),
                                   parse_ts(s["timestamp"])))

    def resources_in(self, cycle: float) -> set[str]:
        return {p.resource for p in self.polls if abs(p.cycle - cycle) < EPS}


class Fleet:
    def __init__(self, impl: str, members_path: str) -> None:
        self.impl = impl
        self.members_path = members_path
        self.agents: list[Agent] = []

    def read(self) -> None:
        for agent in self.agents:
            agent.read()

    def polls(self) -> list[Poll]:
        return [p for a in self.agents for p in a.polls]

    def live(self) -> list[Agent]:
        return [a for a in self.agents if a.alive]

    def busiest(self, cycle: float) -> Agent:
        """The live agent that polled the most resources in ``cycle``."""
        live = self.live()
        if not live:
            raise BenchError(f"{self.impl}: no live agent left")
        return max(live, key=lambda a: len(a.resources_in(cycle)))

    def coverage(self, cycle: float) -> tuple[Counter[str], set[str]]:
        """(polls per resource, agents that polled) in ``cycle``."""
        counts: Counter[str] = Counter()
        agents: set[str] = set()
        for p in self.polls():
            if abs(p.cycle - cycle) < EPS:
                counts[p.resource] += 1
                agents.add(p.agent)
        return counts, agents

    def complete(self, cycle: float, ids: set[str], agents: int | None = None) -> bool:
        counts, polled_by = self.coverage(cycle)
        return counts.keys() >= ids and (agents is None or len(polled_by) >= agents)

    def gaps_and_duplicates(self, cycles: list[float], ids: set[str]) -> tuple[int, int]:
        gaps = dups = 0
        for cycle in cycles:
            counts, _ = self.coverage(cycle)
            gaps += len(ids - counts.keys())
            dups += sum(1 for n in counts.values() if n > 1)
        return gaps, dups


# --- the run ---------------------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.interval = args.interval
        self.workdir = workdir
        self.offset = source_offset(SOURCE, self.interval)
        self.ids = [f"res-{i:05d}" for i in range(args.resources)]
        self.idset = set(self.ids)
        self.zk: ManagedZooKeeper | None = None
        self.monitor: MemberMonitor | None = None
        self.fleets: dict[str, Fleet] = {}

    # set-up
    def start(self) -> None:
        self.zk = ManagedZooKeeper(tick_time=200)
        self.zk.start()
        root = f"/failover-bench-{uuid.uuid4().hex[:8]}"
        self.fleets = {
            "zkpoll": Fleet("zkpoll", f"{root}/groups/{ZKPOLL_GROUP}/members"),
            "tooz": Fleet("tooz", f"/tooz/{TOOZ_GROUP}"),
        }
        polling = self.workdir / "polling.yaml"
        polling.write_text("\n".join(
            ["sources:", f"  - name: {SOURCE}", f"    interval: {self.interval}",
             "    meters:", f"      - {METER}", "    resources:"]
            + [f"      - {r}" for r in self.ids]) + "\n")
        resources = self.workdir / "resources.txt"
        resources.write_text("\n".join(self.ids) + "\n")
        timeout = self.args.session_timeout
        zk_url = f"zookeeper://{self.zk.address}{root}?timeout={timeout}"
        tooz_url = f"zookeeper://{self.zk.address}?timeout={timeout}"
        for i in range(1, self.args.agents + 1):
            if i > 1:
                time.sleep(self.args.start_spread)
            name = f"zkpoll-{i}"
            samples = self.workdir / f"{name}.jsonl"
            conf = self.workdir / f"{name}.conf"
            conf.write_text(
                "[coordination]\n"
                f"backend_url = {zk_url}\n"
                "heartbeat_interval = 0.2\n"
                "settle_time = 1.0\n"
                "[polling]\n"
                f"cfg_file = {polling}\n"
                "[publisher]\n"
                f"default_publishers = file://{samples}\n")
            self._spawn("zkpoll", name, samples, [
                *zkpoll_polling_command(), "--config-file", str(conf),
                "--polling-namespaces", "synthetic"], self.workdir)
            name = f"tooz-{i}"
            samples = self.workdir / f"{name}.jsonl"
            self._spawn("tooz", name, samples, module_command(
                PEER, "--url", tooz_url,
                "--member-id", f"{name}-{uuid.uuid4().hex[:8]}", "--group", TOOZ_GROUP,
                "--resources", str(resources), "--interval", repr(float(self.interval)),
                "--offset", repr(self.offset), "--source", SOURCE, "--output", str(samples)),
                ROOT)
        self.monitor = MemberMonitor(self.zk.address,
                                     [f.members_path for f in self.fleets.values()])
        self.monitor.start()

    def _spawn(self, impl: str, name: str, samples: Path, command: list[str],
               cwd: Path) -> None:
        log = self.workdir / f"{name}.log"
        proc = spawn_logged(command, log, cwd)
        self.fleets[impl].agents.append(Agent(impl, name, proc, samples, log))

    def close(self) -> None:
        for fleet in self.fleets.values():
            for agent in fleet.agents:
                agent.kill()
        if self.monitor is not None:
            self.monitor.stop()
        if self.zk is not None:
            self.zk.close()

    def read(self) -> None:
        for fleet in self.fleets.values():
            fleet.read()

    def logs(self) -> str:
        return "\n".join(f"--- {a.name} (rc {a.proc.poll()}) ---\n{a.log_tail()}"
                         for f in self.fleets.values() for a in f.agents)

    def boundary(self, index: int) -> float:
        return index * self.interval + self.offset

    def first_boundary_after(self, t: float) -> float:
        return self.boundary(math.floor((t - self.offset) / self.interval) + 1)

    # phases
    def wait_registered(self, timeout: float = 90.0) -> None:
        assert self.monitor is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = {f.impl: self.monitor.count(f.members_path) for f in self.fleets.values()}
            if all(n == self.args.agents for n in counts.values()):
                return
            dead = [a.name for f in self.fleets.values() for a in f.agents if not a.alive]
            if dead:
                raise BenchError(f"agent(s) {', '.join(dead)} exited at start-up")
            time.sleep(0.2)
        raise BenchError(f"not all agents registered within {timeout:.0f} s: {counts}")

    def baseline(self) -> float:
        """The first cycle every agent of both fleets polled completely."""
        tb = self.first_boundary_after(time.time() + 2.0)  # settle_time 1 s + margin
        for _ in range(3):
            deadline = tb + min(self.interval / 3, 10.0)
            sleep_until(tb + 0.2, self.read, TICK)
            while time.time() < deadline and not self._baseline_ok(tb):
                time.sleep(0.2)
                self.read()
            if self._baseline_ok(tb):
                return tb
            tb += self.interval
        raise BenchError("no cycle was polled completely by all agents of both fleets")

    def _baseline_ok(self, cycle: float) -> bool:
        return all(f.complete(cycle, self.idset, self.args.agents)
                   for f in self.fleets.values())

    def recovery(self, fleet: Fleet, failed: Agent, orphans: set[str], due: float,
                 t_fail: float, window_end: float) -> dict[str, Any]:
        """Delays of the orphans' first polls by other agents (see the docstring)."""
        first: dict[str, Poll] = {}
        for p in fleet.polls():
            if (p.agent != failed.name and p.resource in orphans and p.cycle >= due - EPS
                    and p.ts <= window_end
                    and (p.resource not in first or p.ts < first[p.resource].ts)):
                first[p.resource] = p
        start = max(due, t_fail)
        delays = sorted(p.ts - start for p in first.values())
        bound = self.args.session_timeout + 0.5
        return {
            "orphans": len(orphans),
            "recovered": len(first),
            "same_cycle": sum(1 for p in first.values() if abs(p.cycle - due) < EPS),
            "within_bound": sum(1 for d in delays if d <= bound),
            "bound_s": bound,
            "max_s": round(max(delays), 3) if delays and len(first) == len(orphans) else None,
            "p50_s": round(statistics.median(delays), 3) if delays else None,
        }

    def expiry(self, fleet: Fleet, agent: Agent, t_fail: float) -> float | None:
        assert self.monitor is not None
        gone = self.monitor.gone(fleet.members_path, agent.member_id)
        return None if gone is None else round(gone - t_fail, 3)

    def wait_last_cycle(self, cycle: float, deadline: float,
                        pending: list[tuple[Fleet, Agent, set[str], float]]) -> float:
        """Read until ``cycle`` is complete and every orphan polled, or ``deadline``."""
        sleep_until(cycle + 0.2, self.read, TICK)
        while time.time() < deadline:
            self.read()
            done = all(f.complete(cycle, self.idset) for f in self.fleets.values()) and all(
                orphans <= {p.resource for p in fleet.polls()
                            if p.agent != failed.name and p.cycle >= due - EPS}
                for fleet, failed, orphans, due in pending)
            if done:
                sleep_until(time.time() + 1.0, self.read, TICK)  # grace for late duplicates
                return time.time()
            time.sleep(0.2)
        self.read()
        return time.time()

    def execute(self) -> None:
        interval, timeout = self.interval, self.args.session_timeout
        common = {"interval_s": interval, "session_timeout_s": timeout,
                  "agents": self.args.agents, "resources": self.args.resources}
        self.wait_registered()
        tb = self.baseline()
        for impl, fleet in self.fleets.items():
            gaps, dups = fleet.gaps_and_duplicates([tb], self.idset)
            emit(bench="steady_state", impl=impl, **common,
                 start_spread_s=self.args.start_spread, gaps=gaps, duplicates=dups, cycles=[0])
        t1, t2, t3, t4 = (tb + k * interval for k in (1, 2, 3, 4))

        # 1. hung at the boundary: SIGSTOP at T1 - 1 s, SIGKILL at T1 + 0.5 s.
        sleep_until(t1 - 1.0, self.read, TICK)
        hung = {impl: f.busiest(tb) for impl, f in self.fleets.items()}
        t_stop = {impl: a.send_signal(signal.SIGSTOP) for impl, a in hung.items()}
        sleep_until(t1 + 0.5, self.read, TICK)
        for agent in hung.values():
            agent.kill()
        window1 = 1.5 * interval
        sleep_until(t1 + window1 + 0.3, self.read, TICK)
        for impl, fleet in self.fleets.items():
            victim = hung[impl]
            gaps, dups = fleet.gaps_and_duplicates([t1], self.idset)
            emit(bench="failover_kill9", impl=impl, variant="hung_at_boundary", **common,
                 **self.recovery(fleet, victim, victim.resources_in(tb), t1, t_stop[impl],
                                 t1 + window1),
                 expiry_s=self.expiry(fleet, victim, t_stop[impl]), window_s=window1,
                 gaps=gaps, duplicates=dups, cycles=[1])

        # 2. killed mid-cycle, after polling the cycle in flight.
        sleep_until(t2 + 0.55 * interval, self.read, TICK)
        killed = {impl: f.busiest(t2) for impl, f in self.fleets.items()}
        t_kill = {}
        for impl, agent in killed.items():
            t_kill[impl] = agent.send_signal(signal.SIGKILL)
        for agent in killed.values():
            agent.kill()  # reap

        # 3. graceful leave mid-cycle.
        sleep_until(t3 + 0.5 * interval, self.read, TICK)
        leaving = {impl: f.busiest(t3) for impl, f in self.fleets.items()}
        before = {impl: len(f.live()) for impl, f in self.fleets.items()}
        t_term = {impl: a.send_signal(signal.SIGTERM) for impl, a in leaving.items()}

        pending = []
        for impl, fleet in self.fleets.items():
            pending.append((fleet, killed[impl], killed[impl].resources_in(t2), t3))
            pending.append((fleet, leaving[impl], leaving[impl].resources_in(t3), t4))
        end = self.wait_last_cycle(t4, t4 + 0.5 * interval, pending)

        for impl, fleet in self.fleets.items():
            victim = killed[impl]
            window = round(min(end - t3, 1.5 * interval), 3)
            gaps, dups = fleet.gaps_and_duplicates([t2, t3], self.idset)
            emit(bench="failover_kill9", impl=impl, variant="mid_cycle", **common,
                 **self.recovery(fleet, victim, victim.resources_in(t2), t3, t_kill[impl],
                                 t3 + window),
                 expiry_s=self.expiry(fleet, victim, t_kill[impl]), window_s=window,
                 gaps=gaps, duplicates=dups, cycles=[2, 3])
        for impl, fleet in self.fleets.items():
            leaver = leaving[impl]
            window = round(min(end - t4, 1.5 * interval), 3)
            rec = self.recovery(fleet, leaver, leaver.resources_in(t3), t4, t_term[impl],
                                t4 + window)
            gaps, dups = fleet.gaps_and_duplicates([t3, t4], self.idset)
            leaver.read()
            exit_s = None if leaver.exited_at is None else round(leaver.exited_at - t_term[impl], 1)
            emit(bench="handoff_sigterm", impl=impl, **common, agents_before=before[impl],
                 handed_over=rec["orphans"], polled=rec["recovered"],
                 same_cycle=rec["same_cycle"], max_s=rec["max_s"], p50_s=rec["p50_s"],
                 window_s=window, duplicates=dups, gaps=gaps, cycles=[3, 4],
                 leaver_exit_s=exit_s, leaver_rc=leaver.proc.poll())


# --- per-resource failover (issue 21) ------------------------------------------
def resource_failover(args: argparse.Namespace, workdir: Path) -> None:
    """The ``resource_failover`` line (see the module docstring)."""
    from tests.functional.netns_fleet import netns_fleet

    interval = args.rf_interval
    polling = f"[polling]\nfailover_hops = 1\npollster_timeout = {RF_TIMEOUT:g}\n"
    workdir.mkdir()
    try:
        with netns_fleet(workdir, RF_AGENTS, args.rf_resources, interval, settle_time=2.0,
                         polling_extra=polling) as net:
            fleet = net.fleet
            first, ring = net.start_steady()
            victim = max(RF_AGENTS, key=lambda n: len(ring.owned_by(
                fleet.member_ids(n)[-1], net.urls)))
            member = fleet.member_ids(victim)[-1]
            blocked = ring.owned_by(member, net.urls)[:args.rf_blocked]
            net.lab.block(victim, [net.address_of(u) for u in blocked], kind=args.rf_route)
            t_blocked = fleet.note(f"{args.rf_route} routes to {len(blocked)} targets in "
                                   f"{victim}")
            fleet.wait_cycles_after(t_blocked, args.rf_cycles)
            audits = [a for a in fleet.audit(first) if a.cycle_at > t_blocked][:args.rf_cycles]
            polled, unreachable = [], 0
            for audit in audits:
                for url in blocked:
                    for r in audit.records.get(url, []):
                        if r.member != member and r.status == 200:
                            polled.append(r.at - audit.cycle_at)
                        elif r.status == 0:
                            unreachable += 1
            emit(bench="resource_failover", agents=len(RF_AGENTS),
                 resources=len(net.urls), blocked=len(blocked), route=args.rf_route,
                 cycles=len(audits),
                 interval_s=interval, polled_same_cycle=len(polled),
                 unreachable_published=unreachable,
                 max_s_after_due=round(max(polled), 3) if polled else None,
                 p50_s_after_due=round(statistics.median(polled), 3) if polled else None,
                 target_s=RF_TIMEOUT + 1.0,
                 duplicates=sum(len(a.duplicates) for a in audits),
                 gaps=sum(len(a.gaps) for a in audits))
    except AssertionError as exc:  # the fleet harness's waits and checks
        raise BenchError(f"resource_failover: {exc}") from exc


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=60, help="polling interval, s")
    parser.add_argument("--agents", type=int, default=5, help="agents per implementation")
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--session-timeout", type=int, default=2,
                        help="ZooKeeper session timeout, s (an integer: tooz wants one)")
    parser.add_argument("--start-spread", type=float, default=1.0,
                        help="seconds between the starts of consecutive agents (0: all at once)")
    parser.add_argument("--quick", action="store_true", help="smoke run: --interval 20")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (configs, logs, samples)")
    rf = parser.add_mutually_exclusive_group()
    rf.add_argument("--only-resource-failover", action="store_true",
                    help="run only the resource_failover line (root: network namespaces)")
    rf.add_argument("--no-resource-failover", action="store_true",
                    help="skip the resource_failover line")
    parser.add_argument("--rf-interval", type=int, default=5,
                        help="resource_failover: polling interval, s")
    parser.add_argument("--rf-resources", type=int, default=60,
                        help="resource_failover: HTTP targets (at most 250)")
    parser.add_argument("--rf-blocked", type=int, default=10,
                        help="resource_failover: targets blackholed from their owner")
    parser.add_argument("--rf-cycles", type=int, default=4,
                        help="resource_failover: blocked cycles measured")
    parser.add_argument("--rf-route", default="blackhole",
                        choices=("blackhole", "unreachable", "prohibit"),
                        help="resource_failover: the route that blocks a target (connect() "
                             "fails with EINVAL, EHOSTUNREACH, EACCES)")
    args = parser.parse_args()
    if args.quick:
        args.interval = 20
    if not args.only_resource_failover:
        if args.agents < 4:
            parser.error("--agents: at least 4 (three events each remove one agent)")
        if args.interval < 4 * args.session_timeout:
            parser.error("--interval must be at least 4 x --session-timeout")
        require_tooz()
    if not 1 <= args.rf_resources <= 250:
        parser.error("--rf-resources: 1 to 250")
    if args.rf_interval <= RF_TIMEOUT + 1.0:
        parser.error(f"--rf-interval must exceed the pollster timeout + 1 s ({RF_TIMEOUT + 1:g})")

    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="zkpoll-failover-"))
    status = 0
    try:
        if not args.only_resource_failover:
            status = run_agent_failover(args, workdir)
        if not args.no_resource_failover:
            try:
                resource_failover(args, workdir / "resource-failover")
            except (BenchError, OSError, RuntimeError) as exc:  # not root, no ip, a failed ip
                emit(bench="resource_failover", error=str(exc))
                status = 1
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


def run_agent_failover(args: argparse.Namespace, workdir: Path) -> int:
    """The zkpoll-against-tooz lines (steady_state, failover_kill9, handoff_sigterm)."""
    run = Run(args, workdir)
    try:
        run.start()
        run.execute()
    except BenchError as exc:
        emit(bench="failover", error=str(exc))
        print(run.logs(), file=sys.stderr)
        return 1
    finally:
        run.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
