"""Coordination records in the TTL-heartbeat backends (Redis, Memcached).

A store (``redis_records``, ``memcached_records``) implements :class:`RecordStore`
with the backend's client; :class:`StoreRecords` gives a
:class:`~zkpoll.coordination.kv._heartbeat.HeartbeatCoordinator` subclass the
four record hooks of :class:`~zkpoll.coordination.base.Coordinator` on top
of it.  The fence is the member key ``<prefix>/groups/<group>/members/<id>``
of this member's current id: member ids are fresh per session, so the key
exists exactly while this member is registered in its current session.

Threading: a call runs on the coordinator's bounded reader pool (the caller
waits ``timeout`` s at most, like ``get_members``); the store gives up
issuing more requests once the deadline has passed.
"""

from __future__ import annotations

import abc
import time
from typing import Any

from zkpoll.coordination._records import EncodedWrite

__all__ = ["RecordStore", "StoreRecords", "check_deadline"]


def check_deadline(deadline: float, what: str) -> None:
    """:raises TimeoutError: the monotonic ``deadline`` has passed (an OSError:
    the coordinator reports it as unreachable)."""
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what}: deadline passed")


class RecordStore(abc.ABC):
    """The records of one backend; calls raise the backend's own exceptions."""

    @abc.abstractmethod
    def read(self, kind: str, keys: list[str]) -> dict[str, tuple[bytes, Any]]:
        """``key -> (stored JSON, version)`` of the keys that exist."""

    @abc.abstractmethod
    def write(self, kind: str, writes: list[EncodedWrite], group: str, member_id: str,
              deadline: float) -> dict[str, Any]:
        """Compare-and-set each write while ``member_id``'s key in ``group``
        exists; ``key -> new version`` of the winners."""

    @abc.abstractmethod
    def list(self, kind: str) -> list[str]:
        """Keys of every record of ``kind``."""

    @abc.abstractmethod
    def delete(self, kind: str, keys: list[str]) -> int:
        """Delete the keys; the number that existed."""


class StoreRecords:
    """Mixin (before ``HeartbeatCoordinator`` in the bases) whose store has a
    ``records`` attribute (a :class:`RecordStore`)."""

    # HeartbeatCoordinator provides these, and _read(call, timeout, what): a
    # call on its reader pool, translated to zkpoll's errors (not declared
    # here: this class precedes it in the MRO and would shadow it)
    _store: Any
    member_id: str

    def _read_records(self, kind: str, keys: list[str],
                      timeout: float) -> dict[str, tuple[bytes, Any]]:
        store: RecordStore = self._store.records
        return self._read(lambda: store.read(kind, keys), timeout, f"read {kind} records")

    def _write_records(self, kind: str, writes: list[EncodedWrite], fence_group: str,
                       timeout: float) -> dict[str, Any]:
        store: RecordStore = self._store.records
        member_id, deadline = self.member_id, time.monotonic() + timeout
        return self._read(lambda: store.write(kind, writes, fence_group, member_id, deadline),
                          timeout, f"write {kind} records")

    def _list_records(self, kind: str, timeout: float) -> list[str]:
        store: RecordStore = self._store.records
        return self._read(lambda: store.list(kind), timeout, f"list {kind} records")

    def _delete_records(self, kind: str, keys: list[str], timeout: float) -> int:
        store: RecordStore = self._store.records
        return self._read(lambda: store.delete(kind, keys), timeout, f"delete {kind} records")
