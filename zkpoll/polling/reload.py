"""SIGHUP: reload the polling YAML and the dynamic pollster definitions, validated first.

:func:`reload_agent` (behind :meth:`zkpoll.polling.agent.Agent.reload`)
reads ``[polling] cfg_file`` and the YAML files of ``[polling]
pollsters_definitions_dirs`` again, as at start.  Everything is checked
before anything changes: a file that does not load, a new dynamic
definition that is invalid, a configuration in which no source polls a
loaded meter, or one that would need other coordination groups than those
joined, keeps the running configuration, and one ERROR line names the file
and the problem.  A valid one is applied between cycles: sources added
start at their next cycle, removed ones stop before their next cycle,
changed ones (interval, meters, resources, discovery, publishers, or a
dynamic pollster they use) restart at their next cycle with the new
definition; unchanged sources go on untouched.  One INFO line says what
changed.

Entry-point plugins are not reloaded (their objects keep their state);
the oslo.config files are not re-read either: restart the agent for those.
Partitioned agents keep their group membership (no leave, no rejoin);
their published ``meters`` and ``intervals`` are updated only if they
changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from oslo_config import cfg

from zkpoll.coordination.member_data import MemberData
from zkpoll.exceptions import ConfigError
from zkpoll.ownership import Partition
from zkpoll.polling import dynamic, options
from zkpoll.polling.overlap import OverlapMonitor
from zkpoll.polling.ownership_filter import OwnershipFilter
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import SourceRunner
from zkpoll.polling.sources import PollingConfig, Source

__all__ = ["Planned", "ReloadResult", "ReloadableAgent", "reload_agent"]

LOG = logging.getLogger(__name__)
#: A source and the pollsters of the meters it polls.
Planned = tuple[Source, list[PollsterInfo]]


class ReloadableAgent(Protocol):
    """What a reload reads and replaces of the agent (``zkpoll.polling.agent.Agent``
    satisfies it; this module never imports the agent: no import cycle)."""

    conf: cfg.ConfigOpts
    namespaces: list[str]
    polling: PollingConfig | None
    plugins: LoadedPlugins
    runners: list[SourceRunner]
    partitions: dict[str, Partition]
    ownership: OwnershipFilter
    monitors: list[OverlapMonitor]
    last_stats: dict[str, Any]

    def plan(self, polling: PollingConfig, plugins: LoadedPlugins) -> list[Planned]:
        """(source, pollsters) of every source that polls a loaded meter."""

    def build_runner(self, source: Source, pollsters: Sequence[PollsterInfo],
                     plugins: LoadedPlugins) -> SourceRunner:
        """The runner of one source."""

    def partitioned_namespaces(self, planned: Sequence[Planned]) -> list[str]:
        """Namespaces whose work ``planned`` splits with other agents."""

    def member_data(self, namespace: str) -> dict[str, Any]:
        """What the agent publishes in the group of ``namespace``."""

    def start_loop(self, runner: SourceRunner) -> None:
        """Start the scheduler thread of a new runner."""


@dataclass
class ReloadResult:
    """What a reload did: the refusal, or the names added, removed and changed."""

    refused: str | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    dynamic_added: list[str] = field(default_factory=list)
    dynamic_removed: list[str] = field(default_factory=list)
    dynamic_changed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The one line logged after a reload."""
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("sources added:", self.added), ("sources removed:", self.removed),
            ("sources changed:", self.changed),
            ("dynamic pollsters added:", self.dynamic_added),
            ("dynamic pollsters removed:", self.dynamic_removed),
            ("dynamic pollsters changed:", self.dynamic_changed)) if names]
        return "; ".join(parts) or "nothing changed"


class _ThisThreadOnly(logging.Filter):
    """Drops the records of one thread (the reload's own loader messages)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the loggers ``names`` for this thread: the reload logs one line itself."""
    quiet = _ThisThreadOnly()
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _new_plugins(agent: ReloadableAgent) -> LoadedPlugins:
    """The agent's entry-point plugins plus freshly loaded dynamic pollsters."""
    current = agent.plugins
    plugins = LoadedPlugins(
        pollsters={m: i for m, i in current.pollsters.items()
                   if not isinstance(i.pollster, dynamic.DynamicPollster)},
        discoveries=dict(current.discoveries),
        failures={k: v for k, v in current.failures.items() if not k.startswith("dynamic:")},
        opted_out=dict(current.opted_out))
    loaded = dynamic.load_dynamic_pollsters(agent.conf, agent.namespaces)
    new_failures = {k: v for k, v in loaded.failures.items()
                    if current.failures.get(k) != v}
    if new_failures:
        first = next(iter(new_failures.values()))
        more = f" (and {len(new_failures) - 1} more)" if len(new_failures) > 1 else ""
        raise ConfigError(f"{first}{more}")
    plugins.failures.update(loaded.failures)
    for namespace, pollster in loaded.pollsters:
        other = plugins.pollsters.get(pollster.meter)
        if other is not None:
            raise ConfigError(f"{pollster.definition.path}: pollster {pollster.meter!r}: "
                              f"meter already provided by namespace {other.namespace}")
        plugins.pollsters[pollster.meter] = PollsterInfo(pollster.meter, namespace, pollster)
    for name, discovery in loaded.discoveries.items():
        plugins.discoveries.setdefault(name, discovery)
    return plugins


