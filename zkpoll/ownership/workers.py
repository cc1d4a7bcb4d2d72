"""The two threads of a :class:`~zkpoll.ownership.partition.Partition`, each
started with its first work item (most members never skip a cycle nor see a
member vanish mid-cycle, and run neither).

* the worker ("zkpoll-ownership-<group>") takes posted actions in order and
  hands each to ``handle``; while ``wants_ticks()`` it also hands ``None``
  (a tick) every :data:`TICK` seconds;
* the poll thread ("zkpoll-catchup-<group>") runs catch-up, resume and
  handoff polls, so a long poll never delays a claims read.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent import futures

from zkpoll.ownership.events import Action, Poll

__all__ = ["TICK", "Workers"]

LOG = logging.getLogger(__name__)
TICK = 0.05  #: seconds between ticks while a skipped cycle may be resumed
_STOP = object()


class Workers:
    """The worker and poll threads of one group (see the module docstring)."""

    def __init__(self, group: str, handle: Callable[[Action | None], None],
                 wants_ticks: Callable[[], bool], run_poll: Callable[[Poll], None]) -> None:
        self.group = group
        self._handle = handle
        self._wants_ticks = wants_ticks
        self._run_poll = run_poll
        self._lock = threading.Lock()  # guards everything below
        self._open = False  # joined and not closed: work may start the worker
        self._work: queue.Queue[object] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._polls: futures.ThreadPoolExecutor | None = None

    def open(self) -> None:
        """Accept work from now on."""
        with self._lock:
            if not self._open:
                self._open = True
                self._polls = futures.ThreadPoolExecutor(1, f"zkpoll-catchup-{self.group}")

    def post(self, item: Action | None) -> None:
        """Hand ``item`` (None: a tick) to the worker, starting it if needed (dropped
        once closed)."""
        with self._lock:
            if not self._open:
                return
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, args=(self._work,),
                                                daemon=True,
                                                name=f"zkpoll-ownership-{self.group}")
                self._worker.start()
            self._work.put(item)

    def submit_poll(self, poll: Poll) -> None:
        """Run ``poll`` on the poll thread (dropped once closed)."""
        polls = self._polls
        if polls is None:
            return
        try:
            polls.submit(self._poll, poll)
        except RuntimeError:  # shut down meanwhile
            pass

    def close(self) -> None:
        """Stop both threads (idempotent; waits at most 5 s for the worker)."""
        with self._lock:
            self._open = False
            worker, work, self._worker = self._worker, self._work, None
            self._work = queue.Queue()
            polls, self._polls = self._polls, None
        if worker is not None:
            work.put(_STOP)
            worker.join(5.0)
        if polls is not None:
            polls.shutdown(wait=False, cancel_futures=True)

    def _loop(self, work: queue.Queue[object]) -> None:
        while True:
            try:
                item = work.get(timeout=TICK if self._wants_ticks() else None)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            try:
                self._handle(item)  # type: ignore[arg-type]
            except Exception:  # the worker must survive anything
                LOG.exception("group %s: ownership worker error", self.group)

    def _poll(self, poll: Poll) -> None:
        try:
            self._run_poll(poll)
        except Exception:
            LOG.exception("group %s: %s poll of source %s failed", self.group, poll.kind,
                          poll.source)
