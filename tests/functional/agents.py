"""Run real ``zkpoll-polling`` agents as OS processes and read what they polled."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from zkpoll.coordination.zookeeper._names import parse_member_name


def agent_command() -> list[str]:
    """The installed console script (or ``python -m`` when not on PATH)."""
    script = Path(sys.executable).with_name("zkpoll-polling")
    if script.exists():
        return [str(script)]
    found = shutil.which("zkpoll-polling")
    return [found] if found else [sys.executable, "-m", "zkpoll.cmd.polling"]


def write_static_source(path: Path, resources: int, interval: int = 2,
                        meters: tuple[str, ...] = ("synthetic.constant",)) -> list[str]:
    """A polling YAML with one static source of ``resources`` ids; returns the ids."""
    ids = [f"res-{i:05d}" for i in range(resources)]
    lines = ["sources:", "  - name: static", f"    interval: {interval}", "    meters:"]
    lines += [f"      - {m}" for m in meters]
    lines += ["    resources:"] + [f"      - {r}" for r in ids]
    path.write_text("\n".join(lines) + "\n")
    return ids


class AgentProcess:
    """One ``zkpoll-polling`` process with its own config and sample file."""

    def __init__(self, workdir: Path, name: str, backend_url: str, polling_file: Path,
                 namespaces: str = "synthetic", extra: str = "") -> None:
        self.name = name
        self.samples_path = workdir / f"{name}.jsonl"
        self.log_path = workdir / f"{name}.log"
        conf = workdir / f"{name}.conf"
        conf.write_text(
            "[coordination]\n"
            f"backend_url = {backend_url}\n"
            "heartbeat_interval = 0.2\n"
            "settle_time = 1.0\n"
            "[polling]\n"
            f"cfg_file = {polling_file}\n"
            "[publisher]\n"
            f"default_publishers = file://{self.samples_path}\n" + extra)
        self.proc = subprocess.Popen(
            [*agent_command(), "--config-file", str(conf), "--polling-namespaces", namespaces],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"), cwd=workdir)  # noqa: SIM115

    def samples(self) -> list[dict[str, Any]]:
        if not self.samples_path.exists():
            return []
        out = []
        for line in self.samples_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def polls_by_cycle(agents: list[AgentProcess]) -> dict[str, Counter[str]]:
    """cycle start -> Counter of resource ids polled (over every agent)."""
    cycles: dict[str, Counter[str]] = defaultdict(Counter)
    for agent in agents:
        for sample in agent.samples():
            cycles[sample["cycle_start"]][sample["resource_id"]] += 1
    return cycles


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def cycle_report(agents: list[AgentProcess], ids: list[str],
                 cycles: list[str] | None = None) -> dict[str, tuple[set[str], set[str]]]:
    """cycle start -> (gaps, duplicates) over every agent's samples.

    ``cycles`` limits the report (default: every cycle seen).
    """
    polled = polls_by_cycle(agents)
    expected = set(ids)
    report = {}
    for cycle in cycles if cycles is not None else sorted(polled):
        counts = polled.get(cycle, Counter())
        report[cycle] = (expected - set(counts), {r for r, n in counts.items() if n > 1})
    return report


# --- per-cycle audit of what the agents polled ---------------------------------
#
# The file publisher writes one JSON line per sample; the fields that matter
# here are ``resource_id``, ``cycle_start`` (the cycle the poll belongs to),
# ``member_id`` (who polled it) and ``timestamp`` (wall time of the poll: the
# synthetic pollster stamps it).  :class:`PollCollector` reads them
# incrementally, :func:`audit_cycles` turns them into one :class:`CycleAudit`
# per cycle (resources polled 0 times and 2+ times), and :func:`describe_cycles`
# renders offending cycles for an assertion message.


def iso_to_epoch(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp as written by ``Sample.as_dict``."""
    return datetime.fromisoformat(text).timestamp()


def clock(t: float) -> str:
    """``HH:MM:SS.mmm`` local time, the format of the agents' log timestamps."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


@dataclass(frozen=True)
class Poll:
    """One poll of one resource, as recorded by an agent's file publisher."""

    resource: str
    cycle: str          #: ``cycle_start`` as written (ISO 8601 UTC)
    cycle_at: float     #: ``cycle_start`` in epoch seconds
    member: str         #: ``member_id``: the membership session that polled it
    at: float           #: ``timestamp``: wall-clock time of the poll
    agent: str          #: name of the AgentProcess whose file holds it


