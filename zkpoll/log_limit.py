"""Rate limiting of repeated log lines: :class:`LogLimiter`.

A sink that keeps failing would otherwise log the same line at every retry.
The publishers (:mod:`zkpoll.publisher.base`) and the durable-delivery loop
(:mod:`zkpoll.delivery`) log the first occurrence of a message at once and
then at most one summary line per minute, with the number of repeats.
"""

from __future__ import annotations

import threading
import time

__all__ = ["LogLimiter"]


class LogLimiter:
    """Decide when a repeated message is worth logging again.

    The first occurrence of a key is logged at once; later ones are added up
    and reported at most once per ``interval`` seconds.  ``reset()`` forgets
    every key (call it when delivery works again).  Thread-safe.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._keys: dict[str, list[float]] = {}  # key -> [last logged, pending]

    def hit(self, key: str, amount: int = 1) -> int | None:
        """Record ``amount``; return the total to report now, or None to stay quiet."""
        now = time.monotonic()
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                if len(self._keys) >= 100:  # a flood of distinct messages
                    self._keys.clear()
                self._keys[key] = [now, 0]
                return amount
            entry[1] += amount
            if now - entry[0] < self.interval:
                return None
            total, entry[0], entry[1] = int(entry[1]), now, 0
            return total

    def reset(self) -> bool:
        """Forget every key; return whether there were any."""
        with self._lock:
            had = bool(self._keys)
            self._keys.clear()
            return had
