"""Per-publisher health as the agent reports it (pure: no I/O, no clock).

:func:`publisher_summary` turns a :class:`PublisherHealth` and a time into
the small JSON-able dict that ``/healthz`` shows and that the agent puts in
its member data (``publishers``) for ``zkpoll-status``; :func:`state` says
``ok``, ``failing`` or ``degraded``:

- a *spooled* publisher (every network publisher: its samples wait on disk)
  is ``failing`` while its latest delivery failed and ``degraded`` once it
  has been failing for ``[publisher] degraded_after`` seconds;
- a publisher *without a spool* (``file:``, ``udp://``, ...) loses the
  samples of a batch it fails, so it is ``degraded`` at once, from that
  batch until its next batch that loses nothing.

Degraded is not withdrawn (see :mod:`zkpoll.polling.withdrawal`).
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
    """``ok``, ``failing`` (spooled, for less than ``degraded_after`` s) or ``degraded``."""
    if health.failing_since is None:
        return OK
    if not health.spooled:
        return DEGRADED  # its failed batch is gone: nothing waits to be delivered
    return DEGRADED if now - health.failing_since >= degraded_after else FAILING


def publisher_summary(health: PublisherHealth, now: float,
                      degraded_after: float) -> dict[str, Any]:
    """What a monitor needs to know about one publisher, JSON-able."""
    return {
        "state": state(health, now, degraded_after),
        "spooled": health.spooled,
        "failing_for_s": None if health.failing_since is None
        else round(now - health.failing_since, 1),
        "last_success": health.last_success,
        "last_error": health.last_error,
        "backlog_samples": health.depth,
        "oldest_undelivered_age_s": None if health.oldest is None
        else round(max(0.0, now - health.oldest), 1),
        "spool_bytes": health.spool_bytes,
        "dropped": dict(health.drops),
        "lost_batches": dict(health.lost_batches),
    }


def degraded_reason(url: str, summary: Mapping[str, Any]) -> str:
    """One line for a degraded publisher (``/healthz``, zkpoll-status)."""
    text = f"publisher {url} failing for {summary.get('failing_for_s')}s"
    if summary.get("spooled") is False:
        lost = sum(summary.get("lost_batches", {}).values())
        text += f", no spool: its failed batches are lost ({lost} so far)"
    elif summary.get("backlog_samples"):
        text += (f", {summary['backlog_samples']} samples waiting (oldest "
                 f"{summary.get('oldest_undelivered_age_s')}s)")
    if summary.get("last_error"):
        text += f": {summary['last_error']}"
    return text
