"""One SNMP conversation with a device: scalars by GET, table columns by GETBULK.

:meth:`SnmpClient.fetch` reads a :class:`Plan` (the scalar OIDs and table
columns every meter of a source needs) in as few round trips as it can:
one GET per 40 scalars, then GETBULK requests that walk *all* the columns
at once (``max_repetitions`` rows of every column per round trip) until
each column has left its subtree.  A device with 16 scalars and two
tables of under 25 rows costs two round trips.

It runs on Net-SNMP through ``ezsnmp``, which releases the GIL while it
waits, so threads poll many devices at once (why not pysnmp: README.md,
"Why Net-SNMP").  Failures are :class:`SnmpFailure` with a ``kind``:
``no_answer`` (nothing came back: the device is down, unreachable, or it
ignores us, e.g. a wrong community or privacy password), ``auth`` (the
agent refused our SNMPv3 user or key) or ``error``.  Messages hold no
secret.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zkpoll.exceptions import PluginError, PluginOptOut
from zkpoll_snmp.device import Device

try:
    import ezsnmp
except ImportError as _exc:  # pragma: no cover - a dependency of the distribution
    ezsnmp = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

__all__ = ["GET_CHUNK", "Plan", "SnmpClient", "SnmpFailure", "Values", "require_ezsnmp"]

#: Scalars asked for in one GET.
GET_CHUNK = 40
#: Varbind types that mean "no value here".
_ABSENT = frozenset({"NOSUCHOBJECT", "NOSUCHINSTANCE"})
_END = "ENDOFMIBVIEW"
_AUTH_ERRORS = ("authentication failure", "unknown user name", "unsupported security level",
                "decryption error", "unknown security", "wrong digest", "not in time window")
#: Cached sessions (one per device and credentials).
_MAX_SESSIONS = 8192

#: Full numeric OID (no leading dot) -> (SNMP type, value as Net-SNMP prints it).
Values = dict[str, tuple[str, str]]


class SnmpFailure(PluginError):
    """A device gave no usable answer; ``kind`` is no_answer, auth or error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Plan:
    """What to read from a device: scalar instances and table columns."""

    scalars: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    @classmethod
    def union(cls, plans: Iterable[Plan]) -> Plan:
        scalars: dict[str, None] = {}
        columns: dict[str, None] = {}
        for plan in plans:
            scalars.update(dict.fromkeys(plan.scalars))
            columns.update(dict.fromkeys(plan.columns))
        return cls(tuple(scalars), tuple(columns))


def require_ezsnmp() -> None:
    """Raise PluginOptOut when Net-SNMP's bindings cannot be imported."""
    if _IMPORT_ERROR is not None:
        raise PluginOptOut(f"ezsnmp (Net-SNMP bindings) is not importable: {_IMPORT_ERROR}")


def _full_oid(result: Any) -> str:
    oid = str(result.oid).lstrip(".")
    index = str(result.index or "")
    return f"{oid}.{index}" if index else oid


class SnmpClient:
    """Fetches :class:`Plan` s from devices; thread-safe, one request per device at a time."""

    def __init__(self, timeout: float, retries: int, max_repetitions: int) -> None:
        require_ezsnmp()
        self.timeout = timeout
        self.retries = retries
        self.max_repetitions = max_repetitions
        self._lock = threading.Lock()
        self._sessions: OrderedDict[tuple[str, Any], tuple[Any, threading.Lock]] = OrderedDict()

    @property
    def worst_case(self) -> float:
        """Seconds one unanswered round trip costs."""
        return self.timeout * (self.retries + 1)

    def _session(self, device: Device) -> tuple[Any, threading.Lock]:
        key = (device.address, device.credentials)
        with self._lock:
            found = self._sessions.get(key)
            if found is not None:
                self._sessions.move_to_end(key)
                return found
        session = ezsnmp.Session(
            hostname=device.host, port_number=device.port, timeout=self.timeout,
            retries=self.retries, print_oids_numerically=True,
            print_timeticks_numerically=True, set_max_repeaters_to_num=self.max_repetitions,
            **device.credentials.session_options())
        with self._lock:
            found = self._sessions.setdefault(key, (session, threading.Lock()))
            while len(self._sessions) > _MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return found

    def fetch(self, device: Device, plan: Plan) -> Values:
        """Every value of ``plan`` the device has; :class:`SnmpFailure` when it fails."""
        session, lock = self._session(device)
        values: Values = {}
        with lock:
            try:
                for start in range(0, len(plan.scalars), GET_CHUNK):
                    for result in session.get(list(plan.scalars[start:start + GET_CHUNK])):
                        if result.type not in _ABSENT:
                            values[_full_oid(result)] = (result.type, result.value)
                self._walk(session, plan.columns, values)
            except SnmpFailure:
                raise
            except Exception as exc:  # noqa: BLE001 - classified, never a traceback
                raise _failure(device, exc) from None
        return values

    def _walk(self, session: Any, columns: Sequence[str], values: Values) -> None:
        """Walk ``columns`` together with GETBULK until each has left its subtree."""
        cursor = {column: column for column in columns}  # column -> last OID seen
        while cursor:
            asked = list(cursor)
            results = session.bulk_get([cursor[c] for c in asked])
            progressed: dict[str, str] = {}
            finished: set[str] = set()
            for position, result in enumerate(results):
                column = asked[position % len(asked)]
                if column in finished:
                    continue
                oid = _full_oid(result)
                if result.type == _END or not oid.startswith(column + "."):
                    finished.add(column)
                    continue
                values[oid] = (result.type, result.value)
                progressed[column] = oid
            cursor = {c: progressed[c] for c in asked
                      if c not in finished and c in progressed and progressed[c] != cursor[c]}


def _failure(device: Device, exc: BaseException) -> SnmpFailure:
    text = str(exc).removeprefix("snmpget: ").removeprefix("snmpbulkget: ").strip()
    name = type(exc).__name__
    if name in ("TimeoutError", "ConnectionError"):
        hint = (" (an SNMPv2c agent does not answer a wrong community either)"
                if device.credentials.version == "2c" else
                " (an SNMPv3 agent does not answer a wrong privacy password either)")
        return SnmpFailure("no_answer", f"no answer from {device.address}{hint}")
    if any(marker in text.lower() for marker in _AUTH_ERRORS):
        return SnmpFailure("auth", f"{device.address} refused {device.credentials.describe()}: "
                                   f"{text}")
    return SnmpFailure("error", f"{device.address}: {name}: {text or 'failed'}")
