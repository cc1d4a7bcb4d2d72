"""Run real ``zkpoll-alarm`` evaluators as OS processes and audit what they evaluated.

Alarms are ``prometheus`` alarms against a real Prometheus whose queries
flip on a schedule the test knows: alarm ``i`` queries
``floor((time() + OFFSET_i) / PERIOD) % 2`` (a function of the query time
only, so no data needs to be written), with threshold 0.5 (``gt``).  The
evaluators ask for the value at each cycle's start, so the state every
evaluation must reach is computable here.  Each evaluator writes its
evaluation log (``[alarm] evaluation_log``): one JSON line per evaluation
written or lost, which the audit reads.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.functional.agents import MemberWatch, clock, wait_until
from zkpoll.service.cycles import source_offset

INTERVAL = 2        # evaluation_interval of every alarm (seconds)
PERIOD = 4 * INTERVAL  # each alarm's query flips every PERIOD seconds
SOURCE = f"alarms-{INTERVAL}s"


def evaluator_command() -> list[str]:
    """The installed console script (or ``python -m`` when not on PATH)."""
    script = Path(sys.executable).with_name("zkpoll-alarm")
    if script.exists():
        return [str(script)]
    found = shutil.which("zkpoll-alarm")
    return [found] if found else [sys.executable, "-m", "zkpoll.cmd.alarm"]


def alarm_offset(index: int) -> int:
    """Seconds alarm ``index``'s schedule is shifted by (spreads the transitions)."""
    return (index % 4) * INTERVAL


def expected_state(index: int, cycle_start: float) -> str:
    """The state alarm ``index`` must be in after evaluating the cycle starting then."""
    value = math.floor((cycle_start + alarm_offset(index)) / PERIOD) % 2
    return "alarm" if value > 0.5 else "ok"


