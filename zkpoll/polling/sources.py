"""Polling sources: the polling YAML, in Ceilometer's format.

A Ceilometer ``polling.yaml`` loads unchanged::

    sources:
      - name: host_pollsters        # required, unique in the file
        interval: 60                # required, whole seconds, 1 to 31 days
        meters: ["host.*"]          # required; fnmatch patterns, "!x" excludes
        resources: []               # optional static resource ids or URLs
        discovery: []               # optional "name" or "name://param"
        publishers: ["log://"]      # optional; absent: default publishers

``sinks`` in a source is read as ``publishers`` when its entries are URLs;
bare names in it are Ceilometer pipeline sink names and are ignored, like a
top-level ``sinks`` list.  Unknown keys are logged, not fatal (Ceilometer
adds keys over time).  Anything invalid raises
:class:`zkpoll.exceptions.PollingConfigError` naming the file, the line and
the source.  The file is parsed with PyYAML's safe loader: no Python tags.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import yaml

from zkpoll.exceptions import ConfigError, PollingConfigError
from zkpoll.polling.meters import MeterMatcher, check_meter_patterns
from zkpoll.scrape.config import ScrapeConfig, parse_scrape
from zkpoll.yaml_lines import describe, key_lines, node_line, read_yaml, value_node

__all__ = ["PollingConfig", "Source", "load_polling_config", "sources_overlap"]

LOG = logging.getLogger(__name__)

_SOURCE_KEYS = frozenset(
    {"name", "interval", "meters", "resources", "discovery", "publishers", "sinks", "scrape"})
_T = TypeVar("_T")
#: Longest polling interval accepted: 31 days.
MAX_INTERVAL = 31 * 86400


def _check_name(value: object) -> str:
    """Return a valid source name or raise TypeError/ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {describe(value)}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _check_interval(value: object) -> int:
    """Return a valid polling interval (whole seconds, 1 to MAX_INTERVAL) or raise.

    Raises TypeError/ValueError.  The upper bound refuses values that would
    overflow the scheduler (``1e20``) or that are surely a typo.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        quoted = isinstance(value, str) and value.strip().isdigit()
        hint = " (write it without quotes)" if quoted else ""
        raise TypeError(f"must be a whole number of seconds, got {describe(value)}{hint}")
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")
    if value > MAX_INTERVAL:
        shown = str(value) if value < 10**20 else "a number of 20 digits or more"
        raise ValueError(f"must be at most {MAX_INTERVAL} seconds (31 days), got {shown}")
    return value


def _check_strings(value: object, what: str = "entry") -> tuple[str, ...]:
    """Return a list of non-empty strings as a tuple, or raise TypeError/ValueError."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"must be a list, got {describe(value)}")
    for number, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise TypeError(f"{what} #{number} must be a string, got {describe(item)}")
        if not item.strip():
            raise ValueError(f"{what} #{number} is empty")
    return tuple(value)


def _check_discovery(value: object) -> tuple[str, ...]:
    """Return discovery entries (``name`` or ``name://param``), or raise."""
    entries = _check_strings(value, "discovery")
    for number, entry in enumerate(entries, 1):
        if entry.partition("://")[0] == "":
            raise ValueError(f"discovery #{number} ({entry!r}) has no name before '://'")
    return entries


@dataclasses.dataclass(frozen=True)
class Source:
    """One polling source: which meters to poll, how often, on what.

    ``line`` is where the source starts in its file (None when built in
    code); it is not compared, so moving a source in its file does not make
    it a different source.
    """

    name: str
    interval: int
    meters: tuple[str, ...]
    resources: tuple[str, ...] = ()
    discovery: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()
    #: Prometheus scrape settings (``scrape:``), for the ``prometheus.scrape`` meter
    scrape: ScrapeConfig | None = dataclasses.field(default=None, hash=False)
    line: int | None = dataclasses.field(default=None, compare=False)
    _matcher: MeterMatcher = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_interval(self.interval)
        setattr_ = object.__setattr__  # frozen: normalise once, here
        setattr_(self, "meters", check_meter_patterns(self.meters))
        setattr_(self, "resources", _check_strings(self.resources, "resource"))
        setattr_(self, "discovery", _check_discovery(self.discovery))
        setattr_(self, "publishers", _check_strings(self.publishers, "publisher"))
        setattr_(self, "_matcher", MeterMatcher(self.meters))

    def match_meter(self, meter_name: str) -> bool:
        """Return True if this source polls ``meter_name`` (Ceilometer's rules)."""
        return self._matcher(meter_name)

    def select_meters(self, available: Iterable[str]) -> list[str]:
        """Return the sorted, distinct names in ``available`` this source polls."""
        return sorted(self.meter_set(available))

    def meter_set(self, available: Iterable[str]) -> frozenset[str]:
        """Return the names in ``available`` this source polls."""
        return frozenset(name for name in available if self._matcher(name))


@dataclasses.dataclass(frozen=True)
class PollingConfig:
    """A loaded polling YAML: its path and its sources, in file order."""

    path: str
    sources: tuple[Source, ...]


def sources_overlap(a: Source, b: Source, available: Iterable[str]) -> set[str]:
    """Return the names in ``available`` that both ``a`` and ``b`` would poll."""
    names = tuple(available)  # may be an iterator: read it once
    return set(a.meter_set(names) & b.meter_set(names))


