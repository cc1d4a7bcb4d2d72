"""Coordination records in Redis (redis-py)::

    <prefix>/records/<kind>/<key>   HASH  v = version (1, 2, ...), d = the JSON value
    <prefix>/records/<kind>         SET of the keys of <kind> (for listing)

Each write is one Lua script, atomic on the server: it wins only if this
member's key ``<prefix>/groups/<fence group>/members/<member id>`` exists
(its TTL not run out, so its session lives) and the stored version is the
one given (no record, for a create); it then stores the value with the
version plus one.  Writes are pipelined, :data:`CHUNK` per round trip.
A record deleted and created again starts over at version 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from zkpoll.coordination._records import EncodedWrite, check_int_version
from zkpoll.coordination.kv.records import RecordStore, check_deadline

__all__ = ["CHUNK", "RedisRecords"]

#: Commands per pipelined round trip.
CHUNK = 500
#: KEYS: record, member key, index; ARGV: value, expected version ('' = create), key.
#: Returns the new version, 0 (compare-and-set lost) or -1 (fence lost).
_CAS = """
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], 'v')
if ARGV[2] == '' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
local version = (tonumber(current) or 0) + 1
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[1])
if not current then redis.call('SADD', KEYS[3], ARGV[3]) end
return version
"""


class RedisRecords(RecordStore):
    """The records under one key prefix (see the module docstring).

    :param member_key: ``(group, member id) -> key`` of a member
    """

    def __init__(self, client: redis.Redis, prefix: str,
                 member_key: Callable[[str, str], str]) -> None:
        self._client = client
        self._prefix = prefix
        self._member_key = member_key
        self._cas = client.register_script(_CAS)

    def _index(self, kind: str) -> str:
        return f"{self._prefix}/records/{kind}"

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}/records/{kind}/{key}"

    def read(self, kind: str, keys: list[str]) -> dict[str, tuple[bytes, Any]]:
        found: dict[str, tuple[bytes, Any]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            pipe = self._client.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(self._key(kind, key), "v", "d")
            for key, (version, data) in zip(chunk, pipe.execute()):
                if version is not None and data is not None:
                    found[key] = (bytes(data), int(version))
        return found

    def write(self, kind: str, writes: list[EncodedWrite], group: str, member_id: str,
              deadline: float) -> dict[str, Any]:
        expected = [check_int_version(w.key, w.version, "Redis") for w in writes]
        member, index = self._member_key(group, member_id), self._index(kind)
        won: dict[str, Any] = {}
        for start in range(0, len(writes), CHUNK):
            check_deadline(deadline, f"write {kind} records")
            pipe = self._client.pipeline(transaction=False)
            chunk = list(zip(writes[start:start + CHUNK], expected[start:start + CHUNK]))
            for write, version in chunk:
                self._cas(keys=[self._key(kind, write.key), member, index],
                          args=[write.payload, "" if version is None else str(version),
                                write.key], client=pipe)
            for (write, _), result in zip(chunk, pipe.execute()):
                if int(result) > 0:
                    won[write.key] = int(result)
        return won

    def list(self, kind: str) -> list[str]:
        return [k.decode() for k in self._client.smembers(self._index(kind))]

    def delete(self, kind: str, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(*(self._key(kind, k) for k in chunk))
            pipe.srem(self._index(kind), *chunk)
            deleted += int(pipe.execute()[0])
        return deleted