def write_flip_alarms(directory: Path, count: int, webhook_url: str) -> list[str]:
    """``count`` flipping alarms in two files; returns their ids (``flip-NNNN``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = [f"flip-{i:04d}" for i in range(count)]
    for part, chunk in enumerate((ids[:count // 2], ids[count // 2:])):
        lines = ["alarms:"]
        for alarm_id in chunk:
            index = int(alarm_id.split("-")[1])
            lines += [f"  - id: {alarm_id}",
                      "    type: prometheus",
                      f"    query: 'floor((vector(time()) + {alarm_offset(index)}) / {PERIOD}) % 2'",
                      "    comparison_operator: gt",
                      "    threshold: 0.5",
                      f"    evaluation_interval: {INTERVAL}",
                      "    severity: moderate",
                      f"    alarm_actions: ['{webhook_url}']",
                      f"    ok_actions: ['{webhook_url}']"]
        (directory / f"part{part}.yaml").write_text("\n".join(lines) + "\n")
    return ids


class EvaluatorProcess:
    """One ``zkpoll-alarm`` process with its own config, spool and evaluation log."""

    def __init__(self, workdir: Path, name: str, backend_url: str, prometheus_url: str,
                 definitions: Path, extra: str = "") -> None:
        self.name = name
        self.evaluations_path = workdir / f"{name}.evaluations.jsonl"
        self.log_path = workdir / f"{name}.log"
        conf = workdir / f"{name}.conf"
        conf.write_text(
            "[coordination]\n"
            f"backend_url = {backend_url}\n"
            f"member_name = {name}\n"
            "heartbeat_interval = 0.2\n"
            "settle_time = 1.0\n"
            "[alarm]\n"
            f"definitions_dir = {definitions}\n"
            f"prometheus_url = {prometheus_url}\n"
            "query_timeout = 2\n"
            "max_parallel_queries = 4\n"
            f"evaluation_log = {self.evaluations_path}\n"
            f"spool_dir = {workdir / (name + '-spool')}\n" + extra)
        self.proc = subprocess.Popen(
            [*evaluator_command(), "--config-file", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"), cwd=workdir)  # noqa: SIM115

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass(frozen=True)
class Evaluation:
    """One line of an evaluation log."""

    alarm: str
    cycle_at: float   #: the cycle's start
    member: str
    result: str       #: written | lost
    kind: str         #: cycle | catch_up | resume
    state: str
    seq: int
    transition: bool
    at: float
    agent: str


class EvaluationCollector:
    """Reads the evaluation logs incrementally (complete lines only)."""

    def __init__(self) -> None:
        self._offsets: dict[str, tuple[Path, int]] = {}
        self._items: list[Evaluation] = []

    def add(self, agent: EvaluatorProcess) -> None:
        self._offsets.setdefault(agent.name, (agent.evaluations_path, 0))

    def refresh(self) -> list[Evaluation]:
        for name, (path, offset) in list(self._offsets.items()):
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                e = json.loads(line)
                self._items.append(Evaluation(e["alarm"], round(e["start"], 3), e["member"],
                                              e["result"], e["kind"], e["state"], e["seq"],
                                              e["transition"], e["t"], name))
            self._offsets[name] = (path, offset + end)
        return list(self._items)


@dataclass
class AlarmCycleAudit:
    """Who evaluated which alarm in one cycle."""

    cycle_at: float
    evaluations: dict[str, list[Evaluation]]
    gaps: set[str] = field(default_factory=set)           #: no evaluation written
    twice: dict[str, list[Evaluation]] = field(default_factory=dict)  #: 2+ attempts
    double_writes: set[str] = field(default_factory=set)  #: 2+ writes won (never allowed)
    wrong: dict[str, str] = field(default_factory=dict)   #: alarm -> state written vs expected

    @property
    def by_agent(self) -> Counter[str]:
        return Counter(e.agent for es in self.evaluations.values() for e in es
                       if e.result == "written")

    def written_by(self, agent: str) -> set[str]:
        return {a for a, es in self.evaluations.items()
                if any(e.agent == agent and e.result == "written" for e in es)}

    def describe(self, origin: float | None = None, examples: int = 4) -> str:
        when = f"cycle {clock(self.cycle_at)}"
        when += f" (t{self.cycle_at - origin:+.2f}s)" if origin is not None else ""
        twice = ", ".join(f"{a} by {'+'.join(f'{e.agent}:{e.result}:{e.kind}' for e in es)}"
                          for a, es in sorted(self.twice.items())[:examples])
        return (f"{when}: {len(self.gaps)} gaps {sorted(self.gaps)[:examples]}, "
                f"{len(self.twice)} evaluated twice [{twice}], "
                f"{len(self.double_writes)} written twice, {len(self.wrong)} wrong states "
                f"{dict(sorted(self.wrong.items())[:examples])}, "
                f"written by agent {dict(sorted(self.by_agent.items()))}")


def audit_alarm_cycles(evaluations: Sequence[Evaluation], ids: Iterable[str],
                       since: float, until: float | None = None) -> list[AlarmCycleAudit]:
    """Per cycle from ``since``: gaps, double evaluations and states against the schedule.

    The newest cycle seen is left out (it may still be being evaluated);
    cycles in between in which nothing was evaluated are audited as all gaps.
    """
    expected = list(ids)
    cycles: dict[float, dict[str, list[Evaluation]]] = defaultdict(lambda: defaultdict(list))
    for e in evaluations:
        cycles[e.cycle_at][e.alarm].append(e)
    starts = sorted(cycles)[:-1]
    if starts:
        step, t = INTERVAL, starts[0]
        while t < starts[-1]:
            cycles.setdefault(round(t, 3), defaultdict(list))
            t += step
        starts = sorted(c for c in cycles if c <= starts[-1])
    audits = []
    for start in starts:
        if start < since - 1e-6 or (until is not None and start > until):
            continue
        by_alarm = dict(cycles[start])
        audit = AlarmCycleAudit(start, by_alarm)
        for alarm in expected:
            attempts = by_alarm.get(alarm, [])
            writes = [e for e in attempts if e.result == "written"]
            if not writes:
                audit.gaps.add(alarm)
            if len(attempts) > 1:
                audit.twice[alarm] = attempts
            if len(writes) > 1:
                audit.double_writes.add(alarm)
            want = expected_state(int(alarm.split("-")[1]), start)
            if writes and writes[0].state != want:
                audit.wrong[alarm] = f"{writes[0].state} (expected {want})"
        audits.append(audit)
    return audits


def cycle_starts_after(t: float) -> float:
    """The start of the first alarm cycle starting after ``t``."""
    offset = source_offset(SOURCE, INTERVAL)
    return (math.floor((t - offset) / INTERVAL) + 1) * INTERVAL + offset


def transitions(evaluations: Sequence[Evaluation]) -> dict[str, Evaluation]:
    """Idempotency key ``<alarm>:<seq>`` -> the written evaluation that recorded it."""
    return {f"{e.alarm}:{e.seq}": e for e in evaluations
            if e.result == "written" and e.transition}


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             diagnostics: Callable[[], str]) -> None:
    assert wait_until(predicate, timeout, interval=0.25), \
        f"timed out after {timeout:g}s waiting until {what}\n{diagnostics()}"


def delivery_counts(keys: Iterable[str | None]) -> Counter[str]:
    return Counter(k for k in keys if k)


def env_verbose() -> bool:
    return bool(os.environ.get("ZKPOLL_TEST_VERBOSE"))


__all__ = [
    "INTERVAL", "PERIOD", "SOURCE", "AlarmCycleAudit", "Evaluation", "EvaluationCollector",
    "EvaluatorProcess", "MemberWatch", "audit_alarm_cycles", "cycle_starts_after",
    "delivery_counts", "env_verbose", "expected_state", "transitions", "wait_for",
    "write_flip_alarms",
]

