"""The runners' ownership filter: which resources this agent polls.

For a namespace that is not partitioned the agent owns everything.  For a
partitioned one, each cycle start goes to that group's
:class:`~zkpoll.ownership.Partition`, whose state machine decides
(fencing, write-ahead claim, ring of the cycle); catch-up and resume polls
it asks for are run here through the source's runner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from zkpoll.ownership import Partition, Poll
from zkpoll.polling.cycles import cycle_index, source_offset
from zkpoll.polling.runner import CycleStats, SourceRunner

__all__ = ["FENCE", "KEEP_LAST_RING", "Ownership"]

LOG = logging.getLogger(__name__)
FENCE = "fence"
KEEP_LAST_RING = "keep_last_ring"


class Ownership:
    """The ownership filter of every runner (see the module docstring)."""

    def __init__(self, partitions: Mapping[str, Partition],
                 runners: Sequence[SourceRunner] = ()) -> None:
        self.partitions = dict(partitions)
        self.runners = {r.source.name: r for r in runners}
        self.on_catch_up: Callable[[CycleStats], None] = lambda stats: None
        for namespace, partition in self.partitions.items():
            partition.on_poll = lambda poll, ns=namespace: self._poll(ns, poll)

    def __call__(self, source: str, namespace: str, keys: Sequence[str],
                 start: float) -> Sequence[str] | None:
        partition = self.partitions.get(namespace)
        if partition is None:
            return keys
        interval = self.runners[source].source.interval
        index = cycle_index(start + 1e-6, interval, source_offset(source, interval))
        return partition.plan_cycle(source, index, start, interval, keys)

    def cycle_done(self, stats: CycleStats, namespaces: Sequence[str]) -> None:
        """Record a completed cycle in the partitions of ``namespaces``."""
        for namespace in namespaces:
            partition = self.partitions.get(namespace)
            if partition is not None and not stats.fenced:
                partition.cycle_done(stats.source, stats.index, stats.owned)

    def _poll(self, namespace: str, poll: Poll) -> None:
        """Run a catch-up or resume poll the state machine asked for."""
        runner = self.runners.get(poll.source)
        if runner is None:
            return
        stats = runner.catch_up(poll.index, poll.start, namespace, poll.keys)
        stats.resumed = poll.kind == "resume"
        self.on_catch_up(stats)

    def fenced_groups(self) -> dict[str, str]:
        """Group to reason, for every group this agent is fenced in now."""
        return {p.group: p.state.fenced for p in self.partitions.values() if p.state.fenced}
