"""Load pollsters and discoveries through stevedore.

Pollsters live in ``zkpoll.poll.<namespace>`` (entry-point name = meter
name), discoveries in ``zkpoll.discover.<namespace>``.  Load failures are
a decision, not an accident: a plugin that raises
:class:`~zkpoll.exceptions.PluginOptOut` is skipped quietly (DEBUG); any
other failure is logged at ERROR with the entry point and counted in
:attr:`LoadedPlugins.failures`.  Dynamic pollsters (:mod:`zkpoll.polling.dynamic`)
are added after the entry points, then what ``zkpoll.pollster_sets`` entry
points build from configuration (e.g. the SNMP plugin's OID definitions);
an invalid definition is a failure too, keyed ``dynamic:<file>:<name>``
(or as the set says).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import stevedore

from zkpoll.exceptions import PluginOptOut
from zkpoll.plugin import Discovery, Pollster, PollsterSet
from zkpoll.polling import dynamic

__all__ = ["POLLSTER_SETS", "LoadedPlugins", "PollsterInfo", "load_plugins",
           "register_extensions"]

LOG = logging.getLogger(__name__)

#: Entry points building pollsters from configuration (:class:`zkpoll.plugin.PollsterSet`).
POLLSTER_SETS = "zkpoll.pollster_sets"


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


def register_extensions(plugins: LoadedPlugins, namespace: str, pollsters: Iterable[Any],
                        discoveries: Iterable[Any]) -> None:
    """Add loaded stevedore extensions of ``namespace`` to ``plugins``.

    Objects that are not a Pollster (Discovery) are counted as failures; a
    meter already provided by an earlier namespace keeps its first provider.
    :func:`zkpoll.testing.plugins.make_test_plugins` calls this too, so
    in-memory extensions get the same checks as installed ones.
    """
    for ext in pollsters:
        if not isinstance(ext.obj, Pollster):
            plugins.failures[f"zkpoll.poll.{namespace}:{ext.name}"] = "not a Pollster"
            LOG.error("plugin %s is not a zkpoll Pollster; DISABLED", ext.name)
        elif ext.name in plugins.pollsters:
            LOG.warning("meter %s is provided by namespaces %s and %s; using %s",
                        ext.name, plugins.pollsters[ext.name].namespace, namespace,
                        plugins.pollsters[ext.name].namespace)
        else:
            plugins.pollsters[ext.name] = PollsterInfo(ext.name, namespace, ext.obj)
    for ext in discoveries:
        if not isinstance(ext.obj, Discovery):
            plugins.failures[f"zkpoll.discover.{namespace}:{ext.name}"] = "not a Discovery"
            LOG.error("plugin %s is not a zkpoll Discovery; DISABLED", ext.name)
        else:
            plugins.discoveries.setdefault(ext.name, ext.obj)


def _add_built(plugins: LoadedPlugins, origin: str,
               built: Iterable[tuple[str, str, Pollster]]) -> None:
    """Add pollsters built from configuration (``origin`` names where, for
    the logs); a meter an earlier provider has is refused and counted."""
    for namespace, meter, pollster in built:
        other = plugins.pollsters.get(meter)
        if other is not None:
            plugins.failures[f"{origin}:{meter}"] = \
                f"meter already provided by namespace {other.namespace}"
            LOG.error("pollster %s (%s) is DISABLED: meter %s is already provided by "
                      "namespace %s", meter, origin, meter, other.namespace)
            continue
        plugins.pollsters[meter] = PollsterInfo(meter, namespace, pollster)


def _add_dynamic(plugins: LoadedPlugins, conf: Any, namespaces: list[str]) -> None:
    """Add the dynamic (YAML-defined) pollsters of the loaded namespaces."""
    loaded = dynamic.load_dynamic_pollsters(conf, namespaces)
    plugins.failures.update(loaded.failures)
    for namespace, pollster in loaded.pollsters:
        _add_built(plugins, f"dynamic:{pollster.definition.path}",
                   [(namespace, pollster.meter, pollster)])
    for name, discovery in loaded.discoveries.items():
        plugins.discoveries.setdefault(name, discovery)


def _add_pollster_sets(plugins: LoadedPlugins, conf: Any, namespaces: list[str]) -> None:
    """Add what each ``zkpoll.pollster_sets`` entry point builds from configuration."""
    manager = stevedore.ExtensionManager(
        POLLSTER_SETS, invoke_on_load=False,
        on_load_failure_callback=lambda _m, ep, exc: _set_failed(plugins, ep.name, exc))
    for ext in manager:
        try:
            built = ext.plugin(conf, namespaces)
            if not isinstance(built, PollsterSet):
                raise TypeError(f"returned {type(built).__name__}, not a PollsterSet")
        except Exception as exc:  # noqa: BLE001 - a broken plugin is logged and counted
            _set_failed(plugins, ext.name, exc)
            continue
        plugins.failures.update(built.failures)
        _add_built(plugins, f"{POLLSTER_SETS}:{ext.name}", built.pollsters)
        for name, discovery in built.discoveries.items():
            plugins.discoveries.setdefault(name, discovery)


def _set_failed(plugins: LoadedPlugins, name: str, exc: BaseException) -> None:
    plugins.failures[f"{POLLSTER_SETS}:{name}"] = f"{type(exc).__name__}: {exc}"
    LOG.error("pollster set %s failed to load and is DISABLED: %s: %s", name,
              type(exc).__name__, exc)


def load_plugins(conf: Any, namespaces: Iterable[str]) -> LoadedPlugins:
    """Load the pollsters and discoveries of ``namespaces`` (e.g. central, compute).

    Dynamic pollsters defined in ``[polling] pollsters_definitions_dirs``
    are added to the namespaces they belong to (HTTP: ``central``, host
    commands: ``compute``, unless their ``namespaces`` key says otherwise)
    when those namespaces are loaded.
    """
    namespaces = list(namespaces)
    plugins = LoadedPlugins()
    for ns in namespaces:
        register_extensions(plugins, ns, _manager(f"zkpoll.poll.{ns}", conf, plugins),
                            _manager(f"zkpoll.discover.{ns}", conf, plugins))
    if conf is not None:
        _add_dynamic(plugins, conf, namespaces)
        _add_pollster_sets(plugins, conf, namespaces)
    LOG.info("loaded %d pollster(s) and %d discovery plugin(s) from %s; %d failed, "
             "%d opted out", len(plugins.pollsters), len(plugins.discoveries),
             ", ".join(namespaces), len(plugins.failures), len(plugins.opted_out))
    return plugins