def load_polling_config(path: str) -> PollingConfig:
    """Read and check the polling YAML at ``path``.

    :raises PollingConfigError: the file is missing, unreadable, not YAML,
        or not a valid polling definition; the message says where and why.
    """
    root, data = read_yaml(path, lambda reason, line: PollingConfigError(path, reason, line=line))
    if not isinstance(data, dict):
        raise PollingConfigError(
            path, f"expected a mapping with a 'sources' list, got {describe(data)}",
            line=node_line(root))
    keys = key_lines(root)
    for key in data:
        if key == "sinks":
            LOG.info("%s:%s: ignoring the top-level 'sinks' list (Ceilometer pipeline "
                     "format); sources publish to their own or the default publishers",
                     path, keys.get("sinks"))
        elif key != "sources":
            LOG.warning("%s:%s: unknown top-level key %r ignored", path, keys.get(str(key)), key)
    items, nodes = _source_list(path, root, data)
    sources: list[Source] = []
    seen: dict[str, Source] = {}
    for number, (raw, node) in enumerate(zip(items, nodes), 1):
        source = _build_source(path, number, raw, node)
        if source.name in seen:
            raise PollingConfigError(
                path, f"duplicate source name (first defined at line {seen[source.name].line})",
                source=source.name, line=source.line)
        seen[source.name] = source
        sources.append(source)
    return PollingConfig(path=path, sources=tuple(sources))


def _source_list(path: str, root: yaml.Node, data: dict[Any, Any]
                 ) -> tuple[list[Any], list[yaml.Node]]:
    """Return the raw ``sources`` items and their nodes, or raise."""
    if data.get("sources") is None:
        raise PollingConfigError(path, "no 'sources' list", line=node_line(root))
    items = data["sources"]
    node = value_node(root, "sources")
    if node is None:  # not found in the tree (exotic YAML): fall back to the file's top
        node = root
    if not isinstance(items, list):
        raise PollingConfigError(path, f"'sources' must be a list, got {describe(items)}",
                                 line=node_line(node))
    if not items:
        raise PollingConfigError(path, "'sources' is empty", line=node_line(node))
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node] * len(items)
    return items, list(nodes)


def _build_source(path: str, number: int, raw: Any, node: yaml.Node) -> Source:
    """Check one raw source mapping and build its :class:`Source`."""
    line = node_line(node)
    if not isinstance(raw, dict):
        raise PollingConfigError(
            path, f"source #{number} must be a mapping, got {describe(raw)}", line=line)
    keys = key_lines(node)
    if "name" not in raw:
        raise PollingConfigError(path, f"source #{number} has no 'name'", line=line)
    name = _field(path, None, keys.get("name", line), "name", _check_name, raw["name"])

    def field(key: str, check: Callable[[Any], _T], *, required: bool = False) -> _T:
        value = raw.get(key)
        if value is None and required:
            raise PollingConfigError(path, f"'{key}' is required", source=name, line=line)
        return _field(path, name, keys.get(key, line), key, check,
                      () if value is None else value)

    for key in sorted(set(map(str, raw)) - _SOURCE_KEYS):
        LOG.warning("%s:%s: source %r: unknown key %r ignored", path, keys.get(key, line),
                    name, key)
    return Source(
        name=name,
        interval=field("interval", _check_interval, required=True),
        meters=field("meters", check_meter_patterns, required=True),
        resources=field("resources", lambda v: _check_strings(v, "resource")),
        discovery=field("discovery", _check_discovery),
        publishers=_publishers(path, name, line, field),
        scrape=_scrape(path, name, keys.get("scrape", line), raw.get("scrape")),
        line=line,
    )


def _scrape(path: str, name: str, line: int | None, raw: Any) -> ScrapeConfig | None:
    """A source's ``scrape:`` settings, checked (PollingConfigError naming the key)."""
    if raw is None:
        return None
    try:
        return parse_scrape(raw, name)
    except ConfigError as exc:
        raise PollingConfigError(path, str(exc), source=name, line=line) from None


def _publishers(path: str, name: str, line: int | None,
                field: Callable[..., tuple[str, ...]]) -> tuple[str, ...]:
    """Publisher URLs of a source, from ``publishers`` and ``sinks``.

    A bare ``publishers`` entry ``log`` means ``log://`` (as in Ceilometer;
    ``file:rel.jsonl`` has a scheme and is kept as it is);
    a bare ``sinks`` entry names a Ceilometer pipeline sink and is ignored.
    """
    check = (lambda v: _check_strings(v, "publisher"))
    urls = [p if ":" in p else p + "://" for p in field("publishers", check)]
    sinks = field("sinks", check)
    urls += [s for s in sinks if "://" in s]
    ignored = [s for s in sinks if "://" not in s]
    if ignored:
        LOG.info("%s:%s: source %r: ignoring Ceilometer sink names %s; use publisher "
                 "URLs to choose where its samples go", path, line, name, ignored)
    return tuple(dict.fromkeys(urls))


def _field(path: str, source: str | None, line: int | None, key: str,
           check: Callable[[Any], _T], value: Any) -> _T:
    """Run ``check`` on one value; turn its complaint into a PollingConfigError."""
    try:
        return check(value)
    except (TypeError, ValueError) as exc:
        raise PollingConfigError(path, f"invalid '{key}': {exc}", source=source,
                                 line=line) from exc
