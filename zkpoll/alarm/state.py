"""The stored state of one alarm, and its JSON-safe form.

An :class:`AlarmState` is what the evaluator keeps per alarm in the
coordination backend (a versioned record); :meth:`AlarmState.to_dict` is
its JSON object, carrying ``"v": 1``; :meth:`AlarmState.from_dict` reads
it back and raises ValueError on anything it did not write (a corrupt or
foreign record, a newer format).  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["STATES", "STATE_VERSION", "AlarmState", "Transition"]

STATES = ("ok", "alarm", "insufficient data")
#: The ``"v"`` of :meth:`AlarmState.to_dict`.
STATE_VERSION = 1
_INITIAL = "insufficient data"


@dataclasses.dataclass(frozen=True)
class Transition:
    """One change of an alarm's state.

    ``seq`` numbers the alarm's transitions 1, 2, 3...; ``cycle`` is the
    evaluation cycle that made it and ``at`` the wall time of that
    evaluation (given by the caller).
    """

    seq: int
    previous: str
    current: str
    reason: str
    reason_data: dict[str, Any]
    cycle: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"seq": self.seq, "previous": self.previous, "current": self.current,
                "reason": self.reason, "reason_data": dict(self.reason_data),
                "cycle": self.cycle, "at": self.at}

    @classmethod
    def from_dict(cls, data: object) -> Transition:
        """Read :meth:`to_dict`'s form back; ValueError if it is not one."""
        d = _mapping(data, "transition")
        transition = cls(
            seq=_int(d, "seq", low=1), previous=_state(d, "previous"),
            current=_state(d, "current"), reason=_str(d, "reason"),
            reason_data=_reason_data(d), cycle=_int(d, "cycle", low=0),
            at=_finite(d, "at"))
        if transition.previous == transition.current:
            raise ValueError("transition: 'previous' and 'current' are the same state")
        return transition


@dataclasses.dataclass(frozen=True)
class AlarmState:
    """What is stored for an alarm between evaluations.

    ``breaches`` / ``clears`` / ``missing`` count the consecutive latest
    evaluations whose datapoint breached / did not breach / had no data (at
    most one of them is non-zero); ``seq`` is the number of the last
    transition (``last``), 0 before the first; ``cycle`` the last evaluated
    cycle (-1: never); ``notified_seq`` the highest seq whose notification
    is durably queued (only ``last`` can be pending: ``notified_seq`` is
    ``seq`` or ``seq - 1``).
    """

    state: str = _INITIAL
    breaches: int = 0
    clears: int = 0
    missing: int = 0
    seq: int = 0
    last: Transition | None = None
    cycle: int = -1
    evaluated_at: float | None = None
    owner: str = ""
    notified_seq: int = 0
    last_value: float | None = None

    @property
    def pending(self) -> Transition | None:
        """The last transition if its notification is not known to be queued."""
        return self.last if self.notified_seq < self.seq else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``"v": 1``; an infinite ``last_value`` as ``"inf"``/``"-inf"``)."""
        return {"v": STATE_VERSION, "state": self.state, "breaches": self.breaches,
                "clears": self.clears, "missing": self.missing, "seq": self.seq,
                "last": None if self.last is None else self.last.to_dict(),
                "cycle": self.cycle, "evaluated_at": self.evaluated_at, "owner": self.owner,
                "notified_seq": self.notified_seq, "last_value": json_float(self.last_value)}

    @classmethod
    def from_dict(cls, data: object) -> AlarmState:
        """Read :meth:`to_dict`'s form back; ValueError on anything else.

        Keys this version does not know are ignored; a missing optional key
        takes its default; ``v`` and ``state`` are required.
        """
        d = _mapping(data, "alarm state")
        version = d.get("v")
        if version != STATE_VERSION or isinstance(version, bool):
            raise ValueError(f"alarm state: unsupported format version {version!r} "
                             f"(expected {STATE_VERSION})")
        if "state" not in d:
            raise ValueError("alarm state: 'state' is missing")
        last = d.get("last")
        state = cls(
            state=_state(d, "state"), breaches=_int(d, "breaches", 0), clears=_int(d, "clears", 0),
            missing=_int(d, "missing", 0), seq=_int(d, "seq", 0),
            last=None if last is None else Transition.from_dict(last),
            cycle=_int(d, "cycle", -1, low=-1),
            evaluated_at=None if d.get("evaluated_at") is None else _finite(d, "evaluated_at"),
            owner=_str(d, "owner", ""), notified_seq=_int(d, "notified_seq", 0),
            last_value=_value(d.get("last_value")))
        state.check()
        return state

    def check(self) -> None:
        """Raise ValueError unless the fields agree with each other."""
        if sum(1 for n in (self.breaches, self.clears, self.missing) if n) > 1:
            raise ValueError("alarm state: more than one of breaches, clears, missing is set")
        if self.seq == 0 and (self.last is not None or self.state != _INITIAL):
            raise ValueError(f"alarm state: no transition (seq 0) but state {self.state!r} "
                             "or a last transition")
        if self.seq > 0:
            if self.last is None or self.last.seq != self.seq:
                raise ValueError(f"alarm state: seq {self.seq} but the last transition "
                                 f"is {None if self.last is None else self.last.seq}")
            if self.last.current != self.state:
                raise ValueError("alarm state: the last transition does not end in the state")
            if self.last.cycle > self.cycle:
                raise ValueError("alarm state: the last transition is newer than the cycle")
        if self.notified_seq not in (self.seq, self.seq - 1) or self.notified_seq < 0:
            raise ValueError(f"alarm state: notified_seq {self.notified_seq} is neither seq "
                             f"{self.seq} nor seq - 1")


def json_float(value: float | None) -> float | str | None:
    """``value`` in a JSON-safe form: an infinity as ``"inf"`` / ``"-inf"``."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def _value(raw: object) -> float | None:
    if raw is None:
        return None
    if raw in ("inf", "-inf"):
        return float(str(raw))
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ValueError(f"alarm state: 'last_value' must be a number, got {raw!r}")
    return float(raw)


def _mapping(data: object, what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    raise ValueError(f"{what}: expected a JSON object, got {type(data).__name__}")


def _int(d: Mapping[str, Any], key: str, default: int | None = None, *, low: int = 0) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"'{key}' must be an integer >= {low}, got {value!r}")
    return value


def _finite(d: Mapping[str, Any], key: str) -> float:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"'{key}' must be a finite number, got {value!r}")
    return float(value)


def _str(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if isinstance(value, str):
        return value
    raise ValueError(f"'{key}' must be a string, got {value!r}")


def _state(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    if value not in STATES:
        raise ValueError(f"'{key}' must be one of {', '.join(STATES)}, got {value!r}")
    return value


def _reason_data(d: Mapping[str, Any]) -> dict[str, Any]:
    value = d.get("reason_data", {})
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"'reason_data' must be a JSON object, got {value!r}")
    return dict(value)