class PollCollector:
    """Incrementally reads the sample files of agents (add agents as they start).

    Only complete lines are consumed, so a line being written is read at the
    next :meth:`refresh`; reading stays cheap however long a test runs.
    """

    def __init__(self, agents: Iterable[AgentProcess] = ()) -> None:
        self._offsets: dict[str, tuple[Path, int]] = {}
        self._polls: list[Poll] = []
        for agent in agents:
            self.add(agent)

    def add(self, agent: AgentProcess) -> None:
        self._offsets.setdefault(agent.name, (agent.samples_path, 0))

    def refresh(self) -> list[Poll]:
        """Every poll read so far (a new list; read new lines first)."""
        for name, (path, offset) in list(self._offsets.items()):
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                try:
                    s = json.loads(line)
                    self._polls.append(Poll(s["resource_id"], s["cycle_start"],
                                            iso_to_epoch(s["cycle_start"]), s["member_id"],
                                            iso_to_epoch(s["timestamp"]), name))
                except (ValueError, KeyError, TypeError):
                    continue  # not a sample of a partitioned cycle
            self._offsets[name] = (path, offset + end)
        return list(self._polls)


@dataclass
class CycleAudit:
    """Who polled what in one cycle, against the resources that should be polled."""

    cycle: str                                   #: ``cycle_start`` (ISO)
    cycle_at: float                              #: ``cycle_start`` (epoch seconds)
    polls: dict[str, list[Poll]]                 #: resource -> its polls in this cycle
    gaps: set[str] = field(default_factory=set)  #: expected resources polled 0 times
    duplicates: dict[str, list[Poll]] = field(default_factory=dict)  #: polled 2+ times

    @property
    def by_agent(self) -> Counter[str]:
        """Agent name -> polls in this cycle."""
        return Counter(p.agent for ps in self.polls.values() for p in ps)

    @property
    def by_member(self) -> Counter[str]:
        """Member id -> polls in this cycle."""
        return Counter(p.member for ps in self.polls.values() for p in ps)

    def polled_by(self, agent: str) -> set[str]:
        """Resources that the agent named ``agent`` polled in this cycle."""
        return {r for r, ps in self.polls.items() if any(p.agent == agent for p in ps)}

    def describe(self, origin: float | None = None, examples: int = 5) -> str:
        """One line: cycle, gap and duplicate counts with examples, polls per agent."""
        when = f"cycle {self.cycle} ({clock(self.cycle_at)}"
        when += f", t{self.cycle_at - origin:+.2f}s)" if origin is not None else ")"
        dup = sorted(self.duplicates)[:examples]
        dup_text = ", ".join(f"{r} by {'+'.join(f'{p.agent}@{clock(p.at)}' for p in self.duplicates[r])}"
                             for r in dup)
        return (f"{when}: {len(self.gaps)} gaps {sorted(self.gaps)[:examples]}, "
                f"{len(self.duplicates)} duplicates [{dup_text}], "
                f"polls by agent {dict(sorted(self.by_agent.items()))}")


def audit_cycles(polls: Sequence[Poll], ids: Iterable[str], *, since: float | None = None,
                 until: float | None = None, skip_newest: bool = True,
                 interval: float | None = None) -> list[CycleAudit]:
    """Per-cycle audit: the resources of ``ids`` polled 0 times and polled 2+ times.

    :param polls: every poll of every agent (:meth:`PollCollector.refresh`)
    :param ids: the resources every cycle must poll exactly once
    :param since: keep the cycles starting at or after this epoch time
        (e.g. the first cycle in which all initial agents polled)
    :param until: keep the cycles starting at or before this epoch time
    :param skip_newest: drop the newest cycle seen (it may be partially written)
    :param interval: the source's interval; when given, a cycle in which
        nobody polled anything (between two cycles seen) is audited too, as
        an empty cycle whose every resource is a gap.  Without it such a
        cycle is invisible (see :func:`missing_cycles`).
    :returns: one :class:`CycleAudit` per cycle, oldest first.
    """
    expected = set(ids)
    cycles: dict[str, dict[str, list[Poll]]] = defaultdict(lambda: defaultdict(list))
    starts: dict[str, float] = {}
    for poll in polls:
        cycles[poll.cycle][poll.resource].append(poll)
        starts[poll.cycle] = poll.cycle_at
    order = sorted(cycles, key=starts.__getitem__)
    if skip_newest and order:
        order = order[:-1]
    audits = []
    for cycle in order:
        by_resource = dict(cycles[cycle])
        audits.append(CycleAudit(
            cycle, starts[cycle], by_resource, expected - set(by_resource),
            {r: ps for r, ps in by_resource.items() if len(ps) > 1}))
    if interval is not None:
        for at in missing_cycles(audits, interval):
            iso = datetime.fromtimestamp(at, UTC).isoformat()
            audits.append(CycleAudit(f"{iso} (nobody polled)", at, {}, set(expected), {}))
        audits.sort(key=lambda a: a.cycle_at)
    return [a for a in audits if (since is None or a.cycle_at >= since)
            and (until is None or a.cycle_at <= until)]