def _fingerprint(info: PollsterInfo) -> Any:
    """What identifies a pollster across a reload: its definition, or the object."""
    pollster = info.pollster
    if isinstance(pollster, dynamic.DynamicPollster):
        return (info.namespace, pollster.definition)
    return (info.namespace, id(pollster))


def _dynamic_names(plugins: LoadedPlugins) -> dict[str, Any]:
    return {m: _fingerprint(i) for m, i in plugins.pollsters.items()
            if isinstance(i.pollster, dynamic.DynamicPollster)}


def _same(runner: SourceRunner, source: Any, pollsters: list[PollsterInfo]) -> bool:
    return runner.source == source and \
        [_fingerprint(i) for i in runner.pollsters] == [_fingerprint(i) for i in pollsters]


def reload_agent(agent: ReloadableAgent) -> ReloadResult:
    """Reload ``agent``'s polling YAML and dynamic pollsters (see the module docstring)."""
    try:
        with _quiet("zkpoll.polling.dynamic", "zkpoll.polling.options"):
            polling = options.load_sources(agent.conf)
            plugins = _new_plugins(agent)
        planned = agent.plan(polling, plugins)
        _check_groups(agent, planned)
        old = {r.source.name: r for r in agent.runners}
        runners = [old[s.name] if s.name in old and _same(old[s.name], s, p)
                   else agent.build_runner(s, p, plugins) for s, p in planned]
    except ConfigError as exc:
        LOG.error("reload refused, keeping the running configuration: %s", exc)
        return ReloadResult(refused=str(exc))
    names = {r.source.name for r in runners}
    result = ReloadResult(
        added=sorted(names - set(old)), removed=sorted(set(old) - names),
        changed=sorted(r.source.name for r in runners
                       if r.source.name in old and r is not old[r.source.name]))
    before, after = _dynamic_names(agent.plugins), _dynamic_names(plugins)
    result.dynamic_added = sorted(set(after) - set(before))
    result.dynamic_removed = sorted(set(before) - set(after))
    result.dynamic_changed = sorted(m for m in set(after) & set(before)
                                    if after[m] != before[m])
    _apply(agent, polling, plugins, runners)
    LOG.info("reloaded %s and the dynamic pollsters: %s", polling.path, result.summary())
    return result


def _check_groups(agent: ReloadableAgent, planned: Sequence[Planned]) -> None:
    """Refuse a configuration that would need joining or leaving coordination groups."""
    if not agent.partitions:
        return
    wanted = set(agent.partitioned_namespaces(planned))
    if wanted != set(agent.partitions):
        raise ConfigError(
            f"{agent.polling.path if agent.polling else '[polling] cfg_file'}: the new "
            f"sources would partition namespaces {sorted(wanted)} instead of "
            f"{sorted(agent.partitions)}: restart the agent to change its groups")


def _apply(agent: ReloadableAgent, polling: PollingConfig, plugins: LoadedPlugins,
           runners: list[SourceRunner]) -> None:
    """Swap in the new runners (the agent's loops pick them up between cycles)."""
    started = [r for r in runners if r not in agent.runners]
    agent.polling = polling
    agent.plugins = plugins
    agent.runners = runners  # loops of runners no longer listed end before their next cycle
    agent.ownership.set_runners(runners)
    for name in list(agent.last_stats):
        if name not in {r.source.name for r in runners}:
            agent.last_stats.pop(name, None)
    for runner in started:
        agent.start_loop(runner)
    for ns, partition in agent.partitions.items():
        data = agent.member_data(ns)
        published = partition.data or {}
        change = {key: data[key] for key in (MemberData.METERS, MemberData.INTERVALS)
                  if published.get(key) != data[key]}
        if change:
            partition.update(change)
            LOG.info("group %s: published meters updated after the reload", partition.group)
    for monitor in agent.monitors:
        namespace_meters = agent.member_data(monitor.namespace)[MemberData.METERS]
        monitor.meters = frozenset(m for meters in namespace_meters.values() for m in meters)
