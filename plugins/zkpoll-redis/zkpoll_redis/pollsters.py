"""Redis pollsters (``zkpoll.poll.central``), one per ``INFO`` field.

Resources are servers: ``host:port``, or ``redis://``, ``rediss://`` or
``unix://`` URLs (with a password: ``redis://:secret@host:6379``).  A
sample's ``resource_id`` is the resource with its password replaced by
``***``.  One ``INFO`` per server per cycle is shared by every ``redis.*``
pollster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zkpoll.plugin import resource_key
from zkpoll.pollsters.reading import FieldPollster
from zkpoll.sample import CUMULATIVE
from zkpoll_redis.client import display_id, info, replicas

__all__ = [
    "ROLES",
    "ConnectedClientsPollster",
    "KeyspaceHitsPollster",
    "KeyspaceMissesPollster",
    "OpsPerSecondPollster",
    "ReplicationLagPollster",
    "ReplicationRolePollster",
    "UsedMemoryPollster",
]

#: Volume of ``redis.replication.role`` for each ``role``.
ROLES: Mapping[str, int] = {"master": 0, "slave": 1}


class _InfoPollster(FieldPollster):
    """One ``INFO`` field per server."""

    reading = "zkpoll_redis:info"

    def read(self, resource: Any, timeout: float) -> Mapping[str, Any]:
        return info(resource_key(resource), timeout)

    def sample_resource_id(self, resource: Any) -> str:
        return display_id(resource_key(resource))


class ConnectedClientsPollster(_InfoPollster):
    """``redis.clients.connected``: client connections (replicas excluded)."""

    meter, unit, field = "redis.clients.connected", "client", "connected_clients"


class UsedMemoryPollster(_InfoPollster):
    """``redis.memory.used``: bytes allocated by Redis."""

    meter, unit, field = "redis.memory.used", "B", "used_memory"


class OpsPerSecondPollster(_InfoPollster):
    """``redis.ops.per_second``: commands per second (Redis' own instantaneous rate)."""

    meter, unit, field = "redis.ops.per_second", "op/s", "instantaneous_ops_per_sec"


class KeyspaceHitsPollster(_InfoPollster):
    """``redis.keyspace.hits``: successful key lookups since the server started."""

    meter, unit, field = "redis.keyspace.hits", "lookup", "keyspace_hits"
    sample_type = CUMULATIVE


class KeyspaceMissesPollster(_InfoPollster):
    """``redis.keyspace.misses``: failed key lookups since the server started."""

    meter, unit, field = "redis.keyspace.misses", "lookup", "keyspace_misses"
    sample_type = CUMULATIVE


class ReplicationRolePollster(_InfoPollster):
    """``redis.replication.role``: 0 for a master, 1 for a replica (:data:`ROLES`).

    Metadata: ``role``, ``connected_replicas``; on a replica also
    ``master`` (host:port) and ``link`` (``up``/``down``).
    """

    meter, unit, field = "redis.replication.role", "role", "role"

    def volume(self, reading: Mapping[str, Any]) -> float | None:
        role = reading.get(self.field)
        return None if role is None else ROLES.get(str(role), -1)

    def metadata(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        metadata = {"role": reading.get("role"),
                    "connected_replicas": reading.get("connected_slaves", 0)}
        if reading.get("role") == "slave":
            metadata["master"] = f"{reading.get('master_host')}:{reading.get('master_port')}"
            metadata["link"] = reading.get("master_link_status")
        return metadata


class ReplicationLagPollster(_InfoPollster):
    """``redis.replication.lag``: seconds a replica is behind its master.

    On a replica: seconds since the last exchange with the master
    (``master_last_io_seconds_ago``), or since the link went down.  On a
    master: the largest ``lag`` of its replicas; a master without replicas
    gives no sample.  Metadata: ``role``, ``link`` or ``replicas``.
    """

    meter, unit, field = "redis.replication.lag", "s", "role"

    def volume(self, reading: Mapping[str, Any]) -> float | None:
        if reading.get("role") == "slave":
            if reading.get("master_link_status") == "up":
                return reading.get("master_last_io_seconds_ago")
            down = reading.get("master_link_down_since_seconds", -1)
            return down if isinstance(down, int) and down >= 0 else None
        lags = [r["lag"] for r in replicas(dict(reading)) if isinstance(r.get("lag"), int)]
        return max(lags) if lags else None

    def metadata(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        if reading.get("role") == "slave":
            return {"role": "slave", "link": reading.get("master_link_status")}
        return {"role": reading.get("role"), "replicas": len(replicas(dict(reading)))}
