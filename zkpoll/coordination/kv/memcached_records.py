"""Coordination records in memcached (pymemcache)::

    <prefix>/records/<kind>/<key>   the JSON value, no expiry; version = its CAS token
    <prefix>/records/<kind>         JSON list of the keys of <kind>, edited by CAS

A write is ``cas`` with the token read (``add`` to create).  The fence is
NOT atomic with it: this member's key in the fence group is checked before
the first write and again every :data:`FENCE_EVERY` writes, so a member
whose key expires between a check and a write can still win that write.
The new version of a won write is read back with ``gets``; if someone
wrote again in between, the version returned is ``0`` (never a token: the
next compare-and-set with it loses).  Memcached may evict records under
memory pressure: give it memory to spare, like the member index keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymemcache.client.base import PooledClient

from zkpoll.coordination._records import EncodedWrite, check_int_version
from zkpoll.coordination.kv.records import RecordStore, check_deadline

__all__ = ["FENCE_EVERY", "MemcachedRecords"]

#: Writes between two checks of the member key.
FENCE_EVERY = 100
#: Keys per multi-key ``gets``.
CHUNK = 100
#: The version of a won write that was overwritten before it could be read back.
STALE = 0
_MAX_KEY = 250  # memcached's limit, in bytes


class MemcachedRecords(RecordStore):
    """The records under one key prefix (see the module docstring).

    :param member_key: ``(group, member id) -> key`` of a member
    :param edit: ``edit(key, change)`` applies ``change(set) -> set`` to the
        JSON id list at ``key`` by compare-and-swap
    """

    def __init__(self, client: PooledClient, prefix: str, member_key: Callable[[str, str], str],
                 edit: Callable[[str, Callable[[set[str]], set[str]]], None],
                 ids: Callable[[bytes | None, str], set[str]]) -> None:
        self._client = client
        self._prefix = prefix
        self._member_key = member_key
        self._edit = edit
        self._ids = ids

    def _index(self, kind: str) -> str:
        return f"{self._prefix}/records/{kind}"

    def _key(self, kind: str, key: str) -> str:
        full = f"{self._prefix}/records/{kind}/{key}"
        if len(full.encode()) > _MAX_KEY:
            raise ValueError(f"record {kind}/{key}: memcached key {full!r} is longer than "
                             f"{_MAX_KEY} bytes; use a shorter key or key prefix")
        return full

    def _fetch(self, kind: str, keys: list[str]) -> dict[str, tuple[bytes, int]]:
        found: dict[str, tuple[bytes, int]] = {}
        for start in range(0, len(keys), CHUNK):
            names = {self._key(kind, k): k for k in keys[start:start + CHUNK]}
            for name, (value, token) in self._client.gets_many(list(names)).items():
                if value is not None:
                    found[names[name]] = (bytes(value), int(token))
        return found

    def read(self, kind: str, keys: list[str]) -> dict[str, tuple[bytes, Any]]:
        return dict(self._fetch(kind, keys))

    def write(self, kind: str, writes: list[EncodedWrite], group: str, member_id: str,
              deadline: float) -> dict[str, Any]:
        expected = [check_int_version(w.key, w.version, "Memcached") for w in writes]
        names = [self._key(kind, w.key) for w in writes]
        member = self._member_key(group, member_id)
        creates = {w.key for w, v in zip(writes, expected) if v is None}
        if self._client.get(member) is None:
            return {}
        if creates:  # listed first: a listed key without a record is harmless
            self._edit(self._index(kind), lambda keys: keys | creates)
        stored: dict[str, bytes] = {}
        for i, (write, version, name) in enumerate(zip(writes, expected, names)):
            if i and i % FENCE_EVERY == 0:
                check_deadline(deadline, f"write {kind} records")
                if self._client.get(member) is None:
                    break  # fenced out: the remaining writes lose
            if version is None:
                ok = self._client.add(name, write.payload, expire=0, noreply=False)
            else:
                ok = self._client.cas(name, write.payload, version, expire=0, noreply=False)
            if ok:
                stored[write.key] = write.payload
        now = self._fetch(kind, list(stored))
        return {key: now[key][1] if key in now and now[key][0] == payload else STALE
                for key, payload in stored.items()}

    def list(self, kind: str) -> list[str]:
        index = self._index(kind)
        listed = sorted(self._ids(self._client.get(index), index))
        return list(self._fetch(kind, listed))

    def delete(self, kind: str, keys: list[str]) -> int:
        deleted = sum(bool(self._client.delete(self._key(kind, k), noreply=False))
                      for k in keys)
        doomed = set(keys)
        self._edit(self._index(kind), lambda listed: listed - doomed)
        return deleted
