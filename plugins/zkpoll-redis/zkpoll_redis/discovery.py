"""``redis_replication://<server>``: a Redis server and the replicas it reports.

``<server>`` is ``host:port`` or a ``redis://`` URL.  The replicas come
from the server's ``INFO replication`` and keep its scheme, credentials
and database (``redis://:pw@10.0.0.2:6379/0`` for a master given as
``redis://:pw@10.0.0.1:6379/0``), so one discovery polls a whole
master-replica set.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from zkpoll.exceptions import PluginError
from zkpoll.plugin import Discovery, PollingContext
from zkpoll_redis.client import connection_url, display_id, info, replicas

__all__ = ["ReplicationDiscovery"]


def _same_style(server: str, host: str, port: int) -> str:
    """``host:port`` written like ``server`` (same scheme, credentials, database)."""
    if "://" not in server:
        return f"{host}:{port}"
    parts = urlsplit(server)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ReplicationDiscovery(Discovery):
    """The server of ``param`` followed by its replicas."""

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        if not param:
            raise PluginError("redis_replication needs a server, e.g. "
                              "redis_replication://10.0.0.1:6379")
        try:
            connection_url(param)
            reading = info(param, min(context.timeout or 10.0, 10.0), "replication")
        except Exception as exc:
            raise PluginError(f"redis_replication: {display_id(param)}: "
                              f"{type(exc).__name__}: {exc}") from exc
        found = [param] + [_same_style(param, r["ip"], r["port"]) for r in replicas(reading)
                           if "ip" in r and "port" in r]
        return list(dict.fromkeys(found))
