"""zkpoll: highly available telemetry polling, partitioned over ZooKeeper."""

from zkpoll.exceptions import ZkpollError
from zkpoll.version import __version__

__all__ = ["ZkpollError", "__version__"]
