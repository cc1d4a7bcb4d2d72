"""One harness for fleets of zkpoll service processes, polling agents and alarm
evaluators alike: start them as OS processes, break them from outside, read
what each one recorded, and audit that every key was done exactly once in
every cycle.

- :class:`ServiceProcess` runs one console script (``zkpoll-polling``,
  ``zkpoll-alarm``) with its own configuration file and log, and names the
  JSON-lines file it writes and the audit reads (the samples of the file
  publisher; the evaluation log).
- :class:`Collector` reads those files incrementally into records, one per
  line, through a parse function of the service (``agents.parse_poll``,
  ``alarm_fleet.parse_evaluation``).  A record has a :class:`Record`'s
  fields: the key (a resource, an alarm), the cycle it belongs to, the
  member and the process that did it, when, and whether it counts as done
  (a poll always; an evaluation when its state was written).
- :func:`audit_cycles` gives one :class:`CycleAudit` per cycle: the keys
  not done (gaps), the keys recorded twice or more (duplicates), done twice
  or more, and done wrongly (a service's ``check``).
- :class:`Fleet` holds the processes of one test, a fault timeline and a
  :class:`MemberWatch`; :func:`rule`, :func:`require` and
  :func:`exactly_once` turn audits into failure messages.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from zkpoll.coordination._names import parse_member_name
from zkpoll.testing.waiting import wait_for


def clock(t: float) -> str:
    """``HH:MM:SS.mmm`` local time, the format of the services' log timestamps."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


# --- processes ------------------------------------------------------------------------


