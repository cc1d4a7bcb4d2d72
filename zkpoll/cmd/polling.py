"""``zkpoll-polling``: run a polling agent.

    zkpoll-polling [--config-file zkpoll.conf] [--polling-namespaces central compute]

SIGTERM or SIGINT stops it gracefully (its work is handed over without gap
or duplicate); a second signal stops it at once.  SIGHUP reloads the
polling YAML and the dynamic pollster definitions (validated first; see
docs/signals.md).  A standalone agent (no backend) refuses to start, exit
status 2, while another one runs the same configuration.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from oslo_config import cfg

from zkpoll.cmd._common import (
    LOGGING_OPTS,
    check_all_options,
    die,
    parse_command_line,
    setup_logging,
)
from zkpoll.cmd._config_files import check_config_files, unknown_names
from zkpoll.cmd._list_plugins import list_plugins
from zkpoll.cmd._run import run_daemon
from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import ConfigError, ZkpollError
from zkpoll.polling import dynamic, options
from zkpoll.polling.agent import Agent
from zkpoll.polling.startup_checks import (
    check_discoveries,
    check_namespaces,
    installed_namespaces,
)
from zkpoll.service import instance_lock
from zkpoll.version import __version__

__all__ = ["CLI_OPTS", "main"]

PROG = "zkpoll-polling"
LOG = logging.getLogger(PROG)

CLI_OPTS = [
    cfg.MultiStrOpt("polling-namespaces", default=["compute", "central"],
                    dest="polling_namespaces",
                    help="Namespaces of pollsters to load (default: compute and central): "
                         "compute (this host), central (remote resources), synthetic "
                         "(tests), or a third-party namespace. Give several after one "
                         "flag (--polling-namespaces central compute), comma-separated "
                         "(--polling-namespaces central,compute) or by repeating the flag. "
                         "An unknown namespace is refused at start; --list-plugins shows "
                         "the installed ones."),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
    cfg.BoolOpt("list-plugins", default=False, dest="list_plugins",
                help="Print every installed pollster, discovery and publisher by "
                     "namespace, with its distribution, and which failed to load and "
                     "why; then exit: 0 when all loaded, 1 when any failed."),
]


def _parse(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf.register_opts(LOGGING_OPTS)
    args = list(sys.argv[1:] if argv is None else argv)
    parse_command_line(conf, _spread_namespaces(args), project="zkpoll", prog=PROG,
                       version=__version__)
    try:
        conf.log_format  # noqa: B018 - read once: logging is set up before the other checks
    except (cfg.Error, ValueError) as exc:
        raise ConfigError(f"[DEFAULT] log_format: {exc}") from exc
    return conf


def _spread_namespaces(args: list[str]) -> list[str]:
    """Accept Ceilometer's ``--polling-namespaces central compute`` form."""
    out: list[str] = []
    spreading = False
    for arg in args:
        if arg == "--polling-namespaces":
            spreading = True
            continue
        if spreading and not arg.startswith("-"):
            out.append(f"--polling-namespaces={arg}")
            continue
        spreading = False
        out.append(arg)
    return out


def _namespaces(conf: cfg.ConfigOpts) -> list[str]:
    """The requested namespaces; refuse one that nothing installed or defined provides."""
    namespaces = [ns.strip() for arg in conf.polling_namespaces for ns in arg.split(",")
                  if ns.strip()]
    known = installed_namespaces()
    if any(ns not in known for ns in namespaces):  # maybe a dynamic pollster's namespace
        definitions, _ = dynamic.load_definitions(conf.polling.pollsters_definitions_dirs)
        known |= {ns for definition in definitions for ns in definition.namespaces}
    check_namespaces(namespaces, known)
    return list(dict.fromkeys(namespaces))


def configure(conf: cfg.ConfigOpts) -> Agent:
    """Check everything and set the agent up (no I/O); raise ZkpollError on any problem."""
    try:
        return _configure(conf)
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from exc


def _configure(conf: cfg.ConfigOpts) -> Agent:
    options.register_opts(conf)
    register_coordination_opts(conf)
    conf.register_opts(dynamic.OPTS, group="polling")
    check_all_options(conf)
    agent = Agent(conf, _namespaces(conf))
    try:
        agent.setup()
    except ConfigError:
        # Plugins may not all be loaded: only names in registered sections (and
        # section names close to one) are sure to be typos, and likely the cause.
        problems = [why for _name, why in unknown_names(conf, registered_only=True)]
        if problems:
            raise ConfigError(problems[0]) from None
        raise
    check_all_options(conf)  # again: plugins may have registered options while loading
    check_config_files(conf)
    check_discoveries(agent.polling.path if agent.polling else "polling YAML",
                      [(r.source, r.pollsters) for r in agent.runners],
                      agent.plugins.discoveries)
    return agent


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until signalled; return the exit status."""
    try:
        conf = _parse(argv)
    except ZkpollError as exc:
        return die(PROG, str(exc))
    setup_logging(conf.debug, conf.log_format)
    if conf.list_plugins:
        return list_plugins(conf, sys.stdout)
    return run_daemon(PROG, conf, configure, _single_instance, LOG)


def _single_instance(conf: cfg.ConfigOpts, agent: Agent) -> instance_lock.InstanceLock | None:
    """Lock this configuration when the agent is standalone (None when coordinated)."""
    if not isinstance(agent.coordinator, StandaloneCoordinator) or agent.polling is None:
        return None
    lock_dir = conf.polling.lock_dir or instance_lock.default_lock_dir()
    return instance_lock.acquire(lock_dir, [*conf.config_file, *(conf.config_dir or [])],
                                 agent.polling.path, agent.namespaces)


if __name__ == "__main__":
    sys.exit(main())
