"""zkpoll: highly available telemetry polling, partitioned over ZooKeeper.

As a library: :class:`WorkGroup` partitions any keyed work between the
processes of a group, cycle by cycle, exactly once (docs/library.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zkpoll.exceptions import WorkGroupError, ZkpollError
from zkpoll.version import __version__

if TYPE_CHECKING:
    from zkpoll.work import Cycle, WorkGroup

__all__ = ["Cycle", "WorkGroup", "WorkGroupError", "ZkpollError", "__version__"]

_LAZY = {"Cycle", "WorkGroup"}  # import the coordination stack only when asked for


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from zkpoll import work

        return getattr(work, name)
    raise AttributeError(f"module 'zkpoll' has no attribute {name!r}")
