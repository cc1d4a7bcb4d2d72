"""This member's clock offset against the coordination backend's clock (pure logic).

A backend answer that carries the backend's wall clock, taken between two
local wall-clock readings, bounds the offset (local minus backend)::

    sent - (backend + resolution)  <=  offset  <=  received - backend

The backend read its clock at some instant between ``sent`` and
``received``, and ``backend`` is that reading truncated to ``resolution``.
:class:`ClockEstimator` intersects the intervals of the newest samples:
each one that agrees narrows the estimate (a 1 s clock read at different
sub-second phases narrows to a fraction of a second).  No I/O, no clock
reads: the backends take the samples and add them.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["ClockEstimate", "ClockEstimator", "ClockSample"]


@dataclass(frozen=True)
class ClockSample:
    """One backend answer that carries the backend's clock."""

    sent: float      #: local wall clock (``time.time()``) just before the request was sent
    backend: float   #: the backend's wall clock in the answer, seconds since the epoch
    received: float  #: local wall clock just after the answer arrived
    #: the backend clock's granularity: ZooKeeper mtime 0.001, Redis TIME 1e-6,
    #: Memcached ``stats`` time 1.0
    resolution: float = 0.0

    @property
    def low(self) -> float:
        """The least offset this sample allows."""
        return self.sent - (self.backend + self.resolution)

    @property
    def high(self) -> float:
        """The greatest offset this sample allows."""
        return self.received - self.backend

    @property
    def round_trip(self) -> float:
        """``received - sent``."""
        return self.received - self.sent

    def check(self) -> None:
        """:raises ValueError: a field is not finite, the resolution is negative,
        or the answer came before the request (the local clock stepped back
        during the request: the sample bounds nothing)."""
        fields = (self.sent, self.backend, self.received, self.resolution)
        if not all(isinstance(f, (int, float)) and math.isfinite(f) for f in fields):
            raise ValueError(f"clock sample with a field that is not a finite number: {self}")
        if self.resolution < 0:
            raise ValueError(f"clock sample with a negative resolution: {self}")
        if self.received < self.sent:
            raise ValueError(f"clock sample received before it was sent (the local "
                             f"clock stepped back): {self}")


@dataclass(frozen=True)
class ClockEstimate:
    """The offset of the local clock against the backend's, with its error bound.

    The true offset lies in ``[offset - error, offset + error]`` as long as
    neither clock stepped during the samples combined.
    """

    offset: float        #: local clock minus backend clock, seconds (positive: we are ahead)
    error: float         #: half-width of the interval the true offset lies in (>= 0)
    round_trip: float    #: the largest round trip (received - sent) among the samples used
    backend_time: float  #: the backend's clock at the newest sample
    measured_at: float   #: local wall clock of the newest sample (its ``received``)
    samples: int         #: how many samples the estimate combines


class ClockEstimator:
    """Thread-safe (one lock). Each sample bounds the offset to the interval
    ``[sent - (backend + resolution), received - backend]``; the estimate
    intersects the intervals of the newest consistent samples (at most
    ``window``, default 8), newest first, stopping at the first that does not
    intersect (a clock step or drift: the newest samples win, so a stepped
    clock is followed at once). ``offset`` is the midpoint, ``error`` the
    half-width.

    "Newest" is the order of :meth:`add`.  A step smaller than the samples'
    intervals cannot be told from noise: until the older samples leave the
    window, the estimate may then be off by up to the step.
    """

    def __init__(self, window: int = 8) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self._lock = threading.Lock()
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self._estimate: ClockEstimate | None = None

    def add(self, sample: ClockSample) -> ClockEstimate:
        """Combine ``sample`` with the recent ones; return the new estimate.

        :raises ValueError: an unusable sample (see :meth:`ClockSample.check`);
            it is ignored and the estimate stays as it was.
        """
        sample.check()
        with self._lock:
            self._samples.append(sample)
            self._estimate = _combine(self._samples)
            return self._estimate

    def estimate(self) -> ClockEstimate | None:
        """The current estimate; None until the first sample."""
        with self._lock:
            return self._estimate

    def round_trip(self) -> float | None:
        """The largest round trip among the recent samples (the whole window,
        consistent or not); None until the first sample."""
        with self._lock:
            return max((s.round_trip for s in self._samples), default=None)


def _combine(samples: deque[ClockSample]) -> ClockEstimate:
    """Intersect the intervals of the newest samples that agree (newest first)."""
    newest = samples[-1]
    low, high, used, round_trip = newest.low, newest.high, 1, newest.round_trip
    for sample in reversed(list(samples)[:-1]):
        if sample.low > high or sample.high < low:
            break  # disagrees with everything newer: the clock stepped or drifted
        low, high = max(low, sample.low), min(high, sample.high)
        used += 1
        round_trip = max(round_trip, sample.round_trip)
    return ClockEstimate(offset=(low + high) / 2, error=(high - low) / 2,
                         round_trip=round_trip, backend_time=newest.backend,
                         measured_at=newest.received, samples=used)
