"""What ``zkpoll-status`` should say about publishing, from the member data (pure).

Each partitioned agent reports ``publishers`` in its claims record (see
:meth:`zkpoll.polling.withdrawal.Withdrawal.report_publishers`; ``zkpoll-status``
merges the record into the member data it reads): per publisher
URL (credentials redacted) its ``state`` (``ok``, ``failing``,
``degraded``), ``failing_for_s``, ``backlog_samples``,
``oldest_undelivered_age_s``, ``last_success``, ``last_error``,
``dropped`` and ``lost_batches`` by reason, and ``spooled``.
:func:`publisher_findings` turns the members of a group into findings; a
degraded publisher is a WARNING (the agent polls; a spooled publisher's
samples wait in its spool, one without a spool lost its failed batches), a
failing one is informational.
:func:`zkpoll.status.build_report` reports the degraded ones as WARNINGs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zkpoll.coordination.member_data import MemberData

__all__ = ["PublisherFinding", "publisher_findings"]


@dataclass(frozen=True)
class PublisherFinding:
    """One publisher of one member that is not ``ok``."""

    member: str
    url: str
    state: str        #: ``failing`` or ``degraded``
    warning: bool     #: True for ``degraded`` (a monitoring WARNING)
    message: str


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def publisher_findings(members: Iterable[tuple[str, Mapping[str, Any]]]) -> list[PublisherFinding]:
    """Findings for ``(member id, member data)`` pairs; data written by a foreign
    or older client (no or malformed ``publishers``) yields nothing."""
    found = []
    for member, data in members:
        publishers = data.get(MemberData.PUBLISHERS) if isinstance(data, Mapping) else None
        if not isinstance(publishers, Mapping):
            continue
        for url, summary in sorted(publishers.items()):
            if not isinstance(summary, Mapping) or summary.get("state") not in (
                    "failing", "degraded"):
                continue
            state = str(summary["state"])
            text = f"publisher {url} {state}"
            failing_for = _number(summary.get("failing_for_s"))
            if failing_for is not None:
                text += f" for {failing_for:.0f}s"
            if summary.get("spooled") is False:
                text += " (no spool: its failed batches are lost)"
            backlog = _number(summary.get("backlog_samples"))
            if backlog:
                text += f", {backlog:.0f} samples waiting in its spool"
                oldest = _number(summary.get("oldest_undelivered_age_s"))
                if oldest is not None:
                    text += f" (oldest {oldest:.0f}s)"
            dropped = summary.get("dropped")
            if isinstance(dropped, Mapping) and dropped:
                text += ", dropped " + ", ".join(f"{n} {reason}" for reason, n in
                                                 sorted(dropped.items()))
            error = summary.get("last_error")
            if isinstance(error, str) and error:
                text += f": {error[:200]}"
            found.append(PublisherFinding(member, str(url), state, state == "degraded", text))
    return found
