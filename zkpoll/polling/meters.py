"""Meter-name matching for polling sources, with Ceilometer's rules.

A source lists the meters it polls as fnmatch patterns (``host.*``, ``*``,
``http.status``); a pattern starting with ``!`` excludes.  The rules are
Ceilometer's (``Source.check_source_filtering`` and ``Source.is_supported``),
so a Ceilometer ``polling.yaml`` means the same thing here:

* a list is either all inclusions (``cpu``, ``disk.*``), or exclusions
  with at most the wildcard ``*`` (``!disk.*``, or ``*`` and ``!disk.*``);
  plain names and exclusions together are an error, and so are ``*`` and
  plain names;
* a name that matches an exclusion is never polled; else a name that
  matches an inclusion is polled; else it is polled only when the source
  has nothing but exclusions.

Matching is case-sensitive on every platform, and each pattern is turned
into a regular expression once, when the source is built.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

from zkpoll.yaml_lines import describe

__all__ = ["MeterMatcher", "check_meter_patterns"]

# Results cached per matcher; meter names come from the loaded pollsters,
# so this is a safety bound, not a tuning knob.
_CACHE_LIMIT = 4096


def check_meter_patterns(patterns: Sequence[object]) -> tuple[str, ...]:
    """Return ``patterns`` as a tuple, or raise TypeError/ValueError saying why.

    Checks that the list is non-empty, holds non-empty strings, and does not
    mix inclusions with exclusions (or ``*`` with plain names), as Ceilometer.
    """
    if isinstance(patterns, (str, bytes)) or not isinstance(patterns, Sequence):
        raise TypeError(f"must be a list of meter names, got {describe(patterns)}")
    if not patterns:
        raise ValueError("no meters specified; use '*' to poll every meter")
    for number, pattern in enumerate(patterns, 1):
        if not isinstance(pattern, str):
            raise TypeError(f"meter #{number} must be a string, got {describe(pattern)}")
        if pattern in ("", "!"):
            raise ValueError(f"meter #{number} is empty")
    names: tuple[str, ...] = tuple(patterns)  # type: ignore[arg-type]
    included = [p for p in names if p[0] not in "!*"]
    excluded = [p for p in names if p[0] == "!"]
    if included and excluded:
        raise ValueError(
            f"both included and excluded meters specified ({included[0]!r} and "
            f"{excluded[0]!r}); list either the meters to poll, or '*' and the "
            "meters to leave out")
    if "*" in names and included:
        raise ValueError(
            f"included meters specified with the wildcard '*' ({included[0]!r}); "
            "'*' already polls every meter")
    return names


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regular expression matching any of the fnmatch ``patterns``."""
    parts = [fnmatch.translate(p) for p in patterns]
    return re.compile("|".join(parts)) if parts else None


class MeterMatcher:
    """Decides which meter names a list of patterns selects.

    Immutable once built, and safe to share between threads (the result
    cache only ever holds values that a fresh evaluation would give).
    """

    __slots__ = ("_cache", "_exclude", "_include", "patterns")

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = check_meter_patterns(patterns)
        self._exclude = _compile(p[1:] for p in self.patterns if p[0] == "!")
        self._include = _compile(p for p in self.patterns if p[0] != "!")
        self._cache: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"MeterMatcher({list(self.patterns)!r})"

    def __call__(self, meter_name: str) -> bool:
        """Return True if ``meter_name`` is selected (see the module rules)."""
        try:
            return self._cache[meter_name]
        except KeyError:
            pass
        result = self._evaluate(meter_name)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[meter_name] = result
        return result

    def _evaluate(self, meter_name: str) -> bool:
        if self._exclude is not None and self._exclude.match(meter_name):
            return False
        if self._include is None:
            return True  # only exclusions: everything else is allowed
        return self._include.match(meter_name) is not None
