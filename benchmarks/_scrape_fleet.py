"""The scrape bench's fleets (zkpoll agents, vmagent, Prometheus agents) and its counting.

* :class:`ZkpollFleet`, :class:`VmagentFleet`, :class:`PrometheusFleet`: N
  scrapers of one implementation, all scraping the same targets into one
  VictoriaMetrics under their own ``job``, with the membership changes
  the churn events make (:meth:`Fleet.join`, :meth:`Fleet.sigterm`,
  :meth:`Fleet.scale_down`, :meth:`Fleet.kill9`);
* :class:`RequestWatch`: when each target received its ``/metrics``
  requests (the generator's counts, read every :data:`WATCH_EVERY` s);
* :func:`stored_samples`, :func:`bucket_counts`, :func:`unscraped_max`:
  what VictoriaMetrics stored, counted as the bench's docstring says.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import threading
import time
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._bench_util import (
    BenchError,
    ChildProcess,
    MemberMonitor,
    cpu_seconds,
    progress,
    rss_mb,
    spawn_logged,
    stop_children,
    zkpoll_polling_command,
)
from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import free_port
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.scrapers import (
    ManagedPrometheusAgent,
    ManagedVmagent,
    write_file_sd,
)
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics, Series

#: Seconds between two reads of the generator's request counts.
WATCH_EVERY = 0.2
NAMESPACE = "central"


# --- fleets ---------------------------------------------------------------------------
class Fleet(ABC):
    """N scrapers of one implementation; ``job`` labels everything they store."""

    impl: str
    job: str

    @abstractmethod
    def start(self, members: int) -> None:
        """Start ``members`` scrapers and wait until each runs (and, for zkpoll, joined)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """The processes of the live scrapers."""

    @abstractmethod
    def join(self) -> None:
        """One more member (N -> N+1)."""

    @abstractmethod
    def sigterm(self) -> None:
        """One member stops gracefully; nothing else changes."""

    @abstractmethod
    def scale_down(self) -> None:
        """N -> N-1 the way an operator does it for this implementation."""

    @abstractmethod
    def kill9(self) -> None:
        """One member killed with SIGKILL."""

    @abstractmethod
    def close(self) -> None:
        """Stop every scraper."""

    def cpu(self) -> float:
        """CPU seconds (user + system) the live scrapers used so far."""
        return sum(sum(cpu_seconds(pid)) for pid in self.pids())

    def rss(self) -> float:
        """Mean resident MiB of the live scrapers."""
        pids = self.pids()
        return sum(rss_mb(pid) for pid in pids) / len(pids) if pids else 0.0


class _Agent(ChildProcess):
    def __init__(self, name: str, proc: Any, log_path: Path, api: str) -> None:
        self.name, self.proc, self.log_path, self.api = name, proc, log_path, api


