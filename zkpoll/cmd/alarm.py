"""``zkpoll-alarm``: run an alarm evaluator.

    zkpoll-alarm [--config-file zkpoll.conf]

Evaluates the alarms of ``[alarm] definitions_dir``, sharing them with the
other evaluators of its group (see docs/alarming.md).  SIGTERM or SIGINT
stops it gracefully (its alarms are handed over without gap or
duplicate); a second signal stops it at once.  SIGHUP reloads the alarm
definitions (validated first; on an error the running ones are kept).
Configuration errors exit with status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from oslo_config import cfg

from zkpoll.alarm import options as alarm_options
from zkpoll.alarm.agent import AlarmAgent
from zkpoll.alarm.notify_options import register_opts as register_notify_opts
from zkpoll.cmd._common import (
    LOGGING_OPTS,
    check_all_options,
    die,
    parse_command_line,
    setup_logging,
)
from zkpoll.cmd._config_files import check_config_files
from zkpoll.cmd._run import run_daemon
from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.endpoint import server as api
from zkpoll.exceptions import ConfigError, ZkpollError
from zkpoll.service import instance_lock
from zkpoll.service.options import AGENT_COORDINATION_OPTS, DEFAULT_OPTS
from zkpoll.version import __version__

__all__ = ["CLI_OPTS", "main"]

PROG = "zkpoll-alarm"
LOG = logging.getLogger(PROG)

CLI_OPTS = [cfg.BoolOpt("debug", default=False, help="Log at DEBUG level.")]


def _parse(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf.register_opts(LOGGING_OPTS)
    parse_command_line(conf, list(sys.argv[1:] if argv is None else argv), project="zkpoll",
                       prog=PROG, version=__version__)
    try:
        conf.log_format  # noqa: B018 - read once: logging is set up before the other checks
    except (cfg.Error, ValueError) as exc:
        raise ConfigError(f"[DEFAULT] log_format: {exc}") from exc
    return conf


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Every option the evaluator reads."""
    conf.register_opts(DEFAULT_OPTS)
    register_coordination_opts(conf)
    conf.register_opts(AGENT_COORDINATION_OPTS, group="coordination")
    conf.register_opts(api.OPTS, group="api")
    alarm_options.register_opts(conf)
    register_notify_opts(conf)


def configure(conf: cfg.ConfigOpts) -> AlarmAgent:
    """Check everything and set the evaluator up (no I/O); raise ZkpollError on a problem."""
    try:
        register_opts(conf)
        check_all_options(conf)
        check_config_files(conf)
        agent = AlarmAgent(conf)
        agent.setup()
        return agent
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluator until signalled; return the exit status."""
    try:
        conf = _parse(argv)
    except ZkpollError as exc:
        return die(PROG, str(exc))
    setup_logging(conf.debug, conf.log_format)
    return run_daemon(PROG, conf, configure, _single_instance, LOG)


def _single_instance(conf: cfg.ConfigOpts,
                     agent: AlarmAgent) -> instance_lock.InstanceLock | None:
    """Standalone evaluators of one configuration would notify twice: lock it."""
    if not isinstance(agent.coordinator, StandaloneCoordinator):
        return None
    return instance_lock.acquire(instance_lock.default_lock_dir(),
                                 [*conf.config_file, *(conf.config_dir or [])],
                                 agent.alarms.directory, ["alarm-evaluator"])


if __name__ == "__main__":
    sys.exit(main())
