"""Log a failure that repeats at every heartbeat once, not at every heartbeat.

A misconfigured credential or a foreign ephemeral node fails the same way
several times a second until someone fixes it; the operator needs the first
message, a reminder now and then, and a line when it is over.
"""

from __future__ import annotations

import logging
import time

__all__ = ["RepeatedFailure"]


class RepeatedFailure:
    """One WARNING when a failure starts or changes, a reminder every ``every`` s, one
    INFO when it ends."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self._log = logger
        self._every = every
        self._current: dict[str, tuple[str, float, int]] = {}  # what -> (message, logged, count)

    def failed(self, what: str, message: str) -> None:
        """``what`` (e.g. "publish member m in g") failed with ``message``."""
        now = time.monotonic()
        previous = self._current.get(what)
        if previous is None or previous[0] != message:
            self._log.warning("could not %s: %s (retrying at every heartbeat)", what, message)
            self._current[what] = (message, now, 1)
        elif now - previous[1] >= self._every:
            self._log.warning("still cannot %s after %d attempts: %s", what, previous[2] + 1,
                              message)
            self._current[what] = (message, now, previous[2] + 1)
        else:
            self._current[what] = (message, previous[1], previous[2] + 1)

    def succeeded(self, what: str) -> None:
        """``what`` worked: say so if it had been failing."""
        previous = self._current.pop(what, None)
        if previous is not None:
            self._log.info("%s: done after %d failed attempt(s)", what, previous[2])
