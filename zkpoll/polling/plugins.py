"""Load pollsters and discoveries through stevedore.

Pollsters live in ``zkpoll.poll.<namespace>`` (entry-point name = meter
name), discoveries in ``zkpoll.discover.<namespace>``.  Load failures are
a decision, not an accident: a plugin that raises
:class:`~zkpoll.exceptions.PluginOptOut` is skipped quietly (DEBUG); any
other failure is logged at ERROR with the entry point and counted in
:attr:`LoadedPlugins.failures`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import stevedore

from zkpoll.exceptions import PluginOptOut
from zkpoll.polling.plugin_base import Discovery, Pollster

__all__ = ["LoadedPlugins", "PollsterInfo", "load_plugins"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollsterInfo:
    """A loaded pollster and the namespace it came from."""

    meter: str
    namespace: str
    pollster: Pollster


@dataclass
class LoadedPlugins:
    """What loaded, keyed by meter (pollsters) or name (discoveries)."""

    pollsters: dict[str, PollsterInfo] = field(default_factory=dict)
    discoveries: dict[str, Discovery] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)   # "namespace:name" -> reason
    opted_out: dict[str, str] = field(default_factory=dict)


def _manager(namespace: str, conf: Any, plugins: LoadedPlugins) -> stevedore.ExtensionManager:
    def on_failure(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        key = f"{namespace}:{entry_point.name}"
        if isinstance(exc, PluginOptOut):
            plugins.opted_out[key] = str(exc)
            LOG.debug("plugin %s (%s) opted out: %s", key, entry_point.value, exc)
            return
        plugins.failures[key] = f"{type(exc).__name__}: {exc}"
        LOG.error("plugin %s (%s) failed to load and is DISABLED: %s: %s", key,
                  entry_point.value, type(exc).__name__, exc)

    return stevedore.ExtensionManager(namespace, invoke_on_load=True, invoke_args=(conf,),
                                      on_load_failure_callback=on_failure)


def load_plugins(conf: Any, namespaces: Iterable[str]) -> LoadedPlugins:
    """Load the pollsters and discoveries of ``namespaces`` (e.g. central, compute)."""
    plugins = LoadedPlugins()
    for ns in namespaces:
        for ext in _manager(f"zkpoll.poll.{ns}", conf, plugins):
            if not isinstance(ext.obj, Pollster):
                plugins.failures[f"zkpoll.poll.{ns}:{ext.name}"] = "not a Pollster"
                LOG.error("plugin %s is not a zkpoll Pollster; DISABLED", ext.name)
            elif ext.name in plugins.pollsters:
                LOG.warning("meter %s is provided by namespaces %s and %s; using %s",
                            ext.name, plugins.pollsters[ext.name].namespace, ns,
                            plugins.pollsters[ext.name].namespace)
            else:
                plugins.pollsters[ext.name] = PollsterInfo(ext.name, ns, ext.obj)
        for ext in _manager(f"zkpoll.discover.{ns}", conf, plugins):
            if not isinstance(ext.obj, Discovery):
                plugins.failures[f"zkpoll.discover.{ns}:{ext.name}"] = "not a Discovery"
                LOG.error("plugin %s is not a zkpoll Discovery; DISABLED", ext.name)
            else:
                plugins.discoveries.setdefault(ext.name, ext.obj)
    LOG.info("loaded %d pollster(s) and %d discovery plugin(s) from %s; %d failed, "
             "%d opted out", len(plugins.pollsters), len(plugins.discoveries),
             ", ".join(namespaces), len(plugins.failures), len(plugins.opted_out))
    return plugins