def missing_cycles(audits: Sequence[CycleAudit], interval: float) -> list[float]:
    """Starts of cycles absent between the first and last audited ones (nobody polled)."""
    missing = []
    for before, after in itertools.pairwise(audits):
        t = before.cycle_at + interval
        while t < after.cycle_at - interval / 2:
            missing.append(t)
            t += interval
    return missing


def first_cycle_polled_by_all(polls: Sequence[Poll], agents: Iterable[str]) -> float | None:
    """Start of the first cycle from which on each named agent has polled (None: not yet).

    That is the latest of the agents' first polled cycles: from there on all
    of them are active members.
    """
    first: dict[str, float] = {}
    for poll in polls:
        if poll.agent not in first or poll.cycle_at < first[poll.agent]:
            first[poll.agent] = poll.cycle_at
    names = list(agents)
    if any(name not in first for name in names):
        return None
    return max(first[name] for name in names)


def member_ids_of(polls: Sequence[Poll], agent: str) -> list[str]:
    """The member ids under which the agent named ``agent`` polled, in order of first use."""
    seen: dict[str, float] = {}
    for poll in polls:
        if poll.agent == agent and (poll.member not in seen or poll.at < seen[poll.member]):
            seen[poll.member] = poll.at
    return sorted(seen, key=seen.__getitem__)


def describe_cycles(audits: Iterable[CycleAudit], origin: float | None = None,
                    limit: int = 20) -> str:
    """The :meth:`CycleAudit.describe` lines of ``audits`` (at most ``limit``)."""
    audits = list(audits)
    lines = [a.describe(origin) for a in audits[:limit]]
    if len(audits) > limit:
        lines.append(f"... and {len(audits) - limit} more cycle(s)")
    return "\n".join(lines)


def logs_tail(agents: Iterable[AgentProcess], lines: int = 30) -> str:
    """The last ``lines`` lines of each agent's log, one section per agent."""
    out = []
    for agent in agents:
        tail = agent.log().splitlines()[-lines:]
        out.append(f"----- {agent.name} (pid {agent.proc.pid}, exit {agent.proc.returncode}) "
                   f"log tail -----\n" + "\n".join(tail))
    return "\n".join(out)


class MemberWatch:
    """A group's member list over time, seen by a ZooKeeper client of the test's own.

    The agents keep their members under ``<root>/groups/<group>/members``
    (``root`` = the backend URL path), named by member id and ring fields;
    the history keeps the member ids.  Every change is recorded with the
    wall-clock time it was seen, so a test knows when ZooKeeper removed a
    crashed agent (session expiry) or added its new session.
    """

    def __init__(self, hosts: str, root: str, group: str = "synthetic") -> None:
        self.path = f"{root}/groups/{group}/members"
        self.history: list[tuple[float, frozenset[str]]] = []
        self._lock = threading.Lock()
        self.client = KazooClient(hosts=hosts, timeout=10.0)
        self.client.start(timeout=15)
        self.client.ensure_path(self.path)
        ChildrenWatch(self.client, self.path, self._changed)

    def _changed(self, children: list[str]) -> None:
        # znodes are named <member id>!<rev>!<active_at>!<leave_at>!<weight>
        ids = frozenset((parse_member_name(c) or (c,))[0] for c in children)
        with self._lock:
            self.history.append((time.time(), ids))

    def gone_at(self, member: str) -> float | None:
        """When ``member`` was first seen absent after having been present (None: not yet)."""
        present = False
        with self._lock:
            history = list(self.history)
        for at, members in history:
            if member in members:
                present = True
            elif present:
                return at
        return None

    def joined_at(self, member: str) -> float | None:
        """When ``member`` was first seen present (None: not yet)."""
        with self._lock:
            return next((at for at, members in self.history if member in members), None)

    def describe(self, origin: float | None = None) -> str:
        with self._lock:
            history = list(self.history)
        return "\n".join(
            f"{clock(at)}" + (f" (t{at - origin:+.2f}s)" if origin is not None else "")
            + f": {sorted(members)}" for at, members in history)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must not hide the test's outcome
            self.client.stop()
            self.client.close()
