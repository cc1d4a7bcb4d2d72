"""The member-data schema: what a member publishes in its group, defined once.

A member's data is a JSON object (a ZooKeeper member znode's data, plus
the fields its name carries; a Redis or Memcached member key's value).
Other clients may write anything there, so it is validated where it is
read (:func:`decode_member_data`): undecodable data is empty, a known field
of the wrong type is dropped (its readers then use the default, as they
always did), unknown fields are kept.  :class:`MemberData` is the typed
view of one member's data (``Member.fields``); its class attributes name
the keys, so no module spells a key as a string::

    host, pid, version, layout, protocol   who publishes (set by every backend)
    weight, active_at, leave_at            what rings are built from
    withdrawn                              reason of a health withdrawal
    namespace, role, meters, intervals     what the agent polls or evaluates
    fenced, polling_cycle, last_completed_cycle, owned, publishers
                                           zkpoll-status only: merged into the
                                           member's data from its claims record
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = ["MemberData", "decode_member_data", "decode_object"]

LOG = logging.getLogger(__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    return value is None or (_is_number(value) and math.isfinite(value))


def _is_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_int(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _is_weight(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _is_mapping(value: Any) -> bool:
    return value is None or isinstance(value, Mapping)


def _meters(value: Any) -> Mapping[str, tuple[str, ...]]:
    """Source -> meter names; a source whose value is not a list polls nothing."""
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(source): tuple(n for n in names if isinstance(n, str))
                             if isinstance(names, list) else ()
                             for source, names in value.items()})


def _intervals(value: Any) -> Mapping[str, float]:
    """Source -> interval; entries that are not finite numbers are left out."""
    if not isinstance(value, Mapping):
        return MappingProxyType({})
    return MappingProxyType({str(source): float(v) for source, v in value.items()
                             if _is_number(v) and math.isfinite(v)})


@dataclass(frozen=True, slots=True)
class MemberData:
    """The typed view of a member's published data (module docstring).

    Build it with :meth:`parse`; a missing or malformed field takes its
    default.  The upper-case class attributes are the JSON keys.
    """

    HOST: ClassVar[str] = "host"
    PID: ClassVar[str] = "pid"
    VERSION: ClassVar[str] = "version"
    LAYOUT: ClassVar[str] = "layout"
    PROTOCOL: ClassVar[str] = "protocol"
    WEIGHT: ClassVar[str] = "weight"
    ACTIVE_AT: ClassVar[str] = "active_at"
    LEAVE_AT: ClassVar[str] = "leave_at"
    WITHDRAWN: ClassVar[str] = "withdrawn"
    NAMESPACE: ClassVar[str] = "namespace"
    ROLE: ClassVar[str] = "role"
    METERS: ClassVar[str] = "meters"
    INTERVALS: ClassVar[str] = "intervals"
    FENCED: ClassVar[str] = "fenced"
    POLLING_CYCLE: ClassVar[str] = "polling_cycle"
    LAST_COMPLETED_CYCLE: ClassVar[str] = "last_completed_cycle"
    OWNED: ClassVar[str] = "owned"
    PUBLISHERS: ClassVar[str] = "publishers"
    #: ``{"offset", "error", "bound", "watch_delay"}`` in seconds (claims record)
    CLOCK: ClassVar[str] = "clock"
    #: the newest cycle's handoffs per source (claims record; see ownership.record)
    HANDOFFS: ClassVar[str] = "handoffs"

    host: str | None = None
    pid: int | None = None
    version: str | None = None
    layout: int | None = None
    #: 2 = stable member data and claims records (``base.PROTOCOL``); a
    #: member that publishes none is of protocol 1
    protocol: int = 1
    weight: float = 1.0
    active_at: float | None = None
    leave_at: float | None = None
    withdrawn: str | None = None
    namespace: str | None = None
    role: str | None = None
    meters: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    intervals: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    fenced: str | None = None

    #: key -> True when a value is acceptable for it (None: "not set")
    CHECKS: ClassVar[Mapping[str, Callable[[Any], bool]]] = MappingProxyType({
        "host": _is_str, "pid": _is_int, "version": _is_str, "layout": _is_int,
        "protocol": _is_int, "weight": _is_weight, "active_at": _is_time,
        "leave_at": _is_time, "withdrawn": _is_str, "namespace": _is_str, "role": _is_str,
        "meters": _is_mapping, "intervals": _is_mapping, "fenced": _is_str,
        "polling_cycle": _is_mapping, "last_completed_cycle": _is_mapping,
        "owned": _is_mapping, "publishers": _is_mapping, "clock": _is_mapping,
        "handoffs": _is_mapping,
    })

    @classmethod
    def valid(cls, key: str, value: Any) -> bool:
        """True when ``value`` is acceptable for ``key`` (any value of an unknown key)."""
        check = cls.CHECKS.get(key)
        return check is None or check(value)

    @classmethod
    def value(cls, data: Mapping[str, Any], key: str) -> Any:
        """The value of the known ``key`` in ``data``, or None when it is missing or
        malformed (one field, without building the whole typed view)."""
        value = data.get(key)
        return value if cls.CHECKS[key](value) else None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> MemberData:
        """The typed view of ``data``; malformed fields take their defaults."""
        def get(key: str) -> Any:
            return cls.value(data, key)

        protocol, weight = get(cls.PROTOCOL), get(cls.WEIGHT)
        withdrawn = get(cls.WITHDRAWN)
        return cls(
            host=get(cls.HOST), pid=get(cls.PID), version=get(cls.VERSION),
            layout=get(cls.LAYOUT), protocol=1 if protocol is None else protocol,
            weight=1.0 if weight is None else float(weight),
            active_at=_float(get(cls.ACTIVE_AT)), leave_at=_float(get(cls.LEAVE_AT)),
            withdrawn=withdrawn or None, namespace=get(cls.NAMESPACE), role=get(cls.ROLE),
            meters=_meters(data.get(cls.METERS)), intervals=_intervals(data.get(cls.INTERVALS)),
            fenced=get(cls.FENCED) or None)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def decode_object(raw: bytes | None, where: str) -> dict[str, Any]:
    """The JSON object stored at ``where`` (``{}`` when there is none, or when
    it is undecodable or not an object, with a warning for the undecodable)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        LOG.warning("member %s has undecodable data; treating it as empty", where)
        return {}
    return data if isinstance(data, dict) else {}


def decode_member_data(raw: bytes | None, where: str) -> dict[str, Any]:
    """A member's data as read from the backend at ``where``, validated against
    :class:`MemberData`: known fields of the wrong type are dropped (logged)."""
    data = decode_object(raw, where)
    checks = _CHECKS  # every peer reads every member's data: keep this loop tight
    bad = [key for key, value in data.items()
           if (check := checks.get(key)) is not None and not check(value)]
    if bad:
        LOG.debug("member %s: ignoring malformed field(s) %s", where, ", ".join(sorted(bad)))
        for key in bad:
            del data[key]
    return data


_CHECKS = dict(MemberData.CHECKS)
