"""ZooKeeper pollsters for zkpoll: ``mntr`` and ``ruok`` of each server.

Installed, it adds the ``zookeeper.*`` meters to the ``central`` namespace
and the ``zookeeper_servers`` discovery (see README.md).
"""

from zkpoll_zookeeper.discovery import ZooKeeperServersDiscovery, servers_of
from zkpoll_zookeeper.pollsters import STATES

__all__ = ["STATES", "ZooKeeperServersDiscovery", "__version__", "servers_of"]

__version__ = "0.1.0"
