"""The backend's clock as every coordinator exposes it (a mixin of
:class:`~zkpoll.coordination.base.Coordinator`): this member's offset
against the backend's clock, estimated from the samples the backend's
answers carry (:mod:`zkpoll.coordination.clock`), and how late a
membership change may reach this member.
"""

from __future__ import annotations

import abc
import logging
from typing import ClassVar

from zkpoll.coordination.clock import ClockEstimate, ClockEstimator, ClockSample

__all__ = ["BackendClock"]

LOG = logging.getLogger(__name__)


class BackendClock:
    """Clock offset and watch delay of a coordinator (see the module docstring)."""

    #: False when the backend's clock is not its host's wall clock (Memcached's
    #: is its start time plus its uptime, in 1 s ticks): offsets are measured and
    #: shown, but the ownership clock rule does not judge members by them.
    clock_is_wall_clock: ClassVar[bool] = True
    _clock: ClockEstimator  #: set by the coordinator; backends add their samples

    def clock(self) -> ClockEstimate | None:
        """The current estimate of this member's clock offset against the
        backend's (None until an answer carried the backend's time)."""
        return self._clock.estimate()

    @abc.abstractmethod
    def measure_clock(self, timeout: float = 5.0) -> ClockEstimate:
        """Take one fresh sample of the backend's clock now (one probe request)
        and return the estimate that includes it.

        :raises CoordinationError: no usable answer within ``timeout`` s.
        """

    @abc.abstractmethod
    def watch_delay(self) -> float:
        """The measured worst delay, in seconds, with which a membership change
        reaches this member's watchers (from the recent round trips)."""

    def _add_clock_sample(self, sample: ClockSample | None) -> None:
        """Feed a sample taken by the backend (None or unusable: ignored; never raises)."""
        if sample is not None:
            try:
                self._clock.add(sample)
            except ValueError as exc:
                LOG.debug("clock sample ignored: %s", exc)
