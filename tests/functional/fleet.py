"""One harness for fleets of zkpoll service processes, polling agents and alarm
evaluators alike: start them as OS processes, break them from outside, read
what each one recorded, and audit (:mod:`tests.functional.audit`) that every
key was done exactly once in every cycle.

- :class:`ServiceProcess` runs one console script (``zkpoll-polling``,
  ``zkpoll-alarm``) with its own configuration file and log, and names the
  JSON-lines file it writes and the audit reads (the samples of the file
  publisher; the evaluation log).
- :class:`Fleet` holds the processes of one test, a fault timeline and a
  :class:`MemberWatch`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch

from tests.functional.audit import (
    Collector,
    CycleAudit,
    R,
    audit_cycles,
    clock,
    describe_cycles,
    first_cycle_done_by_all,
    member_ids_of,
    require,
    rule,
)
from zkpoll.coordination.zookeeper._names import parse_member_name
from zkpoll.testing.waiting import wait_for

# --- processes ------------------------------------------------------------------------


class ServiceProcess:
    """One service process: ``command --config-file <name>.conf *args``.

    Its stderr goes to ``<name>.log``; ``output`` is the JSON-lines file it
    writes, which :meth:`records` and :class:`Collector` read.  ``env``: its
    environment (default: this process's).
    """

    def __init__(self, workdir: Path, name: str, command: Sequence[str], conf: str,
                 output: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.output = output
        self.log_path = workdir / f"{name}.log"
        self.conf_path = workdir / f"{name}.conf"
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            [*command, "--config-file", str(self.conf_path), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"), cwd=workdir,  # noqa: SIM115
            env=None if env is None else dict(env))

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


# --- scenarios shared by several fleets --------------------------------------------------


def kill9_in_cycle_and_check(fleet: Fleet[Any], first: float, victim: ServiceProcess,
                             phase: float = 1.9) -> list[str]:
    """kill -9 ``victim`` ``phase`` s into a cycle (it polled that cycle); wait for its
    session expiry and 3 more cycles; return the broken rules:

    0 gaps before the kill and in every cycle starting after kill + session
    timeout; the victim's orphans done by a survivor in the cycle in flight at
    its session expiry; duplicates only among what the victim did, at most twice.
    """
    interval = fleet.service.interval
    victim_member = fleet.member_ids(victim.name)[0]
    fleet.at_phase(phase)
    t_kill = fleet.kill(victim, f"({victim_member})")
    fleet.wait(lambda: fleet.watch.gone_at(victim_member) is not None,
               fleet.session_timeout + 10, f"ZooKeeper removed {victim_member} (session expiry)")
    t_expire = fleet.note(f"{victim_member} gone from ZooKeeper (session expired)",
                          fleet.watch.gone_at(victim_member))
    fleet.wait_cycles_after(t_expire, 3)
    audits = fleet.audit(first)

    failures: list[str] = []
    in_flight = [a for a in audits if a.cycle_at <= t_expire < a.cycle_at + interval]
    victim_last = max((a for a in audits if a.by_agent[victim.name]),
                      key=lambda a: a.cycle_at, default=None)
    orphans = victim_last.done_by(victim.name) if victim_last else set()
    require(failures, len(in_flight) == 1,
            f"no audited cycle was in flight at the session expiry {clock(t_expire)}")
    require(failures, bool(orphans), f"{victim.name} did nothing before the kill")
    require(failures, len([a for a in audits if a.cycle_at > t_expire]) >= 3,
            "fewer than 3 audited cycles after the session expiry")
    rule(failures, f"0 gaps in every cycle starting after kill + session timeout "
         f"({clock(t_kill + fleet.session_timeout)})",
         [a for a in audits if a.cycle_at > t_kill + fleet.session_timeout],
         lambda a: bool(a.gaps), t_kill)
    rule(failures, "0 gaps in the cycles that ended before the kill",
         [a for a in audits if a.cycle_at + interval <= t_kill], lambda a: bool(a.gaps), t_kill)
    rule(failures, f"the victim's {len(orphans)} orphans are done by a survivor in the cycle "
         f"in flight at its session expiry ({clock(t_expire)}), with that cycle's start",
         in_flight, lambda a: bool(orphans - set(a.records)), t_kill)
    rule(failures, "0 gaps in the cycle in flight at the session expiry",
         in_flight, lambda a: bool(a.gaps), t_kill)
    rule(failures, "duplicates only among what the victim did in that cycle, at most twice",
         audits, lambda a: any(len(ps) > 2 or not any(p.agent == victim.name for p in ps)
                               for ps in a.duplicates.values()), t_kill)
    return failures
