"""Which series end, and when: Prometheus staleness, decided per member (pure).

A member remembers, per source and target, the series of its last
successful scrape.  It writes a staleness marker (:data:`zkpoll.sample.STALE_NAN`)
for a series when:

- a later successful scrape of the target no longer has it (as Prometheus);
- a scrape of the target fails (an error answer, a limit exceeded, an
  unparsable body): every series of the last success ends, ``up`` is 0;
- the target vanished from discovery: no longer among the source's keys in
  a cycle (``discovered``) while this member still remembers it.

A target that moved to another member (still discovered, not given to this
member in its own cycle) is forgotten without a marker: the new owner
scrapes it in the same cycle, and a marker would cut its series.  A
catch-up call (some keys of a cycle) forgets nothing.  Edge cases are in
``docs/scraping.md``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["StaleBook"]

#: What the caller needs to write a series' marker (its name, type, labels).
M = TypeVar("M")


class StaleBook(Generic[M]):
    """Per (source, target key), the series of this member's last successful scrape:
    a mapping of series identity (any hashable) to what marks it stale."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, dict[Hashable, M]]] = {}

    def succeeded(self, source: str, key: str, series: dict[Hashable, M]) -> list[M]:
        """Record a successful scrape (``series`` is kept, not copied); the series
        the last one had and this one has not (to mark stale)."""
        seen = self._seen.setdefault(source, {})
        before = seen.get(key)
        seen[key] = series
        if before is None:
            return []
        return [mark for s, mark in before.items() if s not in series]

    def failed(self, source: str, key: str) -> list[M]:
        """A scrape of ``key`` failed: every series of its last success ends."""
        before = self._seen.get(source, {}).pop(key, None)
        return [] if before is None else list(before.values())

    def forget(self, source: str, key: str) -> None:
        """``key`` is no longer scraped here and not ended by us (unreachable, handed off)."""
        self._seen.get(source, {}).pop(key, None)

    def cycle(self, source: str, given: Iterable[str], discovered: frozenset[str] | None,
              catch_up: bool) -> list[tuple[str, M]]:
        """After a call: targets vanished from discovery give their series to mark
        stale; targets moved away are forgotten.  ``(target key, mark)`` each."""
        seen = self._seen.get(source)
        if not seen or catch_up or discovered is None:
            return []
        given = set(given)
        ended: list[tuple[str, M]] = []
        for key in [k for k in seen if k not in given]:
            gone = seen.pop(key)
            if key not in discovered:
                ended.extend((key, mark) for mark in gone.values())
        return ended

    def targets(self, source: str) -> int:
        """How many targets this member remembers for ``source``."""
        return len(self._seen.get(source, {}))
