"""The alarm bench's analysis: its alarms' schedule, and what the evaluation logs say.

Pure functions, no processes and no clock: :func:`flip_alarms_yaml` writes
the alarms ``benchmarks.alarm_bench`` gives both implementations, and the
rest turn evaluation-log lines (:class:`Evaluation`) and webhook deliveries
into the numbers of its ``alarm_eval`` and ``alarm_failover`` lines (defined
in that module's docstring).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks._bench_util import percentile, rounded


# --- the alarms -----------------------------------------------------------------------
def flip_schedule(index: int, interval: int, flip_every: int) -> tuple[int, int]:
    """(OFFSET, PERIOD) of alarm ``index``: its query value, ``floor((t + OFFSET) /
    PERIOD) % 2``, changes every ``flip_every`` cycles, in the cycle where
    ``(cycle + index) % flip_every == 0`` (for cycle starts ``cycle * interval +
    o``, ``0 <= o < interval``)."""
    return (index % flip_every) * interval, flip_every * interval


def flip_value(index: int, t: float, interval: int, flip_every: int) -> int:
    """The value alarm ``index``'s query has at time ``t`` (what Prometheus computes)."""
    offset, period = flip_schedule(index, interval, flip_every)
    return math.floor((t + offset) / period) % 2


def flip_alarms_yaml(ids: Sequence[str], interval: int, flip_every: int, url: str) -> str:
    """One YAML file of prometheus alarms (ids ``<name>-<index>``) flipping every
    ``flip_every`` cycles (:func:`flip_schedule`), notifying ``url``."""
    lines = ["alarms:"]
    for alarm_id in ids:
        offset, period = flip_schedule(int(alarm_id.rsplit("-", 1)[1]), interval, flip_every)
        lines += [f"  - id: {alarm_id}",
                  "    type: prometheus",
                  f"    query: 'floor((vector(time()) + {offset}) / {period}) % 2'",
                  "    comparison_operator: gt",
                  "    threshold: 0.5",
                  f"    evaluation_interval: {interval}",
                  "    severity: moderate",
                  f"    alarm_actions: ['{url}']",
                  f"    ok_actions: ['{url}']"]
    return "\n".join(lines) + "\n"


# --- what the evaluators wrote --------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """One evaluation-log line (see ``zkpoll.alarm.audit``)."""

    agent: str        #: the bench's name of the evaluator process
    alarm: str
    cycle: int
    start: float
    member: str
    kind: str
    result: str       #: written | lost
    state: str
    seq: int
    transition: bool
    t: float
    error: bool = False

    @property
    def written(self) -> bool:
        return self.result == "written"


def parse_evaluation(agent: str, line: bytes) -> Evaluation:
    e = json.loads(line)
    return Evaluation(agent, e["alarm"], int(e["cycle"]), float(e["start"]), e["member"],
                      e["kind"], e["result"], e["state"], int(e["seq"]), bool(e["transition"]),
                      float(e["t"]), bool(e.get("error")))


def written_by_cycle(evals: Iterable[Evaluation]) -> dict[int, dict[str, list[Evaluation]]]:
    """cycle -> alarm -> its written evaluations."""
    out: dict[int, dict[str, list[Evaluation]]] = defaultdict(lambda: defaultdict(list))
    for e in evals:
        if e.written:
            out[e.cycle][e.alarm].append(e)
    return out


def eval_metrics(evals: Sequence[Evaluation], cycles: Sequence[int],
                 ids: set[str]) -> dict[str, Any]:
    """Lag, throughput, gaps and duplicates of the written evaluations of ``cycles``."""
    wanted = set(cycles)
    written = [e for e in evals if e.written and e.cycle in wanted]
    lags = [e.t - e.start for e in written]
    batches: dict[tuple[str, int], list[Evaluation]] = defaultdict(list)
    for e in written:
        batches[(e.agent, e.cycle)].append(e)
    rates = []
    for batch in batches.values():
        busy = max(e.t for e in batch) - batch[0].start
        if busy > 0:
            rates.append(len(batch) / busy)
    by_cycle = written_by_cycle(written)
    return {
        "evaluations": len(written),
        "lag_p50_s": rounded(percentile(lags, 50)),
        "lag_p99_s": rounded(percentile(lags, 99)),
        "lag_max_s": rounded(max(lags, default=None)),
        "evaluations_per_s_per_evaluator": rounded(sum(rates) / len(rates), 1) if rates
        else None,
        "gaps": sum(len(ids - by_cycle[c].keys()) for c in cycles),
        "duplicates": sum(1 for c in cycles for es in by_cycle[c].values() if len(es) > 1),
        "transitions": sum(1 for e in written if e.transition),
        "query_errors": sum(1 for e in written if e.error),
    }


def failover_metrics(evals: Sequence[Evaluation], victim: str, orphans: set[str],
                     t_kill: float, c1: int, c1_start: float, ids: set[str]) -> dict[str, Any]:
    """The ``alarm_failover`` numbers (see the module docstring)."""
    first: dict[str, Evaluation] = {}
    for e in evals:
        if (e.written and e.agent != victim and e.alarm in orphans and e.t >= t_kill
                and (e.alarm not in first or e.t < first[e.alarm].t)):
            first[e.alarm] = e
    delays = [e.t - c1_start for e in first.values()]
    by_cycle = written_by_cycle(evals)
    due = (c1, c1 + 1)
    observed = (c1 - 1, *due)
    return {
        "orphans": len(orphans),
        "recovered": len(first),
        "same_cycle": sum(1 for e in first.values() if e.cycle == c1),
        "max_s": rounded(max(delays)) if delays and len(first) == len(orphans) else None,
        "p50_s": rounded(percentile(delays, 50)),
        "missed_evaluations": sum(1 for c in due for a in orphans if a not in by_cycle[c]),
        "duplicate_evaluations": sum(1 for c in observed for es in by_cycle[c].values()
                                     if len(es) > 1),
        "lost_writes": sum(1 for e in evals if e.result == "lost" and e.cycle in observed),
        "gaps": sum(len(ids - by_cycle[c].keys()) for c in due),
    }


def duplicate_deliveries(keys: Iterable[str | None]) -> int:
    """Deliveries whose key had been delivered before (keyless ones count as distinct)."""
    return sum(n - 1 for n in Counter(k for k in keys if k).values())


def written_in(evals: Iterable[Evaluation], cycle: int) -> dict[str, set[str]]:
    """agent -> the alarms it wrote in ``cycle``."""
    out: dict[str, set[str]] = defaultdict(set)
    for e in evals:
        if e.written and e.cycle == cycle:
            out[e.agent].add(e.alarm)
    return out


def complete(evals: Iterable[Evaluation], cycle: int, ids: set[str],
             agents: int | None = None) -> bool:
    """Whether every alarm of ``ids`` was written in ``cycle`` (and, given
    ``agents``, by at least that many evaluators)."""
    by_agent = written_in(evals, cycle)
    covered = set().union(*by_agent.values()) if by_agent else set()
    return covered >= ids and (agents is None or len(by_agent) >= agents)


def undelivered(evals: Iterable[Evaluation], delivered: Iterable[str | None]) -> set[str]:
    """Keys (``<alarm>:<seq>``) of the transitions recorded with actions (to
    ``ok`` or ``alarm``) that are not among the ``delivered`` keys."""
    wanted = {f"{e.alarm}:{e.seq}" for e in evals
              if e.written and e.transition and e.state in ("ok", "alarm")}
    return wanted - set(delivered)
