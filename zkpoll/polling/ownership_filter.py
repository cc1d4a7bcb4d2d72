"""The runners' ownership filter: which resources this agent polls.

For a namespace that is not partitioned the agent owns everything.  For a
partitioned one, each cycle start goes to that group's
:class:`~zkpoll.ownership.Partition`, whose state machine decides
(fencing, write-ahead claim, ring of the cycle); catch-up, resume and
handoff polls it asks for are run here through the source's runner, and the
resources a runner could not reach are handed off through it.  The ownership core
itself is :mod:`zkpoll.ownership`; this is only the polling agent's view of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from zkpoll.ownership import Partition, Poll, PollKind
from zkpoll.polling.runner import CycleStats, SourceRunner

__all__ = ["OwnershipFilter"]

LOG = logging.getLogger(__name__)


class OwnershipFilter:
    """The ownership filter of every runner (see the module docstring).

    Built before the runners (they call it); the partitions and the runners
    are attached once they exist (:meth:`attach`, :meth:`set_runners`).
    """

    def __init__(self) -> None:
        self.partitions: dict[str, Partition] = {}   # namespace -> partition
        self.runners: dict[str, SourceRunner] = {}   # source name -> runner
        self.on_catch_up: Callable[[CycleStats], None] = lambda stats: None

    def attach(self, partitions: Mapping[str, Partition]) -> None:
        """Filter the namespaces of ``partitions`` through them from now on."""
        for namespace, partition in partitions.items():
            partition.on_poll = lambda poll, ns=namespace: self._poll(ns, poll)
            self.partitions[namespace] = partition

    def set_runners(self, runners: Sequence[SourceRunner]) -> None:
        """The runners that catch-up and resume polls are handed to."""
        self.runners = {r.source.name: r for r in runners}

    def __call__(self, source: str, namespace: str, keys: Sequence[str], index: int,
                 start: float) -> Sequence[str] | None:
        """The keys of ``namespace`` this agent polls in cycle ``index`` of ``source``;
        None when it must not poll them (fenced, claim refused)."""
        partition = self.partitions.get(namespace)
        if partition is None:
            return keys
        interval = self.runners[source].source.interval
        return partition.plan_cycle(source, index, start, interval, keys)

    def cycle_done(self, stats: CycleStats, namespaces: Sequence[str]) -> None:
        """Record a completed cycle in the partitions of ``namespaces``."""
        for namespace in namespaces:
            partition = self.partitions.get(namespace)
            if partition is not None and not stats.fenced:
                partition.cycle_done(stats.source, stats.index, stats.owned)

    def hand_off(self, source: str, namespace: str, keys: Sequence[str], index: int,
                 start: float, tried: tuple[str, ...]) -> Sequence[str] | None:
        """Hand ``keys`` this agent could not reach to other members (see
        :meth:`Partition.hand_off`); the keys given up on here, or None when
        ``namespace`` has no failover."""
        partition = self.partitions.get(namespace)
        runner = self.runners.get(source)
        if partition is None or runner is None or partition.state.config.failover_hops <= 0:
            return None
        return partition.hand_off(source, index, start, runner.source.interval, keys, tried)

    def _poll(self, namespace: str, poll: Poll) -> None:
        """Run a catch-up, resume or handoff poll the state machine asked for."""
        runner = self.runners.get(poll.source)
        if runner is None:
            return
        stats = runner.catch_up(poll.index, poll.start, namespace, poll.keys, poll.tried)
        stats.resumed = poll.kind is PollKind.RESUME
        self.on_catch_up(stats)

    def fenced_groups(self) -> dict[str, str]:
        """Group to reason, for every group this agent is fenced in now."""
        fenced = {p.group: p.fenced() for p in self.partitions.values()}
        return {group: reason for group, reason in fenced.items() if reason}
