"""``zookeeper_servers``: the servers of a ZooKeeper connect string.

- ``zookeeper_servers://zk1:2181,zk2:2181,zk3/chroot`` (a kazoo connect
  string) or ``zookeeper_servers://zookeeper://zk1,zk2/zkpoll?timeout=10``
  (a backend URL): those servers;
- ``zookeeper_servers`` alone: the servers of ``[coordination]
  backend_url`` when it is a ``zookeeper://`` (or ``kazoo://``) URL, so
  the agents watch the ensemble they coordinate through; else none.

Each resource is ``host:port`` (port 2181 when the string gives none); a
chroot, credentials and query parameters are dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from zkpoll.exceptions import PluginError
from zkpoll.plugin import Discovery, PollingContext
from zkpoll_zookeeper.client import parse_endpoint

__all__ = ["ZooKeeperServersDiscovery", "servers_of"]

LOG = logging.getLogger(__name__)
_SCHEMES = ("zookeeper://", "kazoo://")


def servers_of(connect: str) -> list[str]:
    """``host:port`` of each server of a connect string or zookeeper:// URL.

    :raises PluginError: an item is not ``host[:port]``.
    """
    text = connect.strip()
    for scheme in _SCHEMES:
        if text.lower().startswith(scheme):
            text = text[len(scheme):]
            break
    hosts = text.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    servers = []
    for item in hosts.split(","):
        if not item.strip():
            continue
        try:
            host, port = parse_endpoint(item)
        except ValueError as exc:
            raise PluginError(f"zookeeper_servers: {exc} in {connect!r}") from exc
        servers.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return list(dict.fromkeys(servers))


def _backend_url(conf: Any) -> str | None:
    try:
        url = conf.coordination.backend_url
    except Exception:  # noqa: BLE001 - no conf, or the option is not registered
        return None
    return url if isinstance(url, str) else None


class ZooKeeperServersDiscovery(Discovery):
    """The servers of ``param`` (a connect string), or of ``[coordination] backend_url``."""

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        if param:
            return servers_of(param)
        url = _backend_url(self.conf if self.conf is not None else context.conf)
        if url and url.strip().lower().startswith(_SCHEMES):
            return servers_of(url)
        LOG.debug("zookeeper_servers: no connect string and no zookeeper backend_url")
        return []
