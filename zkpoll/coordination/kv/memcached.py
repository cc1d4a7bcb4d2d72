"""Memcached membership backend (pymemcache): member keys with a TTL, polled.

URL: ``memcached://host:port[/prefix]?timeout=S&heartbeat=S``; the path is
the key prefix (default ``zkpoll``).  Keys (group and id URL-quoted)::

    <prefix>/groups/<group>/members/<id>   member data (JSON), TTL ceil(timeout) + 1 s
    <prefix>/groups/<group>/index          JSON list of member ids, updated by CAS
    <prefix>/groups                        JSON list of group names, updated by CAS
    <prefix>/records/<kind>/<key>          coordination record, see memcached_records

Memcached cannot list keys nor push changes: peers see a change at their
next heartbeat's re-listing.  Its clock ticks once a second and a TTL is
whole seconds, so an item may expire up to 1 s before its TTL: the TTL is
``ceil(timeout) + 1`` so that a key never expires earlier than ``timeout``
after its renewal, and a dead member disappears within ``ceil(timeout) + 1``
s plus one heartbeat.  Index keys never expire; keep memcached from
evicting them (the default 64 MB is ample).

Each heartbeat also reads the server's clock (``stats`` ``time``: one more
round trip).  That clock is whole seconds, so one sample bounds the offset
to about 1 s; samples at different sub-second phases narrow it (a 0.2 s
heartbeat: to about 0.1 s within a few beats; a whole-second heartbeat
keeps nearly one phase and narrows slowly).  It is memcached's own clock:
its start time plus its monotonic uptime, advanced by a 1 s timer, which
runs up to about 2 s behind its host's wall clock (docs/backends.md).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from urllib.parse import quote

from pymemcache.client.base import Client, PooledClient
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError

from zkpoll.coordination.admin import (
    FORGET_ATTEMPTS,
    GroupNotEmpty,
    GroupNotFound,
    not_empty,
)
from zkpoll.coordination.clock import ClockSample
from zkpoll.coordination.kv._heartbeat import HeartbeatCoordinator
from zkpoll.coordination.kv._store import CLAIMS_RETENTION, MemberStore, host_port
from zkpoll.coordination.kv.memcached_records import MemcachedRecords
from zkpoll.coordination.kv.records import StoreRecords
from zkpoll.coordination.url import BackendURL
from zkpoll.exceptions import CoordinatorUnreachable

__all__ = ["MemcachedCoordinator", "MemcachedStore", "forget_group"]

LOG = logging.getLogger(__name__)
_CAS_ATTEMPTS = 50


class IndexContention(MemcacheError):
    """An index key kept changing under our compare-and-swap."""


def _expire(ttl: float) -> int:
    return math.ceil(ttl) + 1


def _ids(raw: bytes | None, key: str) -> set[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        LOG.warning("memcached key %s is not a JSON list; rebuilding it", key)
        value = []
    return {str(v) for v in value} if isinstance(value, list) else set()


class MemcachedStore(MemberStore):
    """Member keys in one memcached server (see module docstring)."""

    name = "Memcached"
    errors = (MemcacheError, OSError)
    unreachable = (MemcacheUnexpectedCloseError, OSError)

    def __init__(self, url: BackendURL, op_timeout: float) -> None:
        host, port = host_port(url, 11211)
        self._prefix = quote(url.path.strip("/"), safe="/") or "zkpoll"
        self.address = f"{host}:{port}"
        self._client = PooledClient((host, port), connect_timeout=op_timeout,
                                    timeout=op_timeout, default_noreply=False,
                                    max_pool_size=4)

    def _key(self, group: str, member_id: str) -> str:
        return f"{self._prefix}/groups/{quote(group, safe='')}/members/{quote(member_id, safe='')}"

    def _index(self, group: str) -> str:
        return f"{self._prefix}/groups/{quote(group, safe='')}/index"

    def _claims(self, group: str, member_id: str) -> str:
        return f"{self._prefix}/groups/{quote(group, safe='')}/claims/{quote(member_id, safe='')}"

    def _edit(self, key: str, change: Callable[[set[str]], set[str]]) -> None:
        """Apply ``change`` to the id list at ``key`` by compare-and-swap."""
        for _ in range(_CAS_ATTEMPTS):
            raw, token = self._client.gets(key)
            old = _ids(raw, key)
            new = change(set(old))
            if raw is not None and new == old:
                return
            payload = json.dumps(sorted(new)).encode()
            if raw is None:
                if self._client.add(key, payload, expire=0):
                    return
            elif self._client.cas(key, payload, token, expire=0):
                return
        raise IndexContention(f"{key} changed {_CAS_ATTEMPTS} times under our CAS")

    def ping(self) -> None:
        self._client.version()

    def clock_sample(self) -> ClockSample | None:
        sent = time.time()
        now = self._client.stats().get(b"time")
        received = time.time()
        if not isinstance(now, int) or isinstance(now, bool):
            return None  # a memcached-compatible server without a clock
        return ClockSample(sent, float(now), received, 1.0)

    def register(self, group: str, member_id: str, payload: bytes, ttl: float) -> None:
        self._client.set(self._key(group, member_id), payload, expire=_expire(ttl))
        self._edit(self._index(group), lambda ids: ids | {member_id})
        self._edit(f"{self._prefix}/groups", lambda groups: groups | {group})

    def replace(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        return bool(self._client.replace(self._key(group, member_id), payload,
                                         expire=_expire(ttl)))

    def touch(self, keys: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        return [bool(self._client.touch(self._key(g, m), expire=_expire(ttl)))
                for g, m in keys]

    def write_claims(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        self._client.set(self._claims(group, member_id), payload,
                         expire=_expire(CLAIMS_RETENTION))
        # Touched after the write: found means the member was alive after it.
        return bool(self._client.touch(self._key(group, member_id), expire=_expire(ttl)))

    def read_claims(self, group: str, member_ids: Sequence[str]) -> dict[str, bytes | None]:
        keys = {self._claims(group, m): m for m in member_ids}
        found = self._client.get_many(list(keys)) if keys else {}
        return {m: (bytes(found[k]) if found.get(k) is not None else None)
                for k, m in keys.items()}

    def remove(self, group: str, member_id: str) -> None:
        self._client.delete(self._key(group, member_id))
        self._edit(self._index(group), lambda ids: ids - {member_id})

    def members(self, group: str) -> dict[str, bytes]:
        index = self._index(group)
        ids = _ids(self._client.get(index), index)
        if not ids:
            return {}
        keys = {self._key(group, i): i for i in ids}
        found = self._client.get_many(list(keys))
        alive = {keys[k]: bytes(v) for k, v in found.items() if v is not None}
        dead = ids - set(alive)
        if dead:  # expired: ids are never reused, so dropping them cannot race a writer
            self._edit(index, lambda current: current - dead)
        return alive

    def groups(self) -> list[str]:
        key = f"{self._prefix}/groups"
        return sorted(_ids(self._client.get(key), key))

    def close(self) -> None:
        self._client.close()

    @functools.cached_property
    def records(self) -> MemcachedRecords:
        """The coordination records under this prefix."""
        return MemcachedRecords(self._client, self._prefix, self._key, self._edit, _ids)


class MemcachedCoordinator(StoreRecords, HeartbeatCoordinator):
    """Membership in memcached; see :mod:`zkpoll.coordination.kv._heartbeat` for the semantics."""

    store_class = MemcachedStore
    clock_is_wall_clock = False  # see docs/backends.md: up to ~1 s off, 1 s ticks

    forgetter = staticmethod(lambda url, opts, group, timeout: forget_group(url, group, timeout))


def forget_group(url: BackendURL, group: str, timeout: float) -> None:
    """Remove the empty ``group`` (see :func:`zkpoll.coordination.admin.forget_group`):
    no live member key; the index emptied by compare-and-swap, then the group
    dropped from ``<prefix>/groups`` by CAS; a member listed again afterwards
    puts it back and it refuses."""
    host, port = host_port(url, 11211)
    prefix = quote(url.path.strip("/"), safe="/") or "zkpoll"
    groups_key = f"{prefix}/groups"
    index = f"{prefix}/groups/{quote(group, safe='')}/index"

    def member_key(member_id: str) -> str:
        return f"{prefix}/groups/{quote(group, safe='')}/members/{quote(member_id, safe='')}"

    client = Client((host, port), connect_timeout=timeout, timeout=timeout,
                    default_noreply=False)
    try:
        if group not in _ids(client.get(groups_key), groups_key):
            raise GroupNotFound(f"no group {group} in {groups_key}")
        for _ in range(FORGET_ATTEMPTS):
            raw, token = client.gets(index)
            ids = sorted(_ids(raw, index))
            found = client.get_many([member_key(i) for i in ids]) if ids else {}
            live = [i for i in ids if found.get(member_key(i)) is not None]
            if live:
                raise not_empty(group, live)
            if raw is None or client.cas(index, b"[]", token, expire=0):
                break
        else:
            raise GroupNotEmpty(f"group {group} kept changing; try again")
        for _ in range(FORGET_ATTEMPTS):
            raw, token = client.gets(groups_key)
            names = _ids(raw, groups_key)
            if group not in names:
                break
            payload = json.dumps(sorted(names - {group})).encode()
            if client.cas(groups_key, payload, token, expire=0):
                break
        else:
            raise GroupNotEmpty(f"{groups_key} kept changing; try again")
        joined = sorted(_ids(client.get(index), index))
        if joined:  # a member registered meanwhile: list the group again
            for _ in range(FORGET_ATTEMPTS):
                raw, token = client.gets(groups_key)
                payload = json.dumps(sorted(_ids(raw, groups_key) | {group})).encode()
                if (client.add(groups_key, payload, expire=0) if raw is None
                        else client.cas(groups_key, payload, token, expire=0)):
                    break
            raise not_empty(group, joined)
    except (MemcacheError, OSError) as exc:
        raise CoordinatorUnreachable(f"Memcached at {host}:{port}: {type(exc).__name__}: "
                                     f"{exc}") from exc
    finally:
        client.close()