class ZkpollFleet(Fleet):
    """Real ``zkpoll-polling`` agents coordinated by ZooKeeper.

    Every agent reads the same polling YAML (one source named ``job``, meter
    ``prometheus.scrape``, the targets as ``resources:``) and publishes to
    ``prometheus+remote-write://`` VictoriaMetrics through its own spool;
    ``[api] bind`` gives each its ``/metrics``.
    """

    impl = "zkpoll"

    def __init__(self, workdir: Path, zk_address: str, vm: ManagedVictoriaMetrics,
                 targets: Sequence[str], interval: int, session_timeout: float,
                 job: str = "zkpoll") -> None:
        self.job = job
        self.workdir = workdir / f"{job}-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir(parents=True)
        self.root = f"/scrape-bench-{uuid.uuid4().hex[:8]}"
        self.url = f"zookeeper://{zk_address}{self.root}?timeout={session_timeout:g}"
        self.vm = vm
        self.agents: list[_Agent] = []
        self.serial = 0
        self.victim_id: str | None = None
        self.polling = self.workdir / "polling.yaml"
        self.polling.write_text("\n".join(
            ["sources:", f"  - name: {job}", f"    interval: {interval}",
             "    meters:", "      - prometheus.scrape", "    resources:"]
            + [f"      - '{t}'" for t in targets]) + "\n")
        self.monitor = MemberMonitor(zk_address, [f"{self.root}/groups/{NAMESPACE}/members"])
        self.monitor.start()

    @property
    def members_path(self) -> str:
        return self.monitor.paths[0]

    def live(self) -> list[_Agent]:
        return [a for a in self.agents if a.alive]

    def pids(self) -> list[int]:
        return [a.proc.pid for a in self.live()]

    def _spawn(self) -> _Agent:
        self.serial += 1
        name = f"{self.job}-{self.serial}"
        api = f"127.0.0.1:{free_port()}"
        conf = self.workdir / f"{name}.conf"
        conf.write_text(
            "[coordination]\n"
            f"backend_url = {self.url}\n"
            "heartbeat_interval = 0.2\n"
            "settle_time = 1.0\n"
            f"member_name = {name}\n"
            "[polling]\n"
            f"cfg_file = {self.polling}\n"
            "[publisher]\n"
            f"default_publishers = {self.vm.remote_write_url}\n"
            f"spool_dir = {self.workdir / name}-spool\n"
            "[api]\n"
            f"bind = {api}\n")
        proc = spawn_logged([*zkpoll_polling_command(), "--config-file", str(conf),
                             "--polling-namespaces", NAMESPACE],
                            self.workdir / f"{name}.log", self.workdir)
        agent = _Agent(name, proc, self.workdir / f"{name}.log", api)
        self.agents.append(agent)
        return agent

    def wait_members(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.monitor.count(self.members_path) != count:
            dead = [a for a in self.agents if not a.alive and a.proc.returncode not in
                    (0, -signal.SIGKILL, -signal.SIGTERM)]
            if dead:
                raise BenchError(f"{dead[0].name} exited ({dead[0].proc.returncode}): "
                                 f"{dead[0].log_tail(8)}")
            if time.monotonic() > deadline:
                raise BenchError(f"zkpoll: {self.monitor.count(self.members_path)} members "
                                 f"registered after {timeout:.0f} s, expected {count}")
            time.sleep(0.1)

    def start(self, members: int) -> None:
        for _ in range(members):
            self._spawn()
        self.wait_members(members)

    def join(self) -> None:
        self._spawn()

    def sigterm(self) -> None:
        self.live()[0].send_signal(signal.SIGTERM)

    def scale_down(self) -> None:
        self.sigterm()   # membership is dynamic: stopping a member is all it takes

    def kill9(self) -> None:
        victim = self.live()[0]
        prefix = f"{victim.name}.{victim.proc.pid}."
        self.victim_id = next((m for m in self.monitor.present[self.members_path]
                               if m.startswith(prefix)), None)
        victim.kill()

    def expiry(self, since: float) -> float | None:
        """Seconds from ``since`` until the member killed by :meth:`kill9` left the
        group (as the fleet's ZooKeeper client saw it), or None."""
        gone = self.monitor.gone(self.members_path, self.victim_id)
        return None if gone is None else round(gone - since, 3)

    def metrics(self, agent: _Agent) -> dict[str, float]:
        """{sample name with labels: value} of the agent's ``/metrics``."""
        with urllib.request.urlopen(f"http://{agent.api}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {a.name} (rc {a.proc.poll()}) ---\n{a.log_tail()}"
                         for a in self.agents)

    def close(self) -> None:
        stop_children(self.agents, timeout=15.0)
        self.monitor.stop()


class _PeerFleet(Fleet):
    """Members of a statically sharded scraper (vmagent, Prometheus agent)."""

    server: type[ManagedVmagent | ManagedPrometheusAgent]

    def __init__(self, workdir: Path, vm: ManagedVictoriaMetrics, targets: Sequence[str],
                 interval: int, job: str) -> None:
        self.job = job
        self.vm = vm
        self.interval = interval
        self.file_sd = workdir / f"{job}-{uuid.uuid4().hex[:6]}-sd.json"
        write_file_sd(self.file_sd, targets)
        self.members: list[Any] = []

    def _member(self, members: int, member: int) -> Any:
        return self.server(self.vm.write_url, self.file_sd, members=members, member=member,
                           scrape_interval=self.interval, job=self.job, **self._extra())

    def _extra(self) -> dict[str, Any]:
        return {}

    def start(self, members: int) -> None:
        for i in range(members):
            server = self._member(members, i)
            self.members.append(server)
            server.start()

    def pids(self) -> list[int]:
        return [m._process.pid for m in self.members if m.running]

    def _reshard(self, members: list[Any]) -> None:
        """Give the running ``members`` their new shard numbers out of len(members)."""
        for number, server in enumerate(members):
            server.members, server.member = len(members), number
            self._apply(server)

    @abstractmethod
    def _apply(self, server: Any) -> None:
        """Make a running member use its (changed) ``members``/``member``."""

    def join(self) -> None:
        count = len(self.members) + 1
        new = self._member(count, count - 1)
        new.start()
        old, self.members = self.members, [*self.members, new]
        for number, server in enumerate(old):
            server.members, server.member = count, number
            self._apply(server)

    def sigterm(self) -> None:
        self.members.pop(0).stop()

    def scale_down(self) -> None:
        self.members.pop(0).stop()
        self._reshard(self.members)

    def kill9(self) -> None:
        self.members.pop(0).kill()

    def close(self) -> None:
        for server in self.members:
            server.close()
        self.members = []


class VmagentFleet(_PeerFleet):
    """vmagent cluster mode: ``-promscrape.cluster.membersCount`` (flags: a change
    of membership restarts the member)."""

    server = ManagedVmagent

    def __init__(self, *args: Any, replication_factor: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replication_factor = replication_factor
        self.impl = "vmagent" if replication_factor == 1 else f"vmagent_rf{replication_factor}"

    def _extra(self) -> dict[str, Any]:
        return {"replication_factor": self.replication_factor}

    def _apply(self, server: Any) -> None:
        server.restart()


class PrometheusFleet(_PeerFleet):
    """Prometheus agent mode, ``hashmod`` sharding (relabelling: a change of membership
    rewrites the config and reloads it with SIGHUP, no restart)."""

    server = ManagedPrometheusAgent
    impl = "prometheus"

    def _apply(self, server: Any) -> None:
        server.command()   # rewrites scrape.yml with the new modulus and shard
        os.kill(server._process.pid, signal.SIGHUP)


# --- what the targets saw -------------------------------------------------------------
class RequestWatch(threading.Thread):
    """The times each target's request count grew (read every :data:`WATCH_EVERY` s)."""

    def __init__(self, generator: ManagedExpositionServer) -> None:
        super().__init__(name="request-watch", daemon=True)
        self.generator = generator
        self.times: dict[str, list[float]] = {}
        self._last: dict[str, int] = {}
        self.missed = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(WATCH_EVERY):
            try:
                counts = self.generator.scrape_counts()
            except ZkpollError:   # a missed read only lowers the resolution
                self.missed += 1
                continue
            now = time.time()
            for target, count in counts.items():
                if count > self._last.get(target, count):
                    self.times.setdefault(target, []).append(now)
                self._last[target] = count

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def gap_max(self, start: float, end: float) -> float | None:
        """Longest time a target went without a request in [start, end] (the end
        counts as the close of an open gap)."""
        worst = None
        for target in self._last:
            seen = [t for t in self.times.get(target, []) if start <= t <= end]
            gap = _longest([start, *seen, end]) if seen else end - start
            worst = gap if worst is None else max(worst, gap)
        return worst


def _longest(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


# --- what VictoriaMetrics stored ------------------------------------------------------
def stored_samples(vm: ManagedVictoriaMetrics, job: str, start: float, end: float) -> int:
    """Samples of ``job`` stored with a timestamp in [start, end) (stale markers excluded)."""
    window = end - start
    query = f'sum(count_over_time({{job="{job}"}}[{window * 1000:.0f}ms]))'
    body = vm.request("/api/v1/query", {"query": query, "time": f"{end - 0.001:.3f}"})
    result = json.loads(body)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def up_times(vm: ManagedVictoriaMetrics, job: str, start: float, end: float,
             targets: Sequence[str]) -> dict[str, list[float]]:
    """{target: sorted timestamps (s) of its stored ``up`` samples}, stale markers left out."""
    series: Series = vm.export(f'up{{job="{job}"}}', start=start, end=end)
    out: dict[str, list[float]] = {t: [] for t in targets}
    for labels, points in series.items():
        instance = dict(labels).get("instance", "")
        out.setdefault(instance, []).extend(ts / 1000 for ts, v in points if not math.isnan(v))
    for times in out.values():
        times.sort()
    return out


def bucket_counts(times: dict[str, list[float]], interval: float, event: float,
                  end: float, copies: int = 1) -> dict[str, Any]:
    """Gaps and duplicates of each target's ``up`` samples in the buckets around ``event``.

    A target's buckets are ``interval`` wide and centred on its own steady
    phase: bucket 0 is centred on its last sample at or before
    ``event - interval / 2``, bucket m on that time plus m intervals; the
    buckets counted are those that end by ``end``.  Gap: a bucket without a
    sample; duplicates: the samples beyond the first in a bucket.  With
    ``copies`` > 1 (a replicated scraper), also the buckets with fewer
    samples than that but not none (redundancy lost) and the samples beyond
    ``copies`` in a bucket.
    """
    gaps = duplicates = buckets = under = over = 0
    unreferenced = []
    for target, stamps in times.items():
        before = [t for t in stamps if t <= event - interval / 2]
        if not before:
            unreferenced.append(target)
            continue
        ref = before[-1]
        count = math.floor((end - ref - interval / 2) / interval) + 1
        counts = [0] * count
        for t in stamps:
            m = math.floor((t - ref + interval / 2) / interval)
            if 0 <= m < count:
                counts[m] += 1
        buckets += count
        gaps += sum(1 for n in counts if n == 0)
        duplicates += sum(n - 1 for n in counts if n > 1)
        under += sum(1 for n in counts if 0 < n < copies)
        over += sum(n - copies for n in counts if n > copies)
    if unreferenced:
        progress(f"{len(unreferenced)} targets had no up sample before the event, e.g. "
                 f"{unreferenced[0]}: counted as gaps in every bucket")
        gaps += len(unreferenced) * max(1, round((end - event) / interval))
    out: dict[str, Any] = {"gaps": gaps, "duplicates": duplicates, "buckets": buckets,
                           "targets_without_steady_sample": len(unreferenced)}
    if copies > 1:
        out.update(copies=copies, buckets_below_copies=under, samples_beyond_copies=over)
    return out


def unscraped_max(times: dict[str, list[float]], start: float, end: float) -> float:
    """Longest time any target went without a stored ``up`` sample in [start, end]
    (an open gap runs to ``end``)."""
    worst = 0.0
    for stamps in times.values():
        inside = [t for t in stamps if start <= t <= end]
        worst = max(worst, _longest([start, *inside, end]) if inside else end - start)
    return worst
