"""Who gets which handoff: the bookkeeping of an inbox, shared by the backends.

A backend lists this member's inbox (the ids of the handoffs in it, in the
order sent), reads the ones :meth:`InboxDelivery.unread` names, and calls the
batches :meth:`InboxDelivery.deliveries` returns.  This keeps, per group:
the watchers and the ids each was given (each handoff reaches each watcher
once, and a watcher added later gets everything still in the inbox), the
handoffs read (one read per handoff), and the ids acknowledged (never
delivered again, even while their delete is in flight).  Everything is
pruned to the latest listing, so memory follows the inbox, not its history.
Pure: no I/O; thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from zkpoll.coordination.handoff import Handoff, HandoffCallback

__all__ = ["InboxDelivery"]


class _Watcher:
    __slots__ = ("callback", "delivered")

    def __init__(self, callback: HandoffCallback) -> None:
        self.callback = callback
        self.delivered: set[str] = set()


class InboxDelivery:
    """Watchers, reads and acknowledgements of one member's inboxes (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, list[_Watcher]] = {}
        self._read: dict[str, dict[str, Handoff]] = {}  # group -> id -> handoff read
        self._acked: dict[str, set[str]] = {}  # group -> ids acknowledged, still listed

    def add(self, group: str, callback: HandoffCallback) -> Callable[[], None]:
        """Watch ``group``'s inbox with ``callback``; returns the cancel function."""
        watcher = _Watcher(callback)
        with self._lock:
            self._watchers.setdefault(group, []).append(watcher)

        def cancel() -> None:
            with self._lock:
                watchers = self._watchers.get(group, [])
                if watcher in watchers:
                    watchers.remove(watcher)
                if not watchers:
                    self._watchers.pop(group, None)
        return cancel

    def groups(self) -> list[str]:
        """The groups whose inbox has a watcher."""
        with self._lock:
            return sorted(self._watchers)

    def ack(self, group: str, handoff_ids: Iterable[str]) -> None:
        """Never deliver these handoffs again."""
        with self._lock:
            self._acked.setdefault(group, set()).update(handoff_ids)

    def unread(self, group: str, listed: Sequence[str]) -> list[str]:
        """The listed ids to read: neither read yet nor acknowledged."""
        with self._lock:
            read, acked = self._read.get(group, {}), self._acked.get(group, set())
            return [i for i in listed if i not in read and i not in acked]

    def deliveries(self, group: str, listed: Sequence[str],
                   read: Mapping[str, Handoff | None]) -> list[tuple[HandoffCallback,
                                                                     list[Handoff]]]:
        """Record the handoffs just ``read`` (None: gone or not a handoff) and
        return, per watcher, the listed handoffs it has not been given yet
        (marked given), in listing order."""
        present = set(listed)
        with self._lock:
            known = {i: h for i, h in self._read.get(group, {}).items() if i in present}
            known.update((i, h) for i, h in read.items() if h is not None and i in present)
            self._read[group] = known
            acked = self._acked.get(group, set()) & present
            self._acked[group] = acked
            batches = []
            for watcher in self._watchers.get(group, []):
                watcher.delivered &= present
                fresh = [known[i] for i in listed
                         if i in known and i not in acked and i not in watcher.delivered]
                watcher.delivered.update(h.handoff_id for h in fresh)
                if fresh:
                    batches.append((watcher.callback, fresh))
            return batches
