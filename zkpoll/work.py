"""Partitioned, exactly-once keyed work for any program: :class:`WorkGroup`.

Every process that opens a ``WorkGroup`` with the same backend URL and
group name gets a share of the keys in each wall-clock aligned cycle,
decided by the same rules as the polling agent and the alarm evaluator
(:class:`zkpoll.ownership.Partition`): the ring of a cycle is settled
``settle_time`` ahead, each member has the backend confirm a write-ahead
claim before it works a cycle, a member that lost contact with the backend
is fenced (works nothing), and when a member vanishes mid-cycle before
claiming, its keys go to the survivors in the same cycle (catch-up)::

    with WorkGroup("zookeeper://zk1:2181/zkpoll", "reports", interval=60) as group:
        group.run(lambda: tenant_ids(), report)   # report(cycle, keys), until SIGTERM

Or drive the loop yourself: ``keys = group.owned(all_keys)`` claims and
returns this member's keys of the cycle in flight.  docs/library.md has the
whole story and a side-by-side with tooz's partitioner.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Self

from oslo_config import cfg

from zkpoll.coordination import (
    Coordinator,
    get_coordinator,
    parse_backend_url,
    register_opts,
)
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import ConfigError, CoordinationError, NotJoined, WorkGroupError
from zkpoll.ownership import Partition, Poll, PollKind
from zkpoll.service.cycles import (
    CycleClock,
    cycle_index,
    cycle_start,
    source_offset,
    wait_for_start,
)
from zkpoll.service.options import AGENT_COORDINATION_OPTS, check_timing, new_partition

__all__ = ["Cycle", "CycleCallback", "Keys", "WorkGroup"]

LOG = logging.getLogger(__name__)
_DEFAULTS = {opt.name: opt.default for opt in AGENT_COORDINATION_OPTS}  # the agents' own


@dataclass(frozen=True)
class Cycle:
    """One cycle of a work group, as handed to a :data:`CycleCallback`.

    ``kind`` (a :class:`~zkpoll.ownership.PollKind`, a string enum) is
    ``"cycle"`` (this member's share, at the cycle's start),
    ``"catch_up"`` (keys inherited from a member that vanished before
    claiming this cycle) or ``"resume"`` (our own share of this cycle,
    skipped while fenced, worked once unfenced).
    """

    index: int       #: cycle number: the cycle starts at ``index * interval + offset``
    start: float     #: wall-clock start (seconds since the epoch)
    interval: float  #: seconds between cycle starts
    kind: PollKind = PollKind.CYCLE

    @property
    def end(self) -> float:
        """Wall-clock start of the next cycle."""
        return self.start + self.interval


#: ``callback(cycle, keys)``: work ``keys`` (this member's, never another's) in ``cycle``.
CycleCallback = Callable[[Cycle, list[str]], None]
#: The keys to share: a sequence, or a function returning them (called every cycle).
Keys = Sequence[str] | Callable[[], Iterable[str]]


def unique_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """``keys`` in order without repeats; :raises WorkGroupError: a key is not a str."""
    if isinstance(keys, str):
        raise WorkGroupError(f"keys must be a collection of strings, not the string {keys!r}")
    result = tuple(dict.fromkeys(keys))
    bad = next((k for k in result if not isinstance(k, str)), None)
    if bad is not None:
        raise WorkGroupError(f"keys must be strings, got {type(bad).__name__} {bad!r}")
    return result


def check_cycle(index: int, now: float, interval: float, offset: float, last: int) -> float:
    """The start of cycle ``index`` if ``owned()`` may claim it at ``now``.

    :raises WorkGroupError: the cycle is over, or older than the newest one
        claimed (``last``): claims only move forward, or a vanished
        member's peers could work a cycle twice.
    """
    start = cycle_start(index, interval, offset)
    if start + interval <= now:
        raise WorkGroupError(f"cycle {index} ended {now - start - interval:.1f}s ago")
    if index < last:
        raise WorkGroupError(f"cycle {index} is older than cycle {last}, already claimed")
    return start


class WorkGroup:
    """This process's membership of one work group (see the module docstring).

    :param backend_url: ``zookeeper://``, ``redis://`` or ``memcached://`` URL
        (``?timeout=`` and ``?heartbeat=`` accepted); None: standalone, this
        process owns every key
    :param group: the group's name; every member uses the same one
    :param interval: seconds between cycle starts (the same for every member)
    :param name: the work's name in claims records and ``zkpoll-status``
    :param member_name: prefix of this member's id (default: the host name); a pid
        and a random suffix follow, as for the agents' ``[coordination] member_name``
    :param settle_time: seconds between announcing a join or leave and its
        taking effect; above the worst watch delay plus the clock skew
    :param heartbeat, session_timeout: override the backend defaults
    :param weight: this member's share relative to the others
    :param data: extra member data (JSON), shown by ``zkpoll-status``
    :param on_catch_up: gets catch-up and resume work when you call
        :meth:`owned` yourself (:meth:`run` passes its callback)
    """

    def __init__(self, backend_url: str | None, group: str, *, interval: float,
                 name: str = "work", member_name: str | None = None,
                 settle_time: float = _DEFAULTS["settle_time"],
                 fence_margin: float = _DEFAULTS["fence_margin"],
                 heartbeat: float | None = None, session_timeout: float | None = None,
                 weight: float = _DEFAULTS["weight"], start_timeout: float = 10.0,
                 data: Mapping[str, Any] | None = None,
                 on_catch_up: CycleCallback | None = None) -> None:
        if not interval > 0 or not group or not name:
            raise ConfigError(f"WorkGroup({group!r}): interval must be > 0 ({interval!r}) "
                              "and group and name non-empty")
        self.group, self.name, self.interval = group, name, float(interval)
        self.on_catch_up = on_catch_up
        self._offset = source_offset(name, self.interval)
        self._url = backend_url
        self._member_name = member_name
        self._timings = {"settle_time": settle_time, "fence_margin": fence_margin,
                         "heartbeat_interval": heartbeat, "session_timeout": session_timeout,
                         "start_timeout": start_timeout}
        self._data = {MemberData.ROLE: "work", MemberData.NAMESPACE: group,
                      MemberData.WEIGHT: weight, MemberData.METERS: {name: [name]},
                      MemberData.INTERVALS: {name: self.interval}, **(data or {})}
        self.coordinator: Coordinator | None = None
        self.partition: Partition | None = None
        self._lock = threading.Lock()
        self._last_claimed = -1
        self._thread: threading.Thread | None = None
        self._callback: CycleCallback | None = None
        self._stop = threading.Event()
        self._leaving = threading.Event()
        self._leave_at: float | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> Self:
        """Connect and join (active ``settle_time`` from now); returns ``self``.

        :raises ConfigError: bad URL or unsafe timings
        :raises CoordinatorUnreachable: no backend within ``start_timeout``
        """
        if self.coordinator is not None:
            raise WorkGroupError(f"WorkGroup {self.group!r}: already started")
        timings = self._timings
        conf = cfg.ConfigOpts()
        register_opts(conf)
        conf.register_opts(AGENT_COORDINATION_OPTS, group="coordination")
        conf([], default_config_files=[], default_config_dirs=[])
        conf.set_override("backend_url", self._url, "coordination")
        overrides = {"member_name": self._member_name,
                     "settle_time": timings["settle_time"],
                     "fence_margin": timings["fence_margin"],
                     "heartbeat_interval": timings["heartbeat_interval"],
                     "session_timeout": timings["session_timeout"]}
        for option, value in overrides.items():
            if value is not None:
                conf.set_override(option, value, "coordination")
        coordinator = get_coordinator(conf)
        standalone = isinstance(coordinator, StandaloneCoordinator)
        if not standalone:
            heartbeat = parse_backend_url(str(self._url)).float_param(
                "heartbeat", conf.coordination.heartbeat_interval)
            check_timing(timings["settle_time"], heartbeat, coordinator.session_timeout)
        try:
            coordinator.start(timeout=timings["start_timeout"])
            if not standalone:
                partition = new_partition(coordinator, self.group, conf.coordination)
                partition.on_poll = self._on_poll
                partition.join(self._data, wait=timings["start_timeout"])
                self.partition = partition
        except BaseException:
            coordinator.stop()  # it would keep retrying in the background
            raise
        self.coordinator = coordinator
        LOG.info("work group %s: joined as %s, cycles of %gs", self.group,
                 coordinator.member_id, self.interval)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self, graceful: bool = True, timeout: float | None = None) -> None:
        """Leave the group (idempotent).

        With ``graceful`` and a running loop (:meth:`every_cycle`), announce
        the leave, work the cycles that start in the next ``settle_time``
        seconds, then leave: peers take over at a cycle start, without gap
        or duplicate.  Otherwise leave at once; peers catch up the cycle in
        flight if it was not claimed.  ``timeout`` bounds the wait for the
        loop's last callback (None: as long as it takes).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        partition, thread = self.partition, self._thread
        if graceful and partition is not None and thread is not None:
            try:
                leave_at = partition.announce_leave(wait=5.0)
            except CoordinationError as exc:
                LOG.error("work group %s: could not announce the leave: %s", self.group, exc)
                leave_at = time.time()
            self._leave_at = max(time.time(), leave_at)
            self._leaving.set()
            thread.join(timeout)  # the loop ends before the first cycle at leave_at
        self._stop.set()
        self._leaving.set()
        if graceful and thread is not None:
            thread.join(timeout)  # standalone: let the cycle in flight finish
        if partition is not None:
            try:
                partition.leave(wait=5.0)
            except CoordinationError as exc:
                LOG.warning("work group %s: %s", self.group, exc)
        if self.coordinator is not None:
            self.coordinator.stop()

    # --- asking -------------------------------------------------------------
    @property
    def member_id(self) -> str | None:
        """This member's id in the current session (None before :meth:`start`)."""
        return None if self.coordinator is None else self.coordinator.member_id

    @property
    def fenced(self) -> str | None:
        """Why this member must not work now, or None."""
        return None if self.partition is None else self.partition.fence_reason()

    def owned(self, keys: Iterable[str], cycle: int | None = None) -> list[str]:
        """Claim cycle ``cycle`` and return this member's share of ``keys`` in it.

        ``cycle`` defaults to the cycle in flight; a later one is waited for
        (its ring settles only when it starts).  Returns ``[]`` when fenced
        or when the backend did not confirm the claim (a gap, never a
        duplicate; the cycle is handed to ``on_catch_up`` as ``"resume"`` if
        we are unfenced before it ends).  Keys inherited mid-cycle go to
        ``on_catch_up``.  Call :meth:`done` when the keys are worked.

        :raises NotJoined: not started, or closed
        :raises WorkGroupError: the cycle is over, older than one already
            claimed, or a loop (:meth:`every_cycle`) claims cycles already
        """
        if self.coordinator is None or self._closed:
            raise NotJoined(f"WorkGroup {self.group!r} is not started or is closed")
        if self._thread is not None:
            raise WorkGroupError(f"WorkGroup {self.group!r}: every_cycle() claims the "
                                 "cycles; use its callback, not owned()")
        unique = unique_keys(keys)
        now = time.time()
        index = cycle_index(now, self.interval, self._offset) if cycle is None else cycle
        with self._lock:
            start = check_cycle(index, now, self.interval, self._offset, self._last_claimed)
            self._last_claimed = index
        if start > now and not wait_for_start(start, self._stop, self._stop, lambda: None):
            return []
        if self.partition is None:
            return list(unique)
        planned = self.partition.plan_cycle(self.name, index, start, self.interval, unique)
        return [] if planned is None else list(planned)

    def done(self, cycle: int, worked: int) -> None:
        """Record cycle ``cycle`` as complete, with ``worked`` keys (``zkpoll-status``)."""
        if self.partition is not None:
            self.partition.cycle_done(self.name, cycle, worked)

    # --- the loop -----------------------------------------------------------
    def every_cycle(self, keys: Keys, callback: CycleCallback) -> None:
        """Call ``callback(cycle, keys)`` on a thread of ours at every cycle start,
        with this member's share of ``keys`` (maybe none), until :meth:`close`.

        Catch-up and resume work arrives through the same callback on a
        second thread, possibly while the first runs (never the same keys).
        A cycle is recorded as done when its callback returns; an exception
        is logged and the loop goes on.
        """
        if self.coordinator is None or self._closed:
            raise NotJoined(f"WorkGroup {self.group!r} is not started or is closed")
        with self._lock:
            if self._thread is not None:
                raise WorkGroupError(f"WorkGroup {self.group!r}: one loop per group")
            self._callback = callback
            self._thread = threading.Thread(target=self._loop, args=(keys, callback),
                                            name=f"zkpoll-work-{self.group}", daemon=True)
        self._thread.start()

    def run(self, keys: Keys, callback: CycleCallback,
            stop: threading.Event | None = None) -> None:
        """:meth:`every_cycle`, block until ``stop`` is set (None: until SIGINT or
        SIGTERM, from the main thread) or the group is closed, then :meth:`close`."""
        self.every_cycle(keys, callback)
        signalled: list[int] = []
        previous = _catch_signals(signalled.append) if stop is None else {}
        try:
            while not (signalled or (stop is not None and stop.is_set()) or self._closed):
                time.sleep(0.1)  # a signal handler must not take a lock: poll
            if signalled:
                LOG.info("work group %s: signal %d: leaving gracefully", self.group,
                         signalled[0])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.close()

    def _loop(self, keys: Keys, callback: CycleCallback) -> None:
        cycles = CycleClock(f"work group {self.group}", self.interval, self._offset,
                            self._stop, self._leaving, lambda: self._leave_at)
        for index, start in cycles:
            try:
                self._run_cycle(Cycle(index, start, self.interval), keys, callback)
            except Exception:  # the loop outlives any bug
                LOG.exception("work group %s: cycle %d failed", self.group, index)

    def _run_cycle(self, cycle: Cycle, keys: Keys, callback: CycleCallback) -> None:
        unique = unique_keys(keys() if callable(keys) else keys)
        if self.partition is None:
            mine: Sequence[str] | None = unique
        else:
            mine = self.partition.plan_cycle(self.name, cycle.index, cycle.start,
                                             self.interval, unique)
        if mine is None:
            LOG.warning("work group %s: cycle %d not worked: %s", self.group, cycle.index,
                        self.fenced or "the backend did not confirm our claim")
            return
        callback(cycle, list(mine))
        self.done(cycle.index, len(mine))

    def _on_poll(self, poll: Poll) -> None:
        """The partition's catch-up thread: inherited or resumed keys of a cycle."""
        callback = self._callback or self.on_catch_up
        if callback is None:
            LOG.warning("work group %s: cycle %d: %d %s key(s) not worked: no on_catch_up",
                        self.group, poll.index, len(poll.keys), poll.kind)
            return
        callback(Cycle(poll.index, poll.start, self.interval, poll.kind), list(poll.keys))


def _catch_signals(handler: Callable[[int], None]) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler(signum)``; returns the handlers replaced
    (none when not on the main thread, where Python cannot take signals)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    replaced = {signum: signal.signal(signum, on_signal)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    return {signum: signal.SIG_DFL if old is None else old for signum, old in replaced.items()}
