"""Start-up checks of what the agent was asked to load: refuse early, by name.

Pure functions over what was loaded (no I/O), plus :func:`installed_namespaces`
which reads the installed entry points:

- :func:`check_namespaces`: every ``--polling-namespaces`` entry must name a
  namespace some installed plugin or dynamic pollster definition provides;
- :func:`check_discoveries`: every discovery a polling source uses (its own
  ``discovery`` list, or a pollster's default discovery) must be loaded,
  reported with the polling YAML's file and line, not at every cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata

from zkpoll.exceptions import ConfigError, PollingConfigError
from zkpoll.polling.plugins import PollsterInfo
from zkpoll.polling.sources import Source

__all__ = ["check_discoveries", "check_namespaces", "installed_namespaces"]

POLL_PREFIX = "zkpoll.poll."
DISCOVER_PREFIX = "zkpoll.discover."


def installed_namespaces() -> set[str]:
    """Namespaces of the installed pollster and discovery entry points."""
    groups = metadata.entry_points().groups
    return {group.split(".", 2)[2] for group in groups
            if group.startswith((POLL_PREFIX, DISCOVER_PREFIX)) and group.count(".") >= 2}


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_namespaces(requested: Sequence[str], known: Iterable[str]) -> None:
    """Refuse an empty list or a namespace nothing provides (closest match named)."""
    known = set(known)
    if not requested:
        raise ConfigError("--polling-namespaces: give at least one namespace")
    for namespace in requested:
        if namespace not in known:
            raise ConfigError(
                f"--polling-namespaces: unknown namespace {namespace!r}; "
                f"{_suggest(namespace, known)}known namespaces: "
                f"{', '.join(sorted(known)) or 'none'}")


def check_discoveries(path: str, sources: Iterable[tuple[Source, Sequence[PollsterInfo]]],
                      discoveries: Mapping[str, object]) -> None:
    """Refuse a source whose discovery (or a pollster's default one) is not loaded.

    ``sources`` pairs each source that polls something with the pollsters it
    selected; ``discoveries`` is what loaded, by name.
    """
    loaded = ", ".join(sorted(discoveries)) or "none"
    for source, pollsters in sources:
        for entry in source.discovery:
            name = entry.partition("://")[0]
            if name not in discoveries:
                raise PollingConfigError(
                    path, f"unknown discovery {name!r}; {_suggest(name, discoveries)}"
                    f"loaded discoveries: {loaded}", source=source.name, line=source.line)
        if source.resources or source.discovery:
            continue
        for info in pollsters:
            default = info.pollster.default_discovery
            name = (default or "").partition("://")[0]
            if default and name not in discoveries:
                raise PollingConfigError(
                    path, f"meter {info.meter} needs discovery {name!r}, which is not "
                    f"loaded (loaded discoveries: {loaded}); list its resources or a "
                    "discovery in the source", source=source.name, line=source.line)
