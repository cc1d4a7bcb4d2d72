"""The claims record a member writes every cycle: its shape and how it is read.

``{"cycles": {source: newest cycle claimed}, "completed": {source: cycle},
"owned": {source: count}, "fenced": reason or None, "report": {...},
"protocol": PROTOCOL}`` (docs/design.md, section 3), plus ``"clock"`` (the
offset measured) and ``"handoffs"`` ({source: {"cycle", "out": {key: to},
"in": {key: from}, "gave_up": {key: reason}}}, the newest cycle with
handoffs).  Pure helpers.
"""

from __future__ import annotations

from typing import Any

from zkpoll.ownership.members import PROTOCOL

__all__ = ["claimed_cycle", "copy_record", "empty_record"]


def claimed_cycle(record: Any, source: str) -> int:
    """The newest cycle of ``source`` a claims record names (-1: none)."""
    cycles = record.get("cycles") if isinstance(record, dict) else None
    value = cycles.get(source) if isinstance(cycles, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def empty_record() -> dict[str, Any]:
    """The record of a member that has claimed nothing yet."""
    return {"cycles": {}, "completed": {}, "owned": {}, "fenced": None, "report": {},
            "protocol": PROTOCOL}


def copy_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy to hand to a writer (the state keeps changing its own): nested
    mappings are copied too, lists and scalars are never changed in place."""
    return {k: copy_record(v) if isinstance(v, dict) else v for k, v in record.items()}
