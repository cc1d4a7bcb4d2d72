"""Redis membership backend (redis-py): member keys with a TTL, changes pushed.

URL: ``redis://[[user]:password@]host:port[/db][/prefix]?timeout=S&heartbeat=S``.
A first path segment of digits is the database number (default 0); the
rest of the path is the key prefix (default ``zkpoll``).  Keys::

    <prefix>/groups/<group>/members/<id>   member data (JSON), SET ... PX <timeout>
    <prefix>/groups/<group>/index          SET of member ids (readers drop dead ones)
    <prefix>/groups                        SET of group names
    <prefix>/groups/<group>/claims/<id>    claims record (JSON), not watched, 1 h TTL
    <prefix>/groups/<group>/inbox/<id>     STREAM of handoffs (field ``h``: JSON), 1 h TTL
    <prefix>/changes                       pub/sub channel: a group name per change
    <prefix>/records/<kind>/<key>          coordination record (HASH), see redis_records

A member key and its index entry are written in one MULTI/EXEC
transaction, and every join, update and leave publishes the group on the
channel, so peers re-list at once; expiries are caught by the heartbeat's
re-listing.  No server configuration is needed (no keyspace notifications).
A claims write publishes nothing: per-cycle claims cost peers nothing.
A handoff is one script (:data:`SEND_HANDOFF`): if the recipient's member key
exists, XADD to its inbox, renew the inbox's TTL and publish an inbox notice
on the channel (peers other than the recipient ignore it); the recipient
reads its whole inbox (XRANGE) and acknowledges with XDEL.  Removing a
member key (leave, a stale session) deletes its inbox; a crashed member's
inbox expires an hour after its last handoff.
Each heartbeat reads the server's clock (``TIME``, microseconds) in the
pipeline that renews the keys: the clock offset costs no round trip.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from zkpoll.coordination.admin import (
    FORGET_ATTEMPTS,
    GroupNotEmpty,
    GroupNotFound,
    not_empty,
)
from zkpoll.coordination.clock import ClockSample
from zkpoll.coordination.kv._heartbeat import HeartbeatCoordinator
from zkpoll.coordination.kv._store import (
    CLAIMS_RETENTION,
    MemberStore,
    host_port,
    inbox_notice,
)
from zkpoll.coordination.kv.inbox import StoreInbox
from zkpoll.coordination.kv.records import StoreRecords
from zkpoll.coordination.kv.redis_records import RedisRecords
from zkpoll.coordination.url import OPTION, BackendURL, redact
from zkpoll.exceptions import ConfigError, CoordinationError, CoordinatorUnreachable

__all__ = ["SEND_HANDOFF", "RedisCoordinator", "RedisStore", "forget_group"]

#: KEYS: member key, inbox; ARGV: handoff, inbox TTL (ms), channel, notice.
SEND_HANDOFF = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], '*', 'h', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return id
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _time_sample(sent: float, answer: tuple[int, int], received: float) -> ClockSample:
    """The sample of a ``TIME`` answer (seconds, microseconds)."""
    seconds, micros = answer
    return ClockSample(sent, seconds + micros / 1e6, received, 1e-6)


class RedisStore(MemberStore):
    """Member keys in one Redis server (see module docstring)."""

    name = "Redis"
    errors = (redis.RedisError, OSError)
    unreachable = (redis.ConnectionError, redis.TimeoutError, OSError)
    pushes = True
    inboxes = True

    def __init__(self, url: BackendURL, op_timeout: float) -> None:
        host, port = host_port(url, 6379)
        segments = [s for s in url.path.split("/") if s]
        db = int(segments.pop(0)) if segments and segments[0].isdigit() else 0
        if "db" in url.query:
            if not url.query["db"].isdigit():
                raise ConfigError(f"{OPTION}: db={url.query['db']!r} in {redact(url.raw)!r} "
                                  "must be a database number")
            db = int(url.query["db"])
        self._prefix = "/".join(segments) or "zkpoll"
        self._channel = f"{self._prefix}/changes"
        self.address = f"{host}:{port}/{db}"
        self._client = redis.Redis(
            host=host, port=port, db=db, username=url.username, password=url.password,
            socket_timeout=op_timeout, socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 0))  # the coordinator retries, with its own backoff
        self._send_handoff = self._client.register_script(SEND_HANDOFF)

    def _key(self, group: str, member_id: str) -> str:
        return f"{self._prefix}/groups/{group}/members/{member_id}"

    def _index(self, group: str) -> str:
        return f"{self._prefix}/groups/{group}/index"

    def _claims(self, group: str, member_id: str) -> str:
        return f"{self._prefix}/groups/{group}/claims/{member_id}"

    def _inbox(self, group: str, member_id: str) -> str:
        return f"{self._prefix}/groups/{group}/inbox/{member_id}"

    def ping(self) -> None:
        self._client.ping()

    def register(self, group: str, member_id: str, payload: bytes, ttl: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key(group, member_id), payload, px=_ms(ttl))
        pipe.sadd(self._index(group), member_id)
        pipe.sadd(f"{self._prefix}/groups", group)
        pipe.publish(self._channel, group)
        pipe.execute()

    def replace(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._key(group, member_id), payload, px=_ms(ttl), xx=True)
        pipe.publish(self._channel, group)
        return bool(pipe.execute()[0])

    def touch(self, keys: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        return self.heartbeat(keys, ttl)[0]

    def clock_sample(self) -> ClockSample:
        sent = time.time()
        answer = self._client.time()
        return _time_sample(sent, answer, time.time())

    def heartbeat(self, keys: Sequence[tuple[str, str]],
                  ttl: float) -> tuple[list[bool], ClockSample]:
        pipe = self._client.pipeline(transaction=False)
        for group, member_id in keys:
            pipe.pexpire(self._key(group, member_id), _ms(ttl))
        pipe.time()
        sent = time.time()
        *found, answer = pipe.execute()
        return [bool(f) for f in found], _time_sample(sent, answer, time.time())

    def write_claims(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self._claims(group, member_id), payload, px=_ms(CLAIMS_RETENTION))
        pipe.pexpire(self._key(group, member_id), _ms(ttl))
        return bool(pipe.execute()[1])

    def read_claims(self, group: str, member_ids: Sequence[str]) -> dict[str, bytes | None]:
        if not member_ids:
            return {}
        values = self._client.mget([self._claims(group, m) for m in member_ids])
        return dict(zip(member_ids, values))

    def remove(self, group: str, member_id: str) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self._key(group, member_id), self._inbox(group, member_id))
        pipe.srem(self._index(group), member_id)
        pipe.publish(self._channel, group)
        pipe.execute()

    def members(self, group: str) -> dict[str, bytes]:
        ids = sorted(m.decode() for m in self._client.smembers(self._index(group)))
        if not ids:
            return {}
        values = self._client.mget([self._key(group, i) for i in ids])
        dead = [i for i, value in zip(ids, values) if value is None]
        if dead:  # expired: ids are never reused, so dropping them cannot race a writer
            self._client.srem(self._index(group), *dead)
        return {i: value for i, value in zip(ids, values) if value is not None}

    def groups(self) -> list[str]:
        return [g.decode() for g in self._client.smembers(f"{self._prefix}/groups")]

    def changes(self, stop: threading.Event) -> Iterator[str | None]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            yield None  # (re)subscribed: anything may have changed meanwhile
            while not stop.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is not None and message.get("type") == "message":
                    yield bytes(message["data"]).decode("utf-8", "replace")
        finally:
            pubsub.close()

    def send_handoff(self, group: str, member_id: str, raw: bytes) -> bool:
        sent = self._send_handoff(
            keys=[self._key(group, member_id), self._inbox(group, member_id)],
            args=[raw, _ms(CLAIMS_RETENTION), self._channel, inbox_notice(group, member_id)])
        return sent is not None

    def read_inbox(self, group: str, member_id: str) -> list[tuple[str, bytes | None]]:
        return [(entry.decode(), fields.get(b"h"))
                for entry, fields in self._client.xrange(self._inbox(group, member_id))]

    def ack_handoffs(self, group: str, member_id: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            self._client.xdel(self._inbox(group, member_id), *entry_ids)

    def close(self) -> None:
        self._client.close()

    @functools.cached_property
    def records(self) -> RedisRecords:
        """The coordination records under this prefix."""
        return RedisRecords(self._client, self._prefix, self._key)


class RedisCoordinator(StoreRecords, StoreInbox, HeartbeatCoordinator):
    """Membership in Redis; see :mod:`zkpoll.coordination.kv._heartbeat` for the semantics."""

    supports_handoffs = True

    store_class = RedisStore

    forgetter = staticmethod(lambda url, opts, group, timeout: forget_group(url, group, timeout))


def forget_group(url: BackendURL, group: str, timeout: float) -> None:
    """Remove the empty ``group`` (see :func:`zkpoll.coordination.admin.forget_group`):
    under WATCH of the group's index, no live member key, then MULTI: delete
    the index, SREM the group from ``<prefix>/groups``."""
    host, port = host_port(url, 6379)
    segments = [s for s in url.path.split("/") if s]
    db = int(segments.pop(0)) if segments and segments[0].isdigit() else 0
    db = int(url.query["db"]) if url.query.get("db", "").isdigit() else db
    prefix = "/".join(segments) or "zkpoll"
    index = f"{prefix}/groups/{group}/index"
    client = redis.Redis(host=host, port=port, db=db, username=url.username,
                         password=url.password, socket_timeout=timeout,
                         socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        if not client.sismember(f"{prefix}/groups", group):
            raise GroupNotFound(f"no group {group} in {prefix}/groups")
        for _ in range(FORGET_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(index)
                    ids = sorted(m.decode() for m in pipe.smembers(index))
                    values = pipe.mget([f"{prefix}/groups/{group}/members/{i}" for i in ids]) \
                        if ids else []
                    live = [i for i, value in zip(ids, values) if value is not None]
                    if live:
                        raise not_empty(group, live)
                    pipe.multi()
                    pipe.delete(index)
                    pipe.srem(f"{prefix}/groups", group)
                    pipe.publish(f"{prefix}/changes", group)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise GroupNotEmpty(f"group {group} kept changing; try again")
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise CoordinatorUnreachable(f"Redis at {host}:{port}: {exc}") from exc
    except redis.RedisError as exc:  # e.g. a wrong password
        raise CoordinationError(f"Redis at {host}:{port}: {type(exc).__name__}: {exc}") \
            from exc
    finally:
        client.close()
