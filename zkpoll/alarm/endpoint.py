"""The evaluator's HTTP endpoint: ``/metrics``, ``/alarms``, ``/healthz``.

Off unless ``[api] bind`` is set (no authentication: keep it on loopback or
a management network).

* ``/metrics``: Prometheus exposition: evaluations by outcome, transitions
  by new state, notifications by URL and outcome, evaluation lag (seconds
  from a cycle's start until its evaluations were written), owned alarms.
* ``/alarms``: JSON, per alarm this evaluator evaluated last: state,
  transition sequence, last evaluation.
* ``/healthz``: 200 while the evaluator evaluates its share, 503 with the
  reason while it is fenced or stopping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from zkpoll.alarm.evaluator import CycleReport, Evaluator
from zkpoll.endpoint.server import ApiServer, Route, json_body
from zkpoll.ownership import Partition

__all__ = ["EvaluatorView", "alarm_api", "alarm_routes"]


class EvaluatorView(Protocol):
    """What the endpoint reads of an evaluator agent."""

    group: str
    partition: Partition | None
    evaluator: Evaluator | None
    notifiers: Any  #: zkpoll.alarm.notify.Notifiers
    last_reports: Mapping[str, CycleReport]

    @property
    def stopping(self) -> bool: ...


def alarm_api(agent: EvaluatorView, bind: str) -> ApiServer:
    """The evaluator's endpoint on ``bind`` (not started)."""
    return ApiServer(None, bind, routes=alarm_routes(agent))


def alarm_routes(agent: EvaluatorView) -> dict[str, Route]:
    """The evaluator's paths."""
    def metrics(query: str) -> tuple[int, bytes, str]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(agent))
        return 200, generate_latest(registry), CONTENT_TYPE_LATEST

    return {"/metrics": metrics,
            "/alarms": lambda query: json_body(200, alarms_report(agent)),
            "/healthz": lambda query: json_body(*health(agent))}


def alarms_report(agent: EvaluatorView) -> dict[str, Any]:
    """The states this evaluator wrote last, by alarm id."""
    evaluator = agent.evaluator
    latest = dict(evaluator.latest) if evaluator else {}
    return {"group": agent.group,
            "alarms": {alarm_id: {"state": state.state, "seq": state.seq,
                                  "cycle": state.cycle, "cycle_start": start,
                                  "evaluated_at": state.evaluated_at}
                       for alarm_id, (state, start) in sorted(latest.items())}}


def health(agent: EvaluatorView) -> tuple[int, dict[str, Any]]:
    """(status, body) of ``/healthz``."""
    if agent.stopping:
        return 503, {"status": "stopping"}
    partition = agent.partition
    reason = partition.fence_reason() if partition is not None else None
    if reason:
        return 503, {"status": "fenced", "reason": reason}
    return 200, {"status": "ok", "group": agent.group}


class _Collector:
    def __init__(self, agent: EvaluatorView) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        evaluator = self.agent.evaluator
        if evaluator is not None:
            stats = evaluator.stats
            evaluations = CounterMetricFamily(
                "zkpoll_alarm_evaluations", "Alarm evaluations by outcome (the new state, "
                "or lost / already_evaluated / backend_error / unreadable_state).",
                labels=["outcome"])
            transitions = CounterMetricFamily("zkpoll_alarm_transitions",
                                              "State transitions recorded, by new state.",
                                              labels=["state"])
            with stats.lock:
                for outcome, count in sorted(stats.evaluations.items()):
                    evaluations.add_metric([outcome], count)
                for state, count in sorted(stats.transitions.items()):
                    transitions.add_metric([state], count)
            yield evaluations
            yield transitions
            buckets, total = stats.lag_histogram()
            lag = HistogramMetricFamily(
                "zkpoll_alarm_evaluation_lag_seconds",
                "Seconds from a cycle's start until its evaluations were written.")
            lag.add_metric([], buckets, total)
            yield lag
        owned = GaugeMetricFamily("zkpoll_alarm_owned", "Alarms this evaluator owned in "
                                  "its latest cycle, by interval source.", labels=["source"])
        for source, report in sorted(self.agent.last_reports.items()):
            owned.add_metric([source], report.owned)
        yield owned
        notifiers = self.agent.notifiers
        if notifiers is not None:
            yield from _notifier_metrics(notifiers.stats())


def _notifier_metrics(stats: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    counters = {
        "delivered": "Notifications delivered.",
        "retried": "Delivery attempts that failed and were retried.",
        "rejected": "Notifications the receiver refused for good (4xx), dropped.",
        "dropped": "Notifications dropped by the spool bounds.",
    }
    for name, text in counters.items():
        family = CounterMetricFamily(f"zkpoll_alarm_notifications_{name}", text,
                                     labels=["url"])
        for url, values in sorted(stats.items()):
            family.add_metric([url], float(values.get(name, 0)))
        yield family
    queued = GaugeMetricFamily("zkpoll_alarm_notifications_queued",
                               "Notifications waiting in the spool.", labels=["url"])
    for url, values in sorted(stats.items()):
        queued.add_metric([url], float(values.get("queued", 0)))
    yield queued