class ServiceProcess:
    """One service process: ``command --config-file <name>.conf *args``.

    Its stderr goes to ``<name>.log``; ``output`` is the JSON-lines file it
    writes, which :meth:`records` and :class:`Collector` read.
    """

    def __init__(self, workdir: Path, name: str, command: Sequence[str], conf: str,
                 output: Path, args: Sequence[str] = ()) -> None:
        self.name = name
        self.output = output
        self.log_path = workdir / f"{name}.log"
        self.conf_path = workdir / f"{name}.conf"
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            [*command, "--config-file", str(self.conf_path), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"), cwd=workdir)  # noqa: SIM115

    def records(self) -> list[dict[str, Any]]:
        """Every complete JSON line of ``output`` so far (a line being written is skipped)."""
        if not self.output.exists():
            return []
        out = []
        for line in self.output.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (if still running) and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def logs_tail(processes: Iterable[ServiceProcess], lines: int = 30) -> str:
    """The last ``lines`` lines of each process's log, one section per process."""
    out = []
    for process in processes:
        tail = process.log().splitlines()[-lines:]
        out.append(f"----- {process.name} (pid {process.proc.pid}, exit "
                   f"{process.proc.returncode}) log tail -----\n" + "\n".join(tail))
    return "\n".join(out)


# --- records ------------------------------------------------------------------------------


class Record(Protocol):
    """What the audit needs of one line of a service's output."""

    @property
    def key(self) -> str: ...        # the resource or alarm
    @property
    def cycle_at(self) -> float: ...  # the start of the cycle it belongs to (epoch s)
    @property
    def member(self) -> str: ...      # the membership session that did it
    @property
    def at(self) -> float: ...        # wall-clock time it was done
    @property
    def agent(self) -> str: ...       # the ServiceProcess whose file holds it
    @property
    def done(self) -> bool: ...       # counts as the key's work for its cycle


R = TypeVar("R", bound=Record)


class Collector(Generic[R]):
    """Reads the outputs of processes incrementally (add processes as they start).

    Only complete lines are consumed, so a line being written is read at the
    next :meth:`refresh`; reading stays cheap however long a test runs.
    ``parse(line, process name)`` makes a record of a decoded line, or None
    for a line the audit does not concern.
    """

    def __init__(self, parse: Callable[[dict[str, Any], str], R | None],
                 processes: Iterable[ServiceProcess] = ()) -> None:
        self._parse = parse
        self._offsets: dict[str, tuple[Path, int]] = {}
        self._records: list[R] = []
        for process in processes:
            self.add(process)

    def add(self, process: ServiceProcess) -> None:
        self._offsets.setdefault(process.name, (process.output, 0))

    def refresh(self) -> list[R]:
        """Every record read so far (a new list; read new lines first)."""
        for name, (path, offset) in list(self._offsets.items()):
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                record = self._parse(json.loads(line), name)
                if record is not None:
                    self._records.append(record)
            self._offsets[name] = (path, offset + end)
        return list(self._records)


def first_cycle_done_by_all(records: Sequence[Record], agents: Iterable[str]) -> float | None:
    """Start of the first cycle from which on each named process has done work (None: not yet).

    That is the latest of their first cycles: from there on all of them are
    active members.
    """
    first: dict[str, float] = {}
    for record in records:
        if record.done and (record.agent not in first or record.cycle_at < first[record.agent]):
            first[record.agent] = record.cycle_at
    names = list(agents)
    if any(name not in first for name in names):
        return None
    return max(first[name] for name in names)


def member_ids_of(records: Sequence[Record], agent: str) -> list[str]:
    """The member ids under which the process named ``agent`` worked, in order of first use."""
    seen: dict[str, float] = {}
    for record in records:
        if record.agent == agent and (record.member not in seen
                                      or record.at < seen[record.member]):
            seen[record.member] = record.at
    return sorted(seen, key=seen.__getitem__)


# --- the audit ------------------------------------------------------------------------------


@dataclass
class CycleAudit(Generic[R]):
    """What was done to which key in one cycle, against the keys every cycle must do."""

    cycle_at: float                                   #: the cycle's start (epoch seconds)
    records: dict[str, list[R]]                       #: key -> its records in this cycle
    gaps: set[str] = field(default_factory=set)       #: expected keys not done
    duplicates: dict[str, list[R]] = field(default_factory=dict)  #: keys recorded 2+ times
    double_done: set[str] = field(default_factory=set)  #: keys done 2+ times
    wrong: dict[str, str] = field(default_factory=dict)  #: key -> what its work got wrong
    absent: bool = False                              #: nobody recorded anything this cycle

    @property
    def by_agent(self) -> Counter[str]:
        """Process name -> keys done in this cycle."""
        return Counter(r.agent for rs in self.records.values() for r in rs if r.done)

    @property
    def by_member(self) -> Counter[str]:
        """Member id -> keys done in this cycle."""
        return Counter(r.member for rs in self.records.values() for r in rs if r.done)

    def done_by(self, agent: str) -> set[str]:
        """Keys that the process named ``agent`` did in this cycle."""
        return {k for k, rs in self.records.items()
                if any(r.agent == agent and r.done for r in rs)}

    def describe(self, origin: float | None = None, examples: int = 5) -> str:
        """One line: the cycle; its gaps, duplicates and wrong work, with examples; the
        work per process."""
        when = f"cycle {clock(self.cycle_at)}"
        when += " (nobody recorded anything)" if self.absent else ""
        when += f" (t{self.cycle_at - origin:+.2f}s)" if origin is not None else ""

        def by(rs: list[R]) -> str:
            return "+".join(f"{r.agent}@{clock(r.at)}" + ("" if r.done else ":not done")
                            for r in rs)
        dup = ", ".join(f"{k} by {by(rs)}" for k, rs in sorted(self.duplicates.items())[:examples])
        return (f"{when}: {len(self.gaps)} gaps {sorted(self.gaps)[:examples]}, "
                f"{len(self.duplicates)} duplicates [{dup}], {len(self.double_done)} done twice, "
                f"{len(self.wrong)} wrong {dict(sorted(self.wrong.items())[:examples])}, "
                f"done by {dict(sorted(self.by_agent.items()))}")


def audit_cycles(records: Sequence[R], ids: Iterable[str], *, since: float | None = None,
                 until: float | None = None, skip_newest: bool = True,
                 interval: float | None = None,
                 check: Callable[[str, float, R], str | None] | None = None,
                 ) -> list[CycleAudit[R]]:
    """Per-cycle audit: every key of ``ids`` must be done exactly once in every cycle.

    :param records: every record of every process (:meth:`Collector.refresh`)
    :param ids: the keys every cycle must do exactly once
    :param since: keep the cycles starting at or after this epoch time
        (e.g. the first cycle in which all initial processes did work)
    :param until: keep the cycles starting at or before this epoch time
    :param skip_newest: drop the newest cycle seen (it may be partially written)
    :param interval: the cycles' interval; when given, a cycle in which
        nobody recorded anything (between two cycles seen) is audited too,
        with every key a gap.  Without it such a cycle is invisible.
    :param check: ``check(key, cycle start, record)`` of the first record
        done for a key: what it got wrong, or None
    :returns: one :class:`CycleAudit` per cycle, oldest first.
    """
    expected = list(ids)
    cycles: dict[float, dict[str, list[R]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        cycles[round(record.cycle_at, 3)][record.key].append(record)
    starts = sorted(cycles)
    if skip_newest:
        starts = starts[:-1]
    audits: list[CycleAudit[R]] = []
    for start in starts:
        by_key = dict(cycles[start])
        audit = CycleAudit(start, by_key)
        for key in expected:
            if not any(r.done for r in by_key.get(key, ())):
                audit.gaps.add(key)
        for key, rs in by_key.items():
            done = [r for r in rs if r.done]
            if len(rs) > 1:
                audit.duplicates[key] = rs
            if len(done) > 1:
                audit.double_done.add(key)
            if done and check is not None and (problem := check(key, start, done[0])):
                audit.wrong[key] = problem
        audits.append(audit)
    if interval is not None:
        for at in missing_cycles(audits, interval):
            audits.append(CycleAudit(round(at, 3), {}, set(expected), absent=True))
        audits.sort(key=lambda a: a.cycle_at)
    # cycle starts are rounded to the millisecond: compare within half of one
    return [a for a in audits if (since is None or a.cycle_at >= since - 5e-4)
            and (until is None or a.cycle_at <= until + 5e-4)]


def missing_cycles(audits: Sequence[CycleAudit[Any]], interval: float) -> list[float]:
    """Starts of cycles absent between the first and last audited ones (nobody recorded)."""
    missing = []
    for before, after in itertools.pairwise(audits):
        t = before.cycle_at + interval
        while t < after.cycle_at - interval / 2:
            missing.append(t)
            t += interval
    return missing


def describe_cycles(audits: Iterable[CycleAudit[Any]], origin: float | None = None,
                    limit: int = 20) -> str:
    """The :meth:`CycleAudit.describe` lines of ``audits`` (at most ``limit``)."""
    audits = list(audits)
    lines = [a.describe(origin) for a in audits[:limit]]
    if len(audits) > limit:
        lines.append(f"... and {len(audits) - limit} more cycle(s)")
    return "\n".join(lines)


def rule(failures: list[str], title: str, audits: Sequence[CycleAudit[Any]],
         bad: Callable[[CycleAudit[Any]], bool], origin: float) -> None:
    """Record a failure naming every audited cycle for which ``bad`` holds."""
    offending = [a for a in audits if bad(a)]
    if offending:
        failures.append(f"RULE BROKEN: {title}: {len(offending)} of {len(audits)} audited "
                        f"cycle(s) (t relative to {clock(origin)}):\n"
                        + describe_cycles(offending, origin))


def require(failures: list[str], condition: bool, message: str) -> None:
    """Record a failure when the scenario did not happen as the test needs it to."""
    if not condition:
        failures.append(f"SCENARIO: {message}")


def always_right(failures: list[str], audits: Sequence[CycleAudit[Any]], origin: float) -> None:
    """No key done twice in a cycle, and no work done wrong."""
    rule(failures, "no key done twice in a cycle", audits, lambda a: bool(a.double_done), origin)
    rule(failures, "all work done right (the service's check)", audits,
         lambda a: bool(a.wrong), origin)


def exactly_once(failures: list[str], audits: Sequence[CycleAudit[Any]], origin: float,
                 min_cycles: int = 0) -> None:
    """Every key done in every cycle (0 gaps), recorded once (0 duplicates), done right."""
    require(failures, len(audits) >= min_cycles,
            f"only {len(audits)} cycle(s) audited (at least {min_cycles} needed)")
    rule(failures, "every key done in every cycle (0 gaps)", audits,
         lambda a: bool(a.gaps), origin)
    rule(failures, "no key recorded twice in a cycle (0 duplicates)", audits,
         lambda a: bool(a.duplicates), origin)
    always_right(failures, audits, origin)


# --- the group, seen from outside -----------------------------------------------------------


class MemberWatch:
    """A group's member list over time, seen by a ZooKeeper client of the test's own.

    The services keep their members under ``<root>/groups/<group>/members``
    (``root`` = the backend URL path), named by member id and ring fields;
    the history keeps the member ids.  Every change is recorded with the
    wall-clock time it was seen, so a test knows when ZooKeeper removed a
    crashed member (session expiry) or added its new session.
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


# --- the fleet ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Service(Generic[R]):
    """What a :class:`Fleet` runs and audits."""

    noun: str                                   #: "agent", "evaluator": for messages
    group: str                                  #: the coordination group its members join
    interval: float                             #: seconds between two cycles
    ids: list[str]                              #: the keys every cycle must do exactly once
    spawn: Callable[[Path, str, str], ServiceProcess]  #: (workdir, name, backend URL)
    parse: Callable[[dict[str, Any], str], R | None]   #: an output line -> a record
    check: Callable[[str, float, R], str | None] | None = None  #: see :func:`audit_cycles`
    stop_timeout: float = 20.0                  #: seconds a SIGTERM may take
    steady_timeout: float = 40.0                #: seconds to reach the steady cycles
    cycle_slack: float = 15.0                   #: added to the wait for N cycles


class Fleet(Generic[R]):
    """The processes of one test, their records, a member watch and a fault timeline."""

    def __init__(self, service: Service[R], workdir: Path, hosts: str, root: str,
                 session_timeout: float, steady_cycles: int = 2) -> None:
        self.service = service
        self.workdir = workdir
        self.root = root
        self.session_timeout = session_timeout
        self.steady_cycles = steady_cycles
        self.ids = service.ids
        self.url = self.url_for(hosts)
        self.agents: list[ServiceProcess] = []
        self.collector: Collector[R] = Collector(service.parse)
        self.t0 = time.time()
        self.timeline: list[tuple[float, str]] = []
        self.frozen: set[str] = set()   # processes under SIGSTOP
        self.ended: set[str] = set()    # processes the test stopped or killed on purpose
        self.watch = MemberWatch(hosts, root, group=service.group)

    def url_for(self, hosts: str) -> str:
        return f"zookeeper://{hosts}{self.root}?timeout={self.session_timeout:g}"

    # --- processes -------------------------------------------------------------
    def start(self, name: str, hosts: str | None = None) -> ServiceProcess:
        """Start one process (through ``hosts`` instead of the fleet's servers if given)."""
        process = self.service.spawn(self.workdir, name,
                                     self.url_for(hosts) if hosts else self.url)
        self.agents.append(process)
        self.collector.add(process)
        self.note(f"started {name} (pid {process.proc.pid})")
        return process

    def terminate(self, process: ServiceProcess) -> int:
        """SIGTERM one process and wait for its exit (bounded); its exit code."""
        self.ended.add(process.name)
        self.note(f"SIGTERM {process.name}")
        rc = process.terminate(timeout=self.service.stop_timeout)
        self.note(f"{process.name} exited {rc}")
        return rc

    def kill(self, process: ServiceProcess, what: str = "") -> float:
        """SIGKILL one process; the time of the kill."""
        self.ended.add(process.name)
        at = self.note(f"SIGKILL {process.name} {what}".strip())
        process.kill()
        return at

    def freeze(self, process: ServiceProcess) -> None:
        self.frozen.add(process.name)
        os.kill(process.proc.pid, signal.SIGSTOP)

    def thaw(self, process: ServiceProcess) -> None:
        os.kill(process.proc.pid, signal.SIGCONT)
        self.frozen.discard(process.name)

    def stop_all(self) -> None:
        """SIGTERM every running process at once, then wait for each (bounded)."""
        self.ended.update(p.name for p in self.agents)
        for process in self.agents:
            if process.name in self.frozen:
                self.thaw(process)
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
        for process in self.agents:
            try:
                process.proc.wait(self.service.stop_timeout)
            except subprocess.TimeoutExpired:  # reported as a bad exit code by finish()
                process.kill()

    def cleanup(self) -> None:
        try:
            self.stop_all()
        finally:
            for process in self.agents:
                process.kill()
            self.watch.close()

    # --- time ------------------------------------------------------------------
    def note(self, what: str, at: float | None = None) -> float:
        at = time.time() if at is None else at
        self.timeline.append((at, what))
        return at

    def at_phase(self, phase: float) -> float:
        """Sleep until ``phase`` seconds into a cycle (cycles as the records show them)."""
        interval = self.service.interval
        records = self.records()
        assert records, "nothing recorded yet: cannot tell the cycle phase\n" + self.diagnostics()
        offset = records[-1].cycle_at % interval
        now = time.time()
        target = offset + (now - offset) // interval * interval + phase
        while target < now + 0.05:
            target += interval
        time.sleep(target - now)
        return target

    # --- records ---------------------------------------------------------------
    def records(self) -> list[R]:
        return self.collector.refresh()

    def member_ids(self, name: str) -> list[str]:
        """The member ids process ``name`` worked under, in order of first use."""
        return member_ids_of(self.records(), name)

    def cycles_with(self, names: list[str], after: float | None = None,
                    member: Callable[[str], bool] | None = None) -> list[float]:
        """Starts of the cycles in which every process of ``names`` did work (sorted)."""
        seen: dict[float, set[str]] = {}
        for record in self.records():
            if record.done and (after is None or record.cycle_at > after) \
                    and (member is None or member(record.member)):
                seen.setdefault(record.cycle_at, set()).add(record.agent)
        return sorted(c for c, who in seen.items() if set(names) <= who)

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` (bounded); fail at once if a process exits by itself."""
        noun = self.service.noun

        def check() -> object:
            died = [f"{p.name} (exit {p.proc.returncode})" for p in self.agents
                    if p.name not in self.ended and p.proc.poll() is not None]
            assert not died, (f"{noun}(s) exited on their own while waiting until {what}: "
                              f"{', '.join(died)}\n{self.diagnostics()}")
            return predicate()
        wait_for(check, timeout, what, interval=0.25, diagnostics=self.diagnostics)

    def wait_steady(self, names: list[str], timeout: float | None = None) -> float:
        """Wait for ``steady_cycles`` complete cycles done by all ``names``; the first
        cycle from which on all of them did work."""
        self.wait(lambda: len(self.cycles_with(names)) > self.steady_cycles,
                  timeout or self.service.steady_timeout,
                  f"{', '.join(names)} all did work in {self.steady_cycles} complete cycles")
        first = first_cycle_done_by_all(self.records(), names)
        assert first is not None
        self.note(f"first cycle done by all of {', '.join(names)}", first)
        return first

    def wait_cycles_after(self, t: float, count: int, timeout: float | None = None) -> None:
        """Wait until ``count`` complete cycles starting after ``t`` were recorded."""
        def done() -> bool:
            starts = {r.cycle_at for r in self.records() if r.cycle_at > t}
            return len(starts) > count  # the newest may be incomplete
        self.wait(done, timeout or count * self.service.interval + self.service.cycle_slack,
                  f"{count} complete cycles starting after {clock(t)} were recorded")

    def audit(self, since: float | None) -> list[CycleAudit[R]]:
        return audit_cycles(self.records(), self.ids, since=since,
                            interval=self.service.interval, check=self.service.check)

    # --- verdict ---------------------------------------------------------------
    def diagnostics(self) -> str:
        records = self.collector.refresh()
        lines = [f"timeline (t0 = {clock(self.t0)}):"]
        lines += [f"  t{at - self.t0:+8.3f}s {clock(at)}  {what}"
                  for at, what in sorted(self.timeline)]
        lines.append(f"member ids per {self.service.noun} (in order of use): " + "; ".join(
            f"{p.name}: {member_ids_of(records, p.name)}" for p in self.agents))
        lines.append(f"{self.service.group} members seen by the test's ZooKeeper client:")
        lines += ["  " + line for line in self.watch.describe(self.t0).splitlines()[-15:]]
        lines.append(logs_tail(self.agents, 25))
        return "\n".join(lines)

    def finish(self, failures: list[str], crashed: tuple[str, ...] = ()) -> None:
        """Stop every process (SIGTERM), check exits and logs, assert no failure."""
        self.note(f"SIGTERM to every {self.service.noun}")
        self.stop_all()
        self.note(f"every {self.service.noun} exited")
        for process in self.agents:
            if process.name not in crashed and process.proc.returncode != 0:
                failures.append(f"{process.name} exited {process.proc.returncode} after SIGTERM "
                                "(expected 0)")
            if "Traceback" in process.log():
                failures.append(f"{process.name}'s log contains a Traceback")
        if os.environ.get("ZKPOLL_TEST_VERBOSE"):  # with -s: the whole story, pass or fail
            print(f"\n{describe_cycles(self.audit(None), self.t0, limit=100)}\n"
                  f"{self.diagnostics()}")
        assert not failures, "\n\n".join(failures) + "\n\n" + self.diagnostics()
