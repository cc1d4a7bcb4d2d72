"""Test helpers for zkpoll and its plugins: real servers, a breakable proxy.

ZooKeeper needs the Debian ``zookeeper`` package (``apt-get install -y
zookeeper``), :class:`ManagedRedis` ``redis-server`` and
:class:`ManagedMemcached` ``memcached``::

    from kazoo.client import KazooClient
    from zkpoll.testing import ManagedZooKeeper, TCPProxy

    with ManagedZooKeeper() as server, TCPProxy(server.host, server.port) as proxy:
        client = KazooClient(hosts=proxy.address, timeout=2.0)
        client.start()
        proxy.cut("blackhole")  # the client goes SUSPENDED
        proxy.restore()         # and comes back with the same session

``ManagedZooKeeper(sasl_users={"alice": "pw"})`` requires SASL DIGEST-MD5
logins; ``ManagedZooKeeper(tls=True)`` adds a TLS port
(``secure_address``) with throw-away certificates (``certificates``, made
by :func:`make_certificates`; needs ``openssl``).

:func:`wait_for` is the one way tests wait for something to become true
(it names what was awaited and the last value seen when it times out).
zkpoll's own pytest fixtures (``tests/conftest.py``) are built on these.
"""

from zkpoll.testing.memcached import ManagedMemcached
from zkpoll.testing.proxy import TCPProxy
from zkpoll.testing.redis import ManagedRedis
from zkpoll.testing.tls import Certificates, make_certificates
from zkpoll.testing.waiting import wait_for
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
    "Certificates",
    "ManagedMemcached",
    "ManagedRedis",
    "ManagedZooKeeper",
    "TCPProxy",
    "ZooKeeperEnsemble",
    "expire_session",
    "find_installation",
    "four_letter_word",
    "free_port",
    "make_certificates",
    "wait_for",
]
