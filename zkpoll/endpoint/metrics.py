"""The agent's self-metrics (Prometheus), ownership report and health problems.

Everything is read from the agent's state when asked; nothing here is on
the polling path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zkpoll.coordination import SessionState
from zkpoll.endpoint.view import AgentView
from zkpoll.ownership import ring_epoch
from zkpoll.ownership.clock_rule import clock_bound
from zkpoll.publisher.health import DEGRADED, degraded_reason
from zkpoll.publisher.health import state as publisher_state
from zkpoll.publisher.spool_options import degraded_after

__all__ = ["AgentCollector", "degraded", "health_report", "ownership", "problems", "render"]


class AgentCollector:
    """A prometheus_client collector over one agent's state."""

    def __init__(self, agent: AgentView) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        yield from self._sources(agent)
        yield from self._publishers(agent)
        yield from self._membership(agent)

    @staticmethod
    def _sources(agent: AgentView) -> Iterator[Metric]:
        counters = {
            "cycles": CounterMetricFamily("zkpoll_cycles", "Cycles run.", labels=["source"]),
            "samples": CounterMetricFamily("zkpoll_samples_polled",
                                           "Samples polled (catch-up included).",
                                           labels=["source"]),
            "catch_up_samples": CounterMetricFamily(
                "zkpoll_catch_up_samples", "Samples polled for resources inherited from a "
                "member that vanished mid-cycle.", labels=["source"]),
            "errors": CounterMetricFamily("zkpoll_pollster_errors",
                                          "Pollster and discovery errors.", labels=["source"]),
            "timeouts": CounterMetricFamily("zkpoll_pollster_timeouts",
                                            "Pollsters that missed their deadline.",
                                            labels=["source"]),
            "handoffs_out": CounterMetricFamily(
                "zkpoll_handoffs_out", "Resources this agent could not reach, handed to "
                "another member in the same cycle.", labels=["source"]),
            "handoffs_in": CounterMetricFamily(
                "zkpoll_handoffs_in", "Resources another member could not reach, handed to "
                "this agent.", labels=["source"]),
            "unreachable_everywhere": CounterMetricFamily(
                "zkpoll_unreachable_everywhere", "Resources no member tried could reach "
                "(their unreachable sample published once).", labels=["source"]),
        }
        duration = GaugeMetricFamily("zkpoll_cycle_duration_seconds",
                                     "Duration of the latest cycle.", labels=["source"])
        owned = GaugeMetricFamily("zkpoll_owned_resources",
                                  "Resources this agent owned in its latest cycle.",
                                  labels=["source"])
        completed = GaugeMetricFamily("zkpoll_last_completed_cycle",
                                      "Index of the latest cycle completed unfenced.",
                                      labels=["source"])
        for source, totals in sorted(agent.health.totals.items()):
            for name, family in counters.items():
                value = getattr(totals, name)
                if name == "samples":
                    value += totals.catch_up_samples
                family.add_metric([source], value)
            if totals.last is not None:
                duration.add_metric([source], totals.last.duration)
                owned.add_metric([source], totals.last.owned)
            if totals.last_completed is not None:
                completed.add_metric([source], totals.last_completed)
        yield from counters.values()
        yield from (duration, owned, completed)
        yield AgentCollector._discovery_failures(agent)

    @staticmethod
    def _discovery_failures(agent: AgentView) -> Metric:
        family = CounterMetricFamily(
            "zkpoll_sd_refresh_failures", "Failed service-discovery refreshes (the last good "
            "list is kept).", labels=["source", "mechanism"])
        plugins = getattr(agent, "plugins", None)
        totals: dict[tuple[str, str], int] = {}
        for discovery in getattr(plugins, "discoveries", {}).values():
            for key, count in discovery.refresh_failures().items():
                totals[key] = totals.get(key, 0) + count
        for (source, mechanism), count in sorted(totals.items()):
            family.add_metric([source, mechanism], count)
        return family

    @staticmethod
    def _publishers(agent: AgentView) -> Iterator[Metric]:
        families = {
            "published": CounterMetricFamily("zkpoll_samples_published",
                                             "Samples delivered.", labels=["publisher"]),
            "dropped": CounterMetricFamily("zkpoll_samples_dropped",
                                           "Samples lost by a publisher.", labels=["publisher"]),
            "errors": CounterMetricFamily("zkpoll_publisher_errors",
                                          "Failed delivery attempts.", labels=["publisher"]),
            "queue_depth": GaugeMetricFamily("zkpoll_publisher_queue_depth",
                                             "Samples queued, not yet delivered or dropped.",
                                             labels=["publisher"]),
        }
        for publisher in agent.publishers.values():
            stats = publisher.stats
            for name, family in families.items():
                family.add_metric([publisher.redacted_url], stats[name])
        yield from families.values()
        yield from AgentCollector._publisher_health(agent)

    @staticmethod
    def _publisher_health(agent: AgentView) -> Iterator[Metric]:
        label = ["publisher"]
        depth = GaugeMetricFamily("zkpoll_publisher_backlog_samples",
                                  "Samples accepted (in the spool) and not yet delivered.",
                                  labels=label)
        size = GaugeMetricFamily("zkpoll_publisher_spool_bytes",
                                 "Bytes of undelivered samples in the publisher's spool.",
                                 labels=label)
        oldest = GaugeMetricFamily("zkpoll_publisher_oldest_undelivered_age_seconds",
                                   "Age of the oldest undelivered sample (from its poll "
                                   "time); 0 when none waits.", labels=label)
        success = GaugeMetricFamily("zkpoll_publisher_last_success_timestamp_seconds",
                                    "When a delivery last worked (Unix time).", labels=label)
        failing = GaugeMetricFamily("zkpoll_publisher_failing_seconds",
                                    "How long the publisher has been failing (0: its "
                                    "latest delivery worked).", labels=label)
        degraded_family = GaugeMetricFamily(
            "zkpoll_publisher_degraded", "1 while degraded: a spooled publisher failing for "
            "longer than [publisher] degraded_after, or one without a spool whose latest "
            "batch lost samples.", labels=label)
        drops = CounterMetricFamily("zkpoll_publisher_dropped_samples",
                                    "Samples a publisher lost, by reason (max_bytes, max_age, "
                                    "rejected, spool_write, unencodable, corrupt, closed, "
                                    "write_failed, send_failed, max_datagram, failed).",
                                    labels=["publisher", "reason"])
        lost = CounterMetricFamily("zkpoll_publisher_lost_batches",
                                   "Failed writes or sends that lost samples, by reason "
                                   "(write_failed, send_failed, spool_write, rejected, "
                                   "failed); each makes a publisher without a spool "
                                   "degraded at once.", labels=["publisher", "reason"])
        now = time.time()
        limit = degraded_after(agent.conf)
        for publisher in agent.publishers.values():
            url, health = publisher.redacted_url, publisher.health
            depth.add_metric([url], health.depth)
            if health.spool_bytes is not None:
                size.add_metric([url], health.spool_bytes)
            oldest.add_metric([url], 0.0 if health.oldest is None
                              else max(0.0, now - health.oldest))
            if health.last_success is not None:
                success.add_metric([url], health.last_success)
            since = health.failing_since
            failing.add_metric([url], 0.0 if since is None else now - since)
            degraded_family.add_metric(
                [url], 1.0 if publisher_state(health, now, limit) == DEGRADED else 0.0)
            for reason, count in sorted(health.drops.items()):
                drops.add_metric([url, reason], count)
            for reason, count in sorted(health.lost_batches.items()):
                lost.add_metric([url, reason], count)
        yield from (depth, size, oldest, success, failing, degraded_family, drops, lost)

    @staticmethod
    def _membership(agent: AgentView) -> Iterator[Metric]:
        state = GaugeMetricFamily("zkpoll_coordinator_state",
                                  "1 for the coordinator's current session state.",
                                  labels=["state"])
        current = agent.coordinator.state if agent.coordinator else SessionState.STOPPED
        for value in SessionState:
            state.add_metric([value.value], 1.0 if value is current else 0.0)
        members = GaugeMetricFamily("zkpoll_group_members", "Members in the group.",
                                    labels=["group"])
        active = GaugeMetricFamily("zkpoll_ring_members",
                                   "Members in the ring in force now.", labels=["group"])
        epoch = GaugeMetricFamily("zkpoll_ring_info", "The ring in force now (its epoch).",
                                  labels=["group", "epoch"])
        fenced = GaugeMetricFamily("zkpoll_fenced", "1 while fenced in the group.",
                                   labels=["group"])
        fenced_groups = agent.ownership.fenced_groups()
        now = time.time()
        for partition in agent.partitions.values():
            membership = partition.membership
            members.add_metric([partition.group], len(membership.members))
            active.add_metric([partition.group], len(partition.ring_at(now)))
            epoch.add_metric([partition.group, ring_epoch(membership, now)], 1.0)
            fenced.add_metric([partition.group], 1.0 if partition.group in fenced_groups else 0)
        withdrawn = GaugeMetricFamily("zkpoll_withdrawn",
                                      "1 while withdrawn for health reasons.")
        withdrawn.add_metric([], 1.0 if agent.health.withdrawn else 0.0)
        degraded_now = GaugeMetricFamily(
            "zkpoll_degraded", "1 while a publisher is degraded (zkpoll_publisher_degraded); "
            "the agent keeps polling.")
        degraded_now.add_metric([], 1.0 if degraded(agent) else 0.0)
        yield from (state, members, active, epoch, fenced, withdrawn, degraded_now)
        yield from AgentCollector._clock(agent)

    @staticmethod
    def _clock(agent: AgentView) -> Iterator[Metric]:
        coordinator = agent.coordinator
        clock = coordinator.clock() if coordinator else None
        if coordinator is None or clock is None:
            return
        offset = GaugeMetricFamily(
            "zkpoll_clock_offset_seconds", "This agent's wall clock minus the coordination "
            "backend's (measured; positive: ahead).")
        offset.add_metric([], clock.offset)
        error = GaugeMetricFamily("zkpoll_clock_offset_error_seconds",
                                  "Half-width of the clock offset's error bar.")
        error.add_metric([], clock.error)
        bound = GaugeMetricFamily(
            "zkpoll_clock_bound_seconds", "Largest |offset| + error at which the agent "
            "polls partitioned work: (settle_time - watch delay) / 2.", labels=["group"])
        for partition in agent.partitions.values():
            bound.add_metric([partition.group],
                             clock_bound(partition.settle_time, coordinator.watch_delay()))
        yield from (offset, error, bound)


