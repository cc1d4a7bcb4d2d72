"""Per-publisher health as the agent reports it (pure: no I/O, no clock).

:func:`publisher_summary` turns a :class:`PublisherHealth` and a time into
the small JSON-able dict that ``/healthz`` shows and that the agent puts in
its member data (``publishers``) for ``zkpoll-status``; :func:`state` says
``ok``, ``failing`` or ``degraded`` (failing for longer than
``[publisher] degraded_after``).  Degraded is not withdrawn: the samples
wait in the spool and are delivered when the sink answers again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zkpoll.publisher.base import PublisherHealth

__all__ = ["DEGRADED", "FAILING", "OK", "degraded_reason", "publisher_summary", "state"]

OK = "ok"
FAILING = "failing"
DEGRADED = "degraded"


def state(health: PublisherHealth, now: float, degraded_after: float) -> str:
    """``ok``, ``failing`` (since less than ``degraded_after`` s) or ``degraded``."""
    if health.failing_since is None:
        return OK
    return DEGRADED if now - health.failing_since >= degraded_after else FAILING


def publisher_summary(health: PublisherHealth, now: float,
                      degraded_after: float) -> dict[str, Any]:
    """What a monitor needs to know about one publisher, JSON-able."""
    return {
        "state": state(health, now, degraded_after),
        "failing_for_s": None if health.failing_since is None
        else round(now - health.failing_since, 1),
        "last_success": health.last_success,
        "last_error": health.last_error,
        "backlog_samples": health.depth,
        "oldest_undelivered_age_s": None if health.oldest is None
        else round(max(0.0, now - health.oldest), 1),
        "spool_bytes": health.spool_bytes,
        "dropped": dict(health.drops),
    }


def degraded_reason(url: str, summary: Mapping[str, Any]) -> str:
    """One line for a degraded publisher (``/healthz``, zkpoll-status)."""
    text = f"publisher {url} failing for {summary.get('failing_for_s')}s"
    if summary.get("backlog_samples"):
        text += (f", {summary['backlog_samples']} samples waiting (oldest "
                 f"{summary.get('oldest_undelivered_age_s')}s)")
    if summary.get("last_error"):
        text += f": {summary['last_error']}"
    return text
