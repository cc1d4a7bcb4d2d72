"""The ZooKeeper backend's clock samples: the ``mtime`` of our own writes.

ZooKeeper stamps every transaction with the leader's wall clock (in ms)
when the leader accepts it, and the answer to a ``set`` (or a ``create``
with ``include_data``) carries that stamp in the znode's stat.  Each claims
record written is therefore a free clock sample; :func:`probe` writes a
small znode (``<root>/clock``) when one is wanted now.  Every member's
samples read the same clock, the leader's (a new leader after a failover
is a clock step, followed at once by the estimator).
"""

from __future__ import annotations

import time
from typing import Any

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError

from zkpoll.coordination.clock import ClockSample

__all__ = ["RESOLUTION", "AnswerClock", "probe"]

#: ZooKeeper's ``mtime`` is whole milliseconds.
RESOLUTION = 0.001
_PROBE_ATTEMPTS = 3


class AnswerClock:
    """When one kazoo request was sent and when its answer arrived.

    Create it just before submitting the request, then :meth:`watch` the
    result: kazoo's connection thread stamps the answer's arrival (zkpoll's
    handler runs the callback before any waiter wakes; a result answered
    before the watch is stamped at once).
    """

    __slots__ = ("received", "sent", "taken")

    def __init__(self) -> None:
        self.sent = time.time()
        self.received: float | None = None
        self.taken = False

    def watch(self, result: Any) -> None:
        """Stamp the arrival of ``result``'s answer."""
        result.rawlink(self._answered)

    def _answered(self, result: Any) -> None:  # kazoo's thread: cheap, never raises
        if self.received is None:
            self.received = time.time()

    def take(self, result: Any) -> ClockSample | None:
        """The sample the answered write ``result`` carries, once (None: it failed,
        has no stat, or was taken already: a write settled twice counts once)."""
        if self.taken or not result.ready() or result.exception is not None:
            return None
        self.taken = True
        value = result.value  # set: a ZnodeStat; create with include_data: (path, ZnodeStat)
        mtime = getattr(value, "mtime", None)
        if mtime is None and isinstance(value, tuple) and len(value) == 2:
            mtime = getattr(value[1], "mtime", None)
        if not isinstance(mtime, int) or isinstance(mtime, bool):
            return None
        received = self.received if self.received is not None else time.time()
        return ClockSample(self.sent, mtime / 1000.0, received, RESOLUTION)


def probe(client: Any, path: str, timeout: float) -> ClockSample:
    """Write ``path`` (``set`` of any version, so that members never conflict;
    created with its parents if missing) and return the sample it carries.

    :raises: kazoo's errors (``KazooTimeoutError``: no answer in ``timeout`` s).
    """
    deadline = time.monotonic() + timeout
    for _ in range(_PROBE_ATTEMPTS):
        clock = AnswerClock()
        result = client.set_async(path, b"")
        clock.watch(result)
        try:
            result.get(timeout=max(0.0, deadline - time.monotonic()))
        except NoNodeError:
            clock = AnswerClock()
            result = client.create_async(path, b"", makepath=True, include_data=True)
            clock.watch(result)
            try:
                result.get(timeout=max(0.0, deadline - time.monotonic()))
            except NodeExistsError:
                continue  # another member created it meanwhile: set it
        sample = clock.take(result)
        if sample is not None:
            return sample
    raise KazooException(f"{path}: no clock stamp in {_PROBE_ATTEMPTS} writes")
