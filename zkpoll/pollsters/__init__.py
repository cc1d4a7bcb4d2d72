"""Built-in pollsters, and helpers for writing pollsters.

The built-in pollsters live in :mod:`zkpoll.pollsters.host` (this host,
through psutil; ``zkpoll.poll.compute``) and :mod:`zkpoll.pollsters.network`
(HTTP and TCP checks; ``zkpoll.poll.central``).  They are loaded through
their entry points, named after the meter they produce.

:func:`cycle_cached` is public: a third-party pollster family can use it to
read a shared value once per cycle, as the built-in ones do.
:func:`connect_failed` tells which errors of opening a connection mean
"unreachable from here" (:class:`zkpoll.plugin.Unreachable`).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from zkpoll.plugin import PollingContext, resource_key

__all__ = ["connect_failed", "cycle_cached"]

T = TypeVar("T")

#: errno values of a connect that found no way to the peer: no route or host down,
#: and what Linux's route types that drop traffic make connect() fail with at once
#: (``blackhole``: EINVAL, ``prohibit``: EACCES; ``unreachable``: EHOSTUNREACH).  Only
#: a connect's errors are classified: an EINVAL or EACCES later is an answer.
_NO_ROUTE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN,
                       errno.EINVAL, errno.EACCES})


class _Slot:
    """One value computed at most once per cycle, whatever the thread."""

    __slots__ = ("done", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.value: Any = None


def cycle_cached(context: PollingContext, key: str, compute: Callable[[], T]) -> T:
    """Return ``compute()``, computed once per cycle and shared via ``context.cache``.

    Every pollster of a cycle sees the same ``context.cache``, so pollsters
    that read the same thing (e.g. three load averages from one
    ``getloadavg()``) share one read.  Concurrent callers with the same
    ``key`` wait for the first; if ``compute`` raises, nothing is cached and
    the next caller tries again.  Prefix ``key`` with your package name.
    """
    slot = context.cache.setdefault(key, _Slot())
    with slot.lock:
        if not slot.done:
            slot.value = compute()
            slot.done = True
        return slot.value


def connect_failed(exc: BaseException) -> bool:
    """Whether ``exc``, raised while *opening* a connection, means "unreachable from here".

    True for a refused connection, a timeout, no route (host or network
    unreachable, host or network down) and a failed name resolution
    (``socket.gaierror``).  Ask only about errors raised before the
    connection was established: once connected, a timeout, a reset, a TLS
    or protocol error mean the endpoint answered (badly), which is a sample
    or an error, never :class:`zkpoll.plugin.Unreachable`.
    """
    if isinstance(exc, (ConnectionRefusedError, TimeoutError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in _NO_ROUTE


def _unique_ids(resources: Iterable[Any]) -> list[str]:
    """Return the resource ids of ``resources``, duplicates dropped, order kept."""
    return list(dict.fromkeys(resource_key(r) for r in resources))
