"""kazoo's threading handler, made cheaper: one system call per select, no extra threads.

* ``select``: kazoo's connection thread calls ``handler.select`` before
  every read and write and once per loop turn (four times per request
  answered).  The stock handler builds, fills and closes a new epoll
  selector on every call (five system calls and a dozen Python calls),
  which made it the largest single cost of a member's ZooKeeper traffic.
  ``poll`` has no descriptor limit either (unlike ``select``), so it keeps
  the reason kazoo moved away from ``select.select``.
* **Callbacks run on kazoo's connection thread**, in order, instead of on
  two more threads per client (kazoo's callback and completion workers):
  watch events, the completions kazoo chains inside ``create`` and
  ``ensure_path``, and ``rawlink`` callbacks.  That halves the threads of a
  member and the thread hand-offs of every watch event, heartbeat and
  create.  The contract that makes it safe: **a callback never blocks**
  (zkpoll's only put an event on a queue or record a time; kazoo's own
  chain further asynchronous calls).  A callback that waited for another
  ZooKeeper answer would wait for ever, since the thread that reads the
  answers is the one running it.  One that raises is logged, never allowed
  to end the connection thread.
"""

from __future__ import annotations

import functools
import logging
import math
import select
import threading
from collections.abc import Sequence
from typing import Any

from kazoo.handlers.threading import KazooTimeoutError, SequentialThreadingHandler
from kazoo.handlers.utils import AsyncResult, fileobj_to_fd

__all__ = ["InlineAsyncResult", "PollingHandler", "make_handler", "poll_select"]

LOG = logging.getLogger(__name__)

_READ = select.POLLIN | select.POLLPRI if hasattr(select, "poll") else 0
_WRITE = select.POLLOUT if hasattr(select, "poll") else 0
_BAD = select.POLLNVAL if hasattr(select, "poll") else 0


def poll_select(rlist: Sequence[Any], wlist: Sequence[Any], xlist: Sequence[Any],
                timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select``'s contract (as kazoo's ``selector_select`` has it) on ``poll``.

    ``xlist`` is ignored, as kazoo's own version does. An object in both
    lists is reported readable only, like kazoo's.
    :raises TypeError: a timeout that is not a number, or an object without a
        valid file descriptor
    :raises ValueError: a negative timeout, or a descriptor that is not open
    """
    if timeout is None:
        millis = -1
    elif not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number")
    elif timeout < 0:
        raise ValueError("timeout must be non-negative")
    else:
        millis = math.ceil(timeout * 1000)  # never 0 for a short positive timeout
    masks: dict[int, int] = {}
    objects: dict[int, list[Any]] = {}
    for mask, fileobjs in ((_READ, rlist), (_WRITE, wlist)):
        for fileobj in fileobjs:
            fd = fileobj_to_fd(fileobj)
            masks[fd] = masks.get(fd, 0) | mask
            objects.setdefault(fd, []).append(fileobj)
    poller = select.poll()
    for fd, mask in masks.items():
        poller.register(fd, mask)
    readable: list[Any] = []
    writable: list[Any] = []
    for fd, events in poller.poll(millis):
        if events & _BAD:
            raise ValueError("Invalid event mask or fd")
        if events & ~select.POLLOUT and masks[fd] & _READ:
            readable.extend(objects[fd])
        elif events & ~select.POLLIN and masks[fd] & _WRITE:
            writable.extend(objects[fd])
    return readable, writable, []


class InlineAsyncResult(AsyncResult):
    """kazoo's async result whose ``rawlink`` callbacks run in the thread that
    sets it (kazoo's connection thread), each guarded."""

    def __init__(self, handler: Any) -> None:
        super().__init__(handler, threading.Condition, KazooTimeoutError)

    def _do_callbacks(self) -> None:
        for callback in self._callbacks:
            _guarded(functools.partial(callback, self))


class PollingHandler(SequentialThreadingHandler):
    """kazoo's :class:`SequentialThreadingHandler`, selecting with :func:`poll_select`
    and running callbacks on the connection thread (see the module docstring)."""

    name = "zkpoll_polling_threading_handler"

    def start(self) -> None:
        """Start nothing: there are no worker threads."""
        with self._state_change:
            self._running = True

    def stop(self) -> None:
        with self._state_change:
            self._running = False

    def select(self, *args: Any, **kwargs: Any) -> tuple[list[Any], list[Any], list[Any]]:
        return poll_select(*args, **kwargs)

    def async_result(self) -> InlineAsyncResult:
        return InlineAsyncResult(self)

    def dispatch_callback(self, callback: Any) -> None:
        """Run a watch or session callback now, in the calling (connection) thread."""
        _guarded(functools.partial(callback.func, *callback.args))


def _guarded(call: Any) -> None:
    try:
        call()
    except Exception:  # a callback must never end kazoo's connection thread
        LOG.exception("ZooKeeper client callback %r failed", call)


def make_handler() -> SequentialThreadingHandler:
    """The handler for our clients (kazoo's own where ``poll`` does not exist)."""
    return PollingHandler() if hasattr(select, "poll") else SequentialThreadingHandler()
