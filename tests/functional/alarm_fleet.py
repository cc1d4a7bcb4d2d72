"""Real ``zkpoll-alarm`` evaluators as OS processes, and what they evaluated.

The evaluators run in the harness of :mod:`tests.functional.fleet`: this
module says how to start one (:func:`start_evaluator`), how to read one line
of its evaluation log (:func:`parse_evaluation`), the state every evaluation
must reach (:func:`check_state`) and what a fleet of them audits
(:func:`alarm_service`).

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

import math
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.functional.fleet import Service, ServiceProcess

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


def start_evaluator(workdir: Path, name: str, backend_url: str, prometheus_url: str,
                    definitions: Path, extra: str = "") -> ServiceProcess:
    """One ``zkpoll-alarm`` process with its own config and spool; its output is its
    evaluation log."""
    evaluations = workdir / f"{name}.evaluations.jsonl"
    conf = ("[coordination]\n"
            f"backend_url = {backend_url}\n"
            f"member_name = {name}\n"
            "heartbeat_interval = 0.2\n"
            "settle_time = 1.0\n"
            "[alarm]\n"
            f"definitions_dir = {definitions}\n"
            f"prometheus_url = {prometheus_url}\n"
            "query_timeout = 2\n"
            "max_parallel_queries = 4\n"
            f"evaluation_log = {evaluations}\n"
            f"spool_dir = {workdir / (name + '-spool')}\n" + extra)
    return ServiceProcess(workdir, name, evaluator_command(), conf, evaluations)


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

    @property
    def key(self) -> str:
        return self.alarm

    @property
    def done(self) -> bool:
        return self.result == "written"  # a lost evaluation left no state behind


def parse_evaluation(e: dict[str, Any], agent: str) -> Evaluation:
    """The evaluation an evaluation-log line records."""
    return Evaluation(e["alarm"], round(e["start"], 3), e["member"], e["result"], e["kind"],
                      e["state"], e["seq"], e["transition"], e["t"], agent)


def check_state(alarm: str, cycle_start: float, evaluation: Evaluation) -> str | None:
    """What is wrong with the state written for ``alarm`` in that cycle (None: right)."""
    want = expected_state(int(alarm.split("-")[1]), cycle_start)
    return None if evaluation.state == want else f"{evaluation.state} (expected {want})"


def alarm_service(ids: list[str], definitions: Path,
                  prometheus_url: str) -> Service[Evaluation]:
    """Evaluators of the flipping alarms in ``definitions``, as a fleet runs them."""
    def spawn(workdir: Path, name: str, url: str) -> ServiceProcess:
        return start_evaluator(workdir, name, url, prometheus_url, definitions)
    return Service(noun="evaluator", group="alarm", interval=INTERVAL, ids=ids, spawn=spawn,
                   parse=parse_evaluation, check=check_state, stop_timeout=30.0,
                   steady_timeout=60.0, cycle_slack=30.0)


def transitions(evaluations: Sequence[Evaluation]) -> dict[str, Evaluation]:
    """Idempotency key ``<alarm>:<seq>`` -> the written evaluation that recorded it."""
    return {f"{e.alarm}:{e.seq}": e for e in evaluations
            if e.result == "written" and e.transition}


def delivery_counts(keys: Iterable[str | None]) -> Counter[str]:
    return Counter(k for k in keys if k)
