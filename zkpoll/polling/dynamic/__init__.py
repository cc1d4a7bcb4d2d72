"""Dynamic pollsters: pollsters defined in YAML, in Ceilometer's format.

Operators put YAML files (``*.yaml``, ``*.yml``) in the directories of
``[polling] pollsters_definitions_dirs``; each holds a list of definitions
(docs/plugins.md lists the keys).  A definition is one of:

- an HTTP API (``url_path``), in namespace ``central``.  An absolute
  ``url_path`` is the pollster's one resource (its default discovery is
  ``dynamic_url://<url>``, so it is partitioned like any resource); a
  relative one is joined to each resource of the source, which are then
  base URLs.  Each answer is parsed (``response_handlers``), its entries
  picked (``response_entries_key``), pages followed
  (``next_sample_url_attribute``, at most :data:`MAX_PAGES`);
- a local command (``host_command``), run by ``/bin/sh`` on this host, in
  namespace ``compute``; its resource is this host (``local_host``).

A ``namespaces`` key overrides the namespace.  One GET (or command run) per
target per cycle is shared by every dynamic pollster that reads it the same
way.  An invalid definition is logged at ERROR with its file, name and
reason and counted as a load failure; the others still load.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from oslo_config import cfg

from zkpoll.discovery.local import LocalHostDiscovery
from zkpoll.exceptions import ConfigError
from zkpoll.plugin import Discovery, PollingContext
from zkpoll.polling.dynamic.defs import Definition, parse_definition
from zkpoll.polling.dynamic.pollster import URL_DISCOVERY, DynamicPollster
from zkpoll.yaml_lines import yaml_files

__all__ = ["OPTS", "DynamicPlugins", "DynamicPollster", "URLDiscovery", "load_definitions",
           "load_dynamic_pollsters"]

LOG = logging.getLogger(__name__)

OPTS = [
    cfg.ListOpt("pollsters_definitions_dirs", default=["/etc/zkpoll/pollsters.d"],
                help="Directories of dynamic pollster definitions: YAML files (*.yaml, "
                     "*.yml) in OpenStack Ceilometer's dynamic pollster format, for HTTP "
                     "APIs (namespace central) and local host commands (namespace "
                     "compute). An invalid definition is logged with its file and the "
                     "reason and skipped; the others still load. A missing directory "
                     "is ignored."),
]


class URLDiscovery(Discovery):
    """``dynamic_url://URL``: the one resource ``URL``, taken verbatim."""

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        return [param] if param else []


def _read(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as exc:
        line = f":{exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem}") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if data is None:
        return []
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of pollster definitions, not "
                          f"{type(data).__name__}")
    return data


def load_definitions(dirs: Iterable[str]) -> tuple[list[Definition], dict[str, str]]:
    """Read every definition in ``dirs``: the valid ones, and failures by key."""
    definitions: list[Definition] = []
    failures: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in yaml_files(dirs, "dynamic pollster"):
        try:
            raws = _read(path)
        except ConfigError as exc:
            failures[f"dynamic:{path}"] = str(exc)
            LOG.error("dynamic pollsters of %s are DISABLED: %s", path, exc)
            continue
        for index, raw in enumerate(raws):
            name = raw.get("name") if isinstance(raw, dict) else None
            key = f"dynamic:{path}:{name if isinstance(name, str) else f'#{index + 1}'}"
            try:
                definition = parse_definition(raw, path, index)
                if definition.name in seen:
                    raise ConfigError(f"{path}: pollster {definition.name!r}: already "
                                      f"defined in {seen[definition.name]}")
            except ConfigError as exc:
                failures[key] = str(exc)
                LOG.error("dynamic pollster DISABLED: %s", exc)
                continue
            seen[definition.name] = path
            definitions.append(definition)
    return definitions, failures


@dataclass
class DynamicPlugins:
    """Dynamic pollsters by namespace, the discoveries they need, and failures."""

    pollsters: list[tuple[str, DynamicPollster]] = field(default_factory=list)
    discoveries: dict[str, Discovery] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def load_dynamic_pollsters(conf: Any, namespaces: Sequence[str]) -> DynamicPlugins:
    """Build the dynamic pollsters of ``namespaces`` from ``pollsters_definitions_dirs``."""
    if isinstance(conf, cfg.ConfigOpts):
        conf.register_opts(OPTS, group="polling")
    dirs = getattr(getattr(conf, "polling", None), "pollsters_definitions_dirs", None) or []
    definitions, failures = load_definitions(dirs)
    result = DynamicPlugins(failures=failures)
    for definition in definitions:
        namespace = next((ns for ns in definition.namespaces if ns in namespaces), None)
        if namespace is None:
            LOG.debug("dynamic pollster %s: namespaces %s not loaded", definition.name,
                      list(definition.namespaces))
            continue
        result.pollsters.append((namespace, DynamicPollster(definition, conf)))
        if definition.host_command:
            result.discoveries.setdefault("local_host", LocalHostDiscovery(conf))
        elif definition.absolute_url:
            result.discoveries.setdefault(URL_DISCOVERY, URLDiscovery(conf))
    if result.pollsters:
        LOG.info("loaded %d dynamic pollster(s): %s", len(result.pollsters),
                 ", ".join(p.meter for _, p in result.pollsters))
    return result
