"""The handoff I/O of one partition: writing handoffs into a successor's inbox,
reading ours, and what a handoff carries (rules: :mod:`~zkpoll.ownership.handoff_rules`).

A handoff is one JSON object per (successor, source, cycle)::

    {"source": "static", "cycle": 123, "start": 1700000000.0, "interval": 10,
     "keys": ["res-1", ...], "tried": ["member-a"]}

written with :meth:`~zkpoll.coordination.base.Coordinator.send_handoff` and
read through :meth:`~zkpoll.coordination.base.Coordinator.watch_inbox`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from zkpoll.coordination.base import Coordinator
from zkpoll.exceptions import CoordinationError
from zkpoll.ownership.events import (
    AckHandoff,
    Contact,
    HandoffReceived,
    HandoffSent,
    SendHandoff,
)

__all__ = ["HandoffIO"]

LOG = logging.getLogger(__name__)


class HandoffIO:
    """Sends, receives and acknowledges one group's handoffs.

    :param contact: takes the clock readings an event carries, now
    """

    def __init__(self, coordinator: Coordinator, group: str,
                 contact: Callable[[], Contact]) -> None:
        self.coordinator = coordinator
        self.group = group
        self._contact = contact

    def send(self, action: SendHandoff) -> HandoffSent:
        """Write the handoff and wait for its confirmation (at most ``action.timeout``)."""
        payload = {"source": action.source, "cycle": action.index, "start": action.start,
                   "interval": action.interval, "keys": list(action.keys),
                   "tried": list(action.tried)}
        error = ""
        try:
            confirmed = self.coordinator.send_handoff(self.group, action.to, payload,
                                                      action.timeout)
        except CoordinationError as exc:
            confirmed, error = False, str(exc)
        if not confirmed and not error:
            error = f"not confirmed within {action.timeout:.2f}s"
        return HandoffSent(action.to, action.source, action.index, action.keys, confirmed,
                           self._contact(), error)

    def ack(self, action: AckHandoff) -> None:
        try:
            self.coordinator.ack_handoffs(self.group, action.handoff_ids)
        except CoordinationError as exc:
            LOG.warning("group %s: cannot delete handled handoffs %s: %s", self.group,
                        ", ".join(action.handoff_ids), exc)

    def received(self, handoff_id: str, sender: str,
                 payload: Any) -> HandoffReceived | None:
        """The event of one handoff read from our inbox (None, logged: malformed)."""
        try:
            data = dict(payload)
            keys, tried = data["keys"], data["tried"]
            source, index = data["source"], data["cycle"]
            start, interval = float(data["start"]), float(data["interval"])
            if not (isinstance(source, str) and isinstance(index, int)
                    and isinstance(keys, list) and isinstance(tried, list)
                    and math.isfinite(start) and interval > 0):
                raise ValueError("a field has the wrong type")
        except (KeyError, TypeError, ValueError) as exc:
            LOG.error("group %s: malformed handoff %s from %s ignored: %s", self.group,
                      handoff_id, sender, exc)
            return None
        return HandoffReceived(handoff_id, sender, source, index, start, interval,
                               tuple(str(k) for k in keys), tuple(str(m) for m in tried),
                               self._contact())
