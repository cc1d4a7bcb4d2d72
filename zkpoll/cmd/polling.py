"""``zkpoll-polling``: run a polling agent.

    zkpoll-polling [--config-file zkpoll.conf] [--polling-namespaces central compute]

SIGTERM or SIGINT stops it gracefully (its work is handed over without gap
or duplicate); a second signal stops it at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from oslo_config import cfg

from zkpoll.cmd._common import LOGGING_OPTS, check_all_options, die, setup_logging
from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.exceptions import ZkpollError
from zkpoll.polling import options
from zkpoll.polling.agent import Agent
from zkpoll.version import __version__

__all__ = ["CLI_OPTS", "main"]

PROG = "zkpoll-polling"

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
    except (ZkpollError, cfg.Error) as exc:
        return die(PROG, str(exc))
    stop = threading.Event()
    forced = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        (forced if stop.is_set() else stop).set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.start()
    while not stop.wait(3600):
        pass
    stopper = threading.Thread(target=agent.stop, kwargs={"graceful": True},
                               name="zkpoll-stop", daemon=True)
    stopper.start()
    while stopper.is_alive() and not forced.is_set():
        stopper.join(0.2)
    if forced.is_set():
        print(f"{PROG}: second signal: stopping at once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
