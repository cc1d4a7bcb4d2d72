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
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from oslo_config import cfg

from zkpoll.cmd._common import LOGGING_OPTS, check_all_options, die, setup_logging
from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import ZkpollError
from zkpoll.polling import instance_lock, options
from zkpoll.polling.agent import Agent
from zkpoll.version import __version__

__all__ = ["CLI_OPTS", "main"]

PROG = "zkpoll-polling"
LOG = logging.getLogger(PROG)

CLI_OPTS = [
    cfg.MultiStrOpt("polling-namespaces", default=["compute", "central"],
                    dest="polling_namespaces",
                    help="Namespaces of pollsters to load: compute (this host), "
                         "central (remote resources), synthetic (tests), or a "
                         "third-party namespace."),
    cfg.BoolOpt("debug", default=False, help="Log at DEBUG level."),
]


def _parse(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(CLI_OPTS)
    conf.register_opts(LOGGING_OPTS)
    args = list(sys.argv[1:] if argv is None else argv)
    conf(_spread_namespaces(args), project="zkpoll", prog=PROG, version=__version__)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent until signalled; return the exit status."""
    try:
        conf = _parse(argv)
    except cfg.Error as exc:
        return die(PROG, str(exc))
    try:
        log_format = conf.log_format
    except (cfg.Error, ValueError) as exc:
        return die(PROG, f"[DEFAULT] log_format: {exc}")
    setup_logging(conf.debug, log_format)
    agent = Agent(conf, [ns for arg in conf.polling_namespaces for ns in arg.split(",") if ns])
    try:
        options.register_opts(conf)
        register_coordination_opts(conf)
        check_all_options(conf)
        agent.setup()
        lock = _single_instance(conf, agent)
    except (ZkpollError, cfg.Error) as exc:
        return die(PROG, str(exc))
    stop = threading.Event()
    forced = threading.Event()
    reload = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        (forced if stop.is_set() else stop).set()
        wake.set()

    def on_hangup(signum: int, _frame: FrameType | None) -> None:
        reload.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    agent.start()
    while not stop.is_set():
        wake.wait(3600)
        wake.clear()
        if reload.is_set() and not stop.is_set():
            reload.clear()
            _reload(agent)
    stopper = threading.Thread(target=agent.stop, kwargs={"graceful": True},
                               name="zkpoll-stop", daemon=True)
    stopper.start()
    while stopper.is_alive() and not forced.is_set():
        stopper.join(0.2)
    if forced.is_set():
        print(f"{PROG}: second signal: stopping at once", file=sys.stderr)
        return 1
    if lock is not None:
        lock.release()
    return 0


def _single_instance(conf: cfg.ConfigOpts, agent: Agent) -> instance_lock.InstanceLock | None:
    """Lock this configuration when the agent is standalone (None when coordinated)."""
    if not isinstance(agent.coordinator, StandaloneCoordinator) or agent.polling is None:
        return None
    lock_dir = conf.polling.lock_dir or instance_lock.default_lock_dir()
    return instance_lock.acquire(lock_dir, [*conf.config_file, *(conf.config_dir or [])],
                                 agent.polling.path, agent.namespaces)


def _reload(agent: Agent) -> None:
    """SIGHUP: reload; the agent logs what changed or why it refused."""
    try:
        agent.reload()
    except Exception as exc:  # noqa: BLE001 - a failed reload must not stop the agent
        LOG.error("reload failed, keeping the running configuration: %s: %s",
                  type(exc).__name__, exc)


if __name__ == "__main__":
    sys.exit(main())
