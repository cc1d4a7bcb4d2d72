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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["SeriesKey", "StaleBook"]

#: (name, labels in a fixed order): one series of one target.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Seen:
    series: dict[SeriesKey, str] = field(default_factory=dict)   # series -> sample type


class StaleBook:
    """Per (source, target key), the series of this member's last successful scrape."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, _Seen]] = {}

    def succeeded(self, source: str, key: str,
                  series: Mapping[SeriesKey, str]) -> list[tuple[SeriesKey, str]]:
        """Record a successful scrape; the series it no longer has (to mark stale)."""
        seen = self._seen.setdefault(source, {})
        before = seen.get(key)
        seen[key] = _Seen(dict(series))
        if before is None:
            return []
        return [(s, kind) for s, kind in before.series.items() if s not in series]

    def failed(self, source: str, key: str) -> list[tuple[SeriesKey, str]]:
        """A scrape of ``key`` failed: every series of its last success ends."""
        before = self._seen.get(source, {}).pop(key, None)
        return [] if before is None else list(before.series.items())

    def forget(self, source: str, key: str) -> None:
        """``key`` is no longer scraped here and not ended by us (unreachable, handed off)."""
        self._seen.get(source, {}).pop(key, None)

    def cycle(self, source: str, given: Iterable[str], discovered: frozenset[str] | None,
              catch_up: bool) -> list[tuple[str, SeriesKey, str]]:
        """After a call: targets vanished from discovery give their series to mark
        stale; targets moved away are forgotten.  ``(key, series, type)`` each."""
        seen = self._seen.get(source)
        if not seen or catch_up or discovered is None:
            return []
        given = set(given)
        ended: list[tuple[str, SeriesKey, str]] = []
        for key in [k for k in seen if k not in given]:
            gone = seen.pop(key)
            if key not in discovered:
                ended.extend((key, s, kind) for s, kind in gone.series.items())
        return ended

    def targets(self, source: str) -> int:
        """How many targets this member remembers for ``source``."""
        return len(self._seen.get(source, {}))
