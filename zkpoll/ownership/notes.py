"""Text helpers of the ownership log lines (pure)."""

from __future__ import annotations

import time

from zkpoll.coordination.ring import HashRing

__all__ = ["clock_text", "ring_change", "some_ids"]


def ring_change(source: str, old: HashRing, new: HashRing) -> str:
    """One line naming who joined and who left a source's ring."""
    came = sorted(set(new.members) - set(old.members))
    went = sorted(set(old.members) - set(new.members))
    return (f"ring changed for source {source}: {len(new)} member(s); joined: "
            f"{', '.join(came) or '-'}; left: {', '.join(went) or '-'}")


def some_ids(ids: set[str], shown: int = 5) -> str:
    """At most ``shown`` ids of a set, sorted (a join storm must not log N ids N times)."""
    first = sorted(ids)[:shown]
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return (", ".join(first) + more) or "-"


def clock_text(t: float) -> str:
    """``HH:MM:SS.mmm`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
