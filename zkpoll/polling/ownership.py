"""Which resources this agent polls: partitions, self-fencing and catch-up.

:class:`Ownership` is the runners' ownership filter.  For a namespace that
is not partitioned it owns everything.  For a partitioned one it answers
from the ring for the cycle's start, but only while the agent may trust
its view of the group:

* the backend heard from us within ``(1 - fence_margin) x session_timeout``
  (after that the server may expire our session and give our work away);
* and within ``settle_time`` (a join or leave announced before the last
  contact is in our view; one announced later takes effect after ``T``).

Otherwise the agent is *fenced*: it polls no partitioned work (or, with
``on_backend_loss = keep_last_ring``, keeps its last slice), and says so.

It also remembers the ring each cycle was planned with, so that when a
member vanishes mid-cycle the survivors poll at once, for the cycle in
flight, the resources they inherit from it (same-cycle catch-up), unless
that member recorded the cycle as completed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field

from zkpoll.coordination import HashRing, Member
from zkpoll.partition import Partition
from zkpoll.polling.cycles import cycle_index, source_offset
from zkpoll.polling.runner import CycleStats, SourceRunner

__all__ = ["FENCE", "KEEP_LAST_RING", "Ownership"]

LOG = logging.getLogger(__name__)
FENCE = "fence"
KEEP_LAST_RING = "keep_last_ring"


@dataclass
class _Plan:
    """The ring and keys one source's cycle was planned with, per namespace."""

    start: float
    index: int
    ring: HashRing
    keys: set[str] = field(default_factory=set)