def render(agent: AgentView) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def ownership(agent: AgentView) -> dict[str, Any]:
    """What this agent owns per source in its latest cycle."""
    sources = {}
    for name, stats in sorted(agent.last_stats.items()):
        sources[name] = {"cycle": stats.index, "cycle_start": stats.start,
                         "fenced": stats.fenced, "resources": sorted(stats.owned_keys)}
    return {"member_id": agent.coordinator.member_id if agent.coordinator else None,
            "groups": [p.group for p in agent.partitions.values()], "sources": sources}


def problems(agent: AgentView) -> list[str]:
    """Reasons this agent is not doing its share now (empty when healthy)."""
    found = [f"fenced in {group}: {reason}"
             for group, reason in agent.ownership.fenced_groups().items()]
    if agent.health.withdrawn:
        found.append(f"withdrawn: {agent.health.withdrawn}")
    if agent.stopping:
        found.append("stopping")
    return found


def degraded(agent: AgentView) -> list[str]:
    """Why this agent is degraded: spooled publishers failing for longer than
    ``[publisher] degraded_after``, publishers without a spool whose latest batch
    lost samples (empty when none)."""
    found = agent.health.degraded(time.time(), degraded_after(agent.conf))
    return [degraded_reason(url, summary) for url, summary in found.items()]


def health_report(agent: AgentView) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``/healthz``.

    503 while the agent does not poll its share (fenced, withdrawn,
    stopping); otherwise 200, with ``status`` ``degraded`` while a publisher
    is degraded (:func:`zkpoll.publisher.health.state`) and ``ok`` else.
    ``publishers`` holds each publisher's summary.
    """
    found = problems(agent)
    slow = degraded(agent)
    report = agent.health.publishers_report(time.time(), degraded_after(agent.conf))
    status = "unhealthy" if found else DEGRADED if slow else "ok"
    return (503 if found else 200,
            {"status": status, "problems": found, "degraded": slow, "publishers": report})
