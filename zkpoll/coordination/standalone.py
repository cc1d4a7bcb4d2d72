"""Standalone coordinator: no backend, this process is every group's only member.

Used when ``[coordination] backend_url`` is unset.  Watch callbacks run in
the caller's thread, synchronously.  Coordination records live in memory
(lost with the process); the fence is this member having joined the group,
and every records call raises :class:`CoordinationError` once stopped.
The coordinator is its own backend: its clock is the local clock (offset 0,
error 0) and changes reach the watchers at once (watch delay 0).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from zkpoll.coordination._records import EncodedWrite, check_int_version
from zkpoll.coordination.base import Coordinator, Member, Membership, SessionState
from zkpoll.coordination.clock import ClockEstimate, ClockSample
from zkpoll.exceptions import CoordinationError, NotJoined

__all__ = ["StandaloneCoordinator"]

LOG = logging.getLogger(__name__)


class StandaloneCoordinator(Coordinator):
    """Every group holds just this member; the lease never runs out."""

    def __init__(self, member_id: str) -> None:
        super().__init__(member_id)
        self._lock = threading.Lock()
        self._groups: dict[str, dict[str, Any]] = {}
        self._versions: dict[str, int] = {}
        self._claims: dict[str, dict[str, Any]] = {}
        self._claims_gen = 0
        self._records: dict[str, dict[str, tuple[bytes, int]]] = {}  # kind -> key -> record

    def start(self, timeout: float | None = None) -> None:
        LOG.warning("no [coordination] backend_url: running standalone; this agent "
                    "polls every resource, so run only ONE agent with this configuration")
        self._set_state(SessionState.CONNECTED)

    def stop(self) -> None:
        for group in list(self._groups):
            self.leave(group)
        self._set_state(SessionState.STOPPED)

    def join(self, group: str, data: Mapping[str, Any] | None = None,
             wait: float | None = None) -> None:
        registered = dict(data or {})
        registered.update(self._registration_changes(group, registered))
        with self._lock:
            self._groups[group] = registered
        self._publish(group)

    def update(self, group: str, data: Mapping[str, Any], wait: float | None = None) -> None:
        with self._lock:
            if group not in self._groups:
                raise NotJoined(f"{self.member_id} has not joined group {group!r}")
            self._groups[group].update(data)
        self._publish(group)

    def leave(self, group: str, wait: float | None = None) -> None:
        with self._lock:
            known = self._groups.pop(group, None) is not None
        if known:
            self._publish(group)

    def get_members(self, group: str, timeout: float = 10.0) -> Membership:
        return self._snapshot(group)

    def put_claims(self, group: str, record: Mapping[str, Any]) -> int:
        with self._lock:
            if group not in self._groups:
                raise NotJoined(f"{self.member_id} has not joined group {group!r}")
            self._claims[group] = dict(record)
            self._claims_gen += 1
            return self._claims_gen

    def wait_claims(self, group: str, gen: int, timeout: float) -> bool:
        return True  # written in memory at once; nobody else can take our work

    def read_claims(self, group: str, member_ids: Iterable[str],
                    timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {m: dict(self._claims.get(group, {})) if m == self.member_id else {}
                    for m in member_ids}

    # --- coordination records: in memory -----------------------------------------
    def _kind(self, kind: str) -> dict[str, tuple[bytes, int]]:
        """Under ``_lock``: the records of ``kind``. :raises CoordinationError: stopped."""
        if self._state is SessionState.STOPPED:
            raise CoordinationError("the standalone coordinator is stopped")
        return self._records.setdefault(kind, {})

    def _read_records(self, kind: str, keys: list[str],
                      timeout: float) -> dict[str, tuple[bytes, Any]]:
        with self._lock:
            records = self._kind(kind)
            return {k: records[k] for k in keys if k in records}

    def _write_records(self, kind: str, writes: list[EncodedWrite], fence_group: str,
                       timeout: float) -> dict[str, Any]:
        expected = [check_int_version(w.key, w.version, "this coordinator") for w in writes]
        won: dict[str, Any] = {}
        with self._lock:
            records = self._kind(kind)
            if fence_group not in self._groups:
                return won
            for write, version in zip(writes, expected):
                current = records.get(write.key)
                if (current[1] if current else None) == version:
                    records[write.key] = (write.payload, 1 if current is None else current[1] + 1)
                    won[write.key] = records[write.key][1]
        return won

    def _list_records(self, kind: str, timeout: float) -> list[str]:
        with self._lock:
            return list(self._kind(kind))

    def _delete_records(self, kind: str, keys: list[str], timeout: float) -> int:
        with self._lock:
            records = self._kind(kind)
            return sum(records.pop(k, None) is not None for k in keys)

    def get_groups(self, timeout: float = 10.0) -> list[str]:
        with self._lock:
            return sorted(self._groups)

    def _watch_started(self, group: str) -> None:
        self._notify(self._snapshot(group))

    def _replay(self, group: str, callback: Any) -> None:
        self._call_all([callback], self._snapshot(group))

    # --- the backend's clock is ours -----------------------------------------------
    def clock(self) -> ClockEstimate:
        """Offset 0, error 0, measured now (every read is a fresh exact measurement)."""
        return self.measure_clock()

    def measure_clock(self, timeout: float = 5.0) -> ClockEstimate:
        now = time.time()
        return self._clock.add(ClockSample(now, now, now))

    def watch_delay(self) -> float:
        return 0.0

    @property
    def last_contact(self) -> float:
        return time.monotonic()

    @property
    def session_timeout(self) -> float:
        return float("inf")

    def _snapshot(self, group: str) -> Membership:
        with self._lock:
            data = self._groups.get(group)
            version = self._versions.get(group, 0)
        members = (Member(self.member_id, data),) if data is not None else ()
        return Membership(group, members, version)

    def _publish(self, group: str) -> None:
        with self._lock:
            self._versions[group] = self._versions.get(group, 0) + 1
        self._notify(self._snapshot(group))
