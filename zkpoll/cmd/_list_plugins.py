"""``zkpoll-polling --list-plugins``: what is installed, from where, and what fails.

Every entry point of the pollster (``zkpoll.poll.<namespace>``), discovery
(``zkpoll.discover.<namespace>``) and publisher (``zkpoll.publisher``)
groups is loaded the way the agent loads it (pollsters and discoveries are
constructed with the configuration), plus the dynamic pollster definitions
of ``[polling] pollsters_definitions_dirs`` and the meters that
``zkpoll.pollster_sets`` entry points build from configuration.  Exit status: 0 when everything
loaded (a plugin that opts out is not a failure), 1 when anything failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TextIO

from oslo_config import cfg

from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.exceptions import PluginOptOut
from zkpoll.plugin import Discovery, Pollster, PollsterSet
from zkpoll.polling import dynamic, options
from zkpoll.polling.plugins import POLLSTER_SETS
from zkpoll.publisher.base import Publisher

__all__ = ["PluginRow", "list_plugins", "plugin_rows"]

_KINDS = (("zkpoll.poll.", "pollster"), ("zkpoll.discover.", "discovery"))
PUBLISHER_GROUP = "zkpoll.publisher"


@dataclass(frozen=True)
class PluginRow:
    """One plugin: where it comes from and whether it loads."""

    namespace: str
    kind: str
    name: str
    origin: str      # "dist version" or the definition file
    status: str      # "ok", "opted out: why" or "FAILED: why"

    @property
    def failed(self) -> bool:
        """True when the plugin would be disabled by a load failure."""
        return self.status.startswith("FAILED")


def _entry_points() -> Iterator[tuple[str, str, metadata.EntryPoint, str]]:
    """``(namespace, kind, entry point, distribution)`` of every zkpoll plugin."""
    seen: set[tuple[str, str, str]] = set()
    for dist in metadata.distributions():
        origin = f"{dist.metadata['Name']} {dist.version}"
        for ep in dist.entry_points:
            if (ep.group, ep.name, ep.value) in seen:
                continue
            if ep.group == PUBLISHER_GROUP:
                kind, namespace = "publisher", "-"
            else:
                found = [(k, ep.group[len(p):]) for p, k in _KINDS if ep.group.startswith(p)]
                if not found or not found[0][1]:
                    continue
                kind, namespace = found[0]
            seen.add((ep.group, ep.name, ep.value))
            yield namespace, kind, ep, origin


def _status(kind: str, ep: metadata.EntryPoint, conf: Any) -> str:
    try:
        obj = ep.load()
        if kind == "publisher":
            ok = isinstance(obj, type) and issubclass(obj, Publisher)
            return "ok" if ok else "FAILED: not a zkpoll Publisher"
        instance = obj(conf)
        expected = Pollster if kind == "pollster" else Discovery
        return "ok" if isinstance(instance, expected) else \
            f"FAILED: not a zkpoll {expected.__name__}"
    except PluginOptOut as exc:
        return f"opted out: {exc}"
    except Exception as exc:  # noqa: BLE001 - reporting why is the whole point
        return f"FAILED: {type(exc).__name__}: {exc}"


def plugin_rows(conf: cfg.ConfigOpts) -> list[PluginRow]:
    """Every installed plugin and dynamic pollster definition, sorted."""
    options.register_opts(conf)
    register_coordination_opts(conf)
    conf.register_opts(dynamic.OPTS, group="polling")
    rows = [PluginRow(namespace, kind, ep.name, f"{origin} ({ep.value})",
                      _status(kind, ep, conf))
            for namespace, kind, ep, origin in _entry_points()]
    definitions, failures = dynamic.load_definitions(conf.polling.pollsters_definitions_dirs)
    for definition in definitions:
        rows += [PluginRow(ns, "dynamic pollster", definition.name, definition.path, "ok")
                 for ns in definition.namespaces]
    for key, reason in failures.items():
        path, _, name = key.removeprefix("dynamic:").partition(":")
        rows.append(PluginRow("-", "dynamic pollster", name or "-", path, f"FAILED: {reason}"))
    rows += _pollster_set_rows(conf)
    return sorted(rows, key=lambda r: (r.kind == "publisher", r.namespace, r.kind, r.name))


def _pollster_set_rows(conf: cfg.ConfigOpts) -> list[PluginRow]:
    """A row per meter each ``zkpoll.pollster_sets`` entry point builds, and per failure."""
    rows = []
    for ep in metadata.entry_points(group=POLLSTER_SETS):
        origin = f"{ep.dist.metadata['Name']} {ep.dist.version}" if ep.dist else ep.value
        try:
            built = ep.load()(conf, ("central", "compute"))
            if not isinstance(built, PollsterSet):
                raise TypeError(f"returned {type(built).__name__}, not a PollsterSet")
        except Exception as exc:  # noqa: BLE001 - reporting why is the whole point
            rows.append(PluginRow("-", "pollster set", ep.name, origin,
                                  f"FAILED: {type(exc).__name__}: {exc}"))
            continue
        rows += [PluginRow(ns, f"{ep.name} meter", meter, origin, "ok")
                 for ns, meter, _ in built.pollsters]
        rows += [PluginRow("-", f"{ep.name} meter", key.rpartition(":")[2], origin,
                           f"FAILED: {reason}") for key, reason in built.failures.items()]
    return rows


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]])
            for row in rows]


def list_plugins(conf: cfg.ConfigOpts, out: TextIO) -> int:
    """Print the plugin table to ``out``; return 1 if any plugin failed to load, else 0."""
    logging.disable(logging.CRITICAL)  # the table says it all, for plugins' loggers too
    try:
        rows = plugin_rows(conf)
    finally:
        logging.disable(logging.NOTSET)
    lines = _table([("NAMESPACE", "KIND", "NAME", "FROM", "STATUS")]
                   + [(r.namespace, r.kind, r.name, r.origin, r.status) for r in rows])
    failed = sum(r.failed for r in rows)
    opted_out = sum(r.status.startswith("opted out") for r in rows)
    lines.append(f"{len(rows)} plugin(s): {len(rows) - failed - opted_out} loaded, "
                 f"{failed} failed, {opted_out} opted out")
    print("\n".join(lines), file=out)
    return 1 if failed else 0
