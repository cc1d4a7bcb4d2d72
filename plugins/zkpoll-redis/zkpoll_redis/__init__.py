"""Redis pollsters for zkpoll: ``INFO`` of each server.

Installed, it adds the ``redis.*`` meters to the ``central`` namespace and
the ``redis_replication`` discovery (see README.md).
"""

from zkpoll_redis.discovery import ReplicationDiscovery
from zkpoll_redis.pollsters import ROLES

__all__ = ["ROLES", "ReplicationDiscovery", "__version__"]

__version__ = "0.1.0"