class Ownership:
    """The ownership filter of every runner (see the module docstring)."""

    def __init__(self, partitions: Mapping[str, Partition], fence_margin: float,
                 on_backend_loss: str = FENCE) -> None:
        self.partitions = dict(partitions)
        self.fence_margin = fence_margin
        self.on_backend_loss = on_backend_loss
        self.runners: list[SourceRunner] = []
        self.on_catch_up: Callable[[CycleStats], None] = lambda stats: None
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._fenced: dict[str, str] = {}  # group -> reason, while fenced
        self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix="zkpoll-catchup")
        self._skipped: dict[tuple[str, str], tuple[float, str]] = {}  # -> (start, member id)
        self._resume_wake = threading.Event()
        self._closed = False
        threading.Thread(target=self._resume_loop, daemon=True, name="zkpoll-resume").start()
        for namespace, partition in self.partitions.items():
            partition.on_members_lost(
                lambda gone, ns=namespace: self._pool.submit(self._catch_up, ns, gone))

    def close(self) -> None:
        """Stop the catch-up and resume threads."""
        self._closed = True
        self._resume_wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the filter ----------------------------------------------------------
    def __call__(self, source: str, namespace: str, keys: Sequence[str],
                 start: float) -> Sequence[str] | None:
        partition = self.partitions.get(namespace)
        if partition is None:
            return keys
        reason = self.fence_reason(partition)
        self._note_fence(partition.group, reason)
        if reason and (self.on_backend_loss != KEEP_LAST_RING or not partition.registered()):
            self._skip(source, namespace, start)
            return None
        plan = self._plan(source, namespace, partition, keys, start)
        owned = plan.ring.owned_by(partition.coordinator.member_id, keys)
        if owned and not reason and not partition.announce_cycle(
                source, plan.index, self._confirm_timeout(partition)):
            if self.on_backend_loss != KEEP_LAST_RING:
                self._skip(source, namespace, start)
                return None
            # The policy prefers a duplicate to a gap: without this, the
            # cycles between the loss and the fence would be skipped.
            LOG.warning("source %s cycle %d: the backend did not confirm our claim; "
                        "polling anyway (on_backend_loss = keep_last_ring)", source, plan.index)
        return owned

    def _plan(self, source: str, namespace: str, partition: Partition, keys: Iterable[str],
              start: float) -> _Plan:
        """Record (under the lock catch-up reads) the ring this cycle is planned with."""
        me = partition.coordinator.member_id
        with self._lock:
            ring = partition.ring_at(start)
            plan = self._plans.get((source, namespace))
            if plan is None or plan.start != start:
                if plan is not None and plan.ring != ring:
                    _log_ring_change(source, partition.group, me, plan.ring, ring, list(keys))
                runner = self._runner(source)
                interval = runner.source.interval if runner else 1
                plan = _Plan(start, cycle_index(start + 1e-6, interval,
                                                source_offset(source, interval)), ring)
                self._plans[(source, namespace)] = plan
            plan.ring = ring
            plan.keys.update(keys)
            return plan

    def _confirm_timeout(self, partition: Partition) -> float:
        lease = partition.coordinator.lease_remaining(
            partition.coordinator.session_timeout * self.fence_margin)
        return max(0.05, min(1.0, lease))

    # --- resume a cycle skipped while fenced ---------------------------------
    def _skip(self, source: str, namespace: str, start: float) -> None:
        partition = self.partitions[namespace]
        with self._lock:
            self._skipped[(source, namespace)] = (start, partition.coordinator.member_id)
        self._resume_wake.set()

    def _resume_loop(self) -> None:
        """Poll our own share of a cycle skipped while fenced, once unfenced in
        the same session (nobody took it over: that needs our session to expire)."""
        while not self._closed:
            self._resume_wake.wait()
            self._resume_wake.clear()
            while not self._closed and self._resume_once():
                time.sleep(0.05)

    def _resume_once(self) -> bool:
        """One pass; True while some skipped cycle is still in flight."""
        now = time.time()
        with self._lock:
            skipped = dict(self._skipped)
        waiting = False
        for (source, namespace), (start, member_id) in skipped.items():
            runner = self._runner(source)
            partition = self.partitions[namespace]
            if runner is None or not start <= now < start + runner.source.interval \
                    or partition.coordinator.member_id != member_id:
                self._forget_skip(source, namespace, start)
                continue
            if self.fence_reason(partition):
                waiting = True
                continue
            self._forget_skip(source, namespace, start)
            keys = runner.planned_keys(namespace, start)
            plan = self._plan(source, namespace, partition, keys, start)
            owned = plan.ring.owned_by(member_id, keys)
            if owned and partition.announce_cycle(source, plan.index,
                                                  self._confirm_timeout(partition)):
                LOG.info("resuming: source %s cycle %d: polling our %d resource(s) skipped "
                         "while fenced", source, plan.index, len(owned))
                self._run_catch_up(runner, plan, namespace, owned)
        return waiting

    def _forget_skip(self, source: str, namespace: str, start: float) -> None:
        with self._lock:
            if self._skipped.get((source, namespace), (None,))[0] == start:
                del self._skipped[(source, namespace)]

    def _run_catch_up(self, runner: SourceRunner, plan: _Plan, namespace: str,
                      keys: Sequence[str]) -> None:
        try:
            stats = runner.catch_up(plan.index, plan.start, namespace, keys)
        except Exception:
            LOG.exception("catch-up of source %s failed", runner.source.name)
            return
        self.on_catch_up(stats)

    def fence_reason(self, partition: Partition) -> str | None:
        """Why this agent must not trust its view of ``partition`` now, or None."""
        coordinator = partition.coordinator
        age = partition.contact_age()
        lease = coordinator.session_timeout * (1.0 - self.fence_margin)
        if age >= lease:
            silent = f"for {age:.1f}s" if age < float("inf") else "yet"  # never answered
            return (f"no answer from the coordination backend {silent} (lease "
                    f"{lease:.1f}s of a {coordinator.session_timeout:.1f}s session)")
        if age >= partition.settle_time > 0:
            return (f"membership view is {age:.1f}s old, more than settle_time "
                    f"{partition.settle_time:.1f}s")
        if not partition.registered():
            return f"{coordinator.member_id} is not (yet) listed in group {partition.group}"
        return None

    def fenced_groups(self) -> dict[str, str]:
        """Group to reason, for every group this agent is fenced in now."""
        with self._lock:
            return dict(self._fenced)

    def _note_fence(self, group: str, reason: str | None) -> None:
        with self._lock:
            was = self._fenced.get(group)
            if reason is None:
                self._fenced.pop(group, None)
            else:
                self._fenced[group] = reason
        if bool(reason) != bool(was):
            partition = next(p for p in self.partitions.values() if p.group == group)
            partition.update({"fenced": reason})  # queued; published when it can be
        if reason and not was:
            action = ("keeping the last ring (on_backend_loss = keep_last_ring)"
                      if self.on_backend_loss == KEEP_LAST_RING
                      else "not polling its partitioned work")
            LOG.warning("FENCED in group %s: %s; %s", group, reason, action)
        elif was and not reason:
            LOG.info("unfenced in group %s: polling partitioned work again", group)

    def _runner(self, source: str) -> SourceRunner | None:
        return next((r for r in self.runners if r.source.name == source), None)

    # --- catch-up ------------------------------------------------------------
    def _catch_up(self, namespace: str, gone: dict[str, Member]) -> None:
        """Poll now, for the cycle in flight, what this member inherits from ``gone``."""
        partition = self.partitions[namespace]
        if self.fence_reason(partition):
            return
        me = partition.coordinator.member_id
        now = time.time()
        for runner in self.runners:
            name = runner.source.name
            with self._lock:
                plan = self._plans.get((name, namespace))
                if plan is None or not plan.start <= now < plan.start + runner.source.interval:
                    continue
                orphaned = {mid for mid, member in gone.items()
                            if _started(member, name) < plan.index}
                current = partition.ring_at(plan.start)
                extra = sorted(k for k in plan.keys
                               if plan.ring.owner(k) in orphaned and current.owner(k) == me)
                plan.ring = current
            if not extra:
                continue
            LOG.info("catch-up: source %s cycle %d: polling %d resource(s) inherited from %s",
                     name, plan.index, len(extra), ", ".join(sorted(orphaned)))
            self._run_catch_up(runner, plan, namespace, extra)


def _log_ring_change(source: str, group: str, me: str, old: HashRing, new: HashRing,
                     keys: Sequence[str]) -> None:
    """One INFO line per ring change: who came and went, what moved to/from us."""
    moved = old.moved(new, keys) if len(old) and len(new) else []
    gained = sum(1 for _, _, owner in moved if owner == me)
    lost = sum(1 for _, owner, _ in moved if owner == me)
    came = sorted(set(new.members) - set(old.members))
    went = sorted(set(old.members) - set(new.members))
    LOG.info("ring of group %s changed for source %s: %d member(s); joined: %s; left: %s; "
             "%d resource(s) moved to this agent, %d away", group, source, len(new),
             ", ".join(came) or "-", ", ".join(went) or "-", gained, lost)


def _started(member: Member, source: str) -> int:
    """The newest cycle of ``source`` the member announced it polls
    (``polling_cycle``, confirmed before polling), else its last completed one."""
    best = -1
    for key in ("polling_cycle", "last_completed_cycle"):
        cycles = member.data.get(key) or {}
        value = cycles.get(source) if isinstance(cycles, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            best = max(best, value)
    return best

