"""Deprecated location of :class:`zkpoll.ownership.Partition` (kept for imports)."""

from zkpoll.ownership import Partition, eligible_members, ring_epoch

__all__ = ["Partition", "eligible_members", "ring_epoch"]
