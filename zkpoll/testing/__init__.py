"""Test helpers for zkpoll and its plugins: real ZooKeeper servers, a breakable proxy.

They need the Debian ``zookeeper`` package (``apt-get install -y zookeeper``)::

    from kazoo.client import KazooClient
    from zkpoll.testing import ManagedZooKeeper, TCPProxy

    with ManagedZooKeeper() as server, TCPProxy(server.host, server.port) as proxy:
        client = KazooClient(hosts=proxy.address, timeout=2.0)
        client.start()
        proxy.cut("blackhole")  # the client goes SUSPENDED
        proxy.restore()         # and comes back with the same session

zkpoll's own pytest fixtures (``tests/conftest.py``) are built on these.
"""

from zkpoll.testing.proxy import TCPProxy
from zkpoll.testing.zookeeper import (
    DEFAULT_CLASSPATH,
    ManagedZooKeeper,
    ZooKeeperEnsemble,
    expire_session,
    find_installation,
    four_letter_word,
    free_port,
)

__all__ = [
    "DEFAULT_CLASSPATH",
    "ManagedZooKeeper",
    "TCPProxy",
    "ZooKeeperEnsemble",
    "expire_session",
    "find_installation",
    "four_letter_word",
    "free_port",
]
