"""kazoo's threading handler with a ``select`` that costs one system call.

kazoo's connection thread calls ``handler.select`` before every read and
write and once per loop turn (four times per request answered).  The stock
handler builds, fills and closes a new epoll selector on every call (five
system calls and a dozen Python calls), which made it the largest single
cost of a member's ZooKeeper traffic.  ``poll`` has no descriptor limit
either (unlike ``select``), so it keeps the reason kazoo moved away from
``select.select``.
"""

from __future__ import annotations

import math
import select
from collections.abc import Sequence
from typing import Any

from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.handlers.utils import fileobj_to_fd

__all__ = ["PollingHandler", "make_handler", "poll_select"]

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


class PollingHandler(SequentialThreadingHandler):
    """kazoo's :class:`SequentialThreadingHandler`, selecting with :func:`poll_select`."""

    name = "zkpoll_polling_threading_handler"

    def select(self, *args: Any, **kwargs: Any) -> tuple[list[Any], list[Any], list[Any]]:
        return poll_select(*args, **kwargs)


def make_handler() -> SequentialThreadingHandler:
    """The handler for our clients (kazoo's own where ``poll`` does not exist)."""
    return PollingHandler() if hasattr(select, "poll") else SequentialThreadingHandler()
