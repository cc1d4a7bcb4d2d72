"""Run a daemon until signalled: the configure-lock-run-release steps and the
signal protocol that zkpoll-polling and zkpoll-alarm share.

SIGTERM or SIGINT: graceful stop (``agent.stop(graceful=True)`` in a thread);
a second one: stop at once (exit status 1).  SIGHUP: ``reload()`` (its
failure is logged, never fatal).

A daemon makes many short-lived, acyclic objects (samples, their labels):
full garbage collections (generation 2) run 100 times less often than
Python's default, which more than doubles what one core scrapes
(``docs/design.md``, "Garbage collection").
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol, TypeVar

from oslo_config import cfg

from zkpoll.cmd._common import die
from zkpoll.exceptions import ZkpollError
from zkpoll.service.instance_lock import InstanceLock

__all__ = ["Daemon", "run_daemon", "run_until_signalled"]

#: Seconds at most between a signal and its handler running (see the main loop).
_HANDLER_LATENCY = 0.5
#: gc thresholds of a daemon: Python's generations 0 and 1, generation 2 100x rarer.
GC_THRESHOLDS = (700, 10, 1000)


class Daemon(Protocol):
    """What :func:`run_until_signalled` drives."""

    def start(self) -> None: ...

    def stop(self, graceful: bool = True) -> None: ...

    def reload(self) -> object: ...


D = TypeVar("D", bound=Daemon)


def run_daemon(prog: str, conf: cfg.ConfigOpts, configure: Callable[[cfg.ConfigOpts], D],
               single_instance: Callable[[cfg.ConfigOpts, D], InstanceLock | None],
               log: logging.Logger) -> int:
    """Configure the daemon, take its instance lock, run it until signalled, release
    the lock; the exit status (2: one line on stderr says what is wrong)."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        daemon = configure(conf)
        lock = single_instance(conf, daemon)
    except ZkpollError as exc:
        return die(prog, str(exc))
    code = run_until_signalled(prog, daemon, daemon.reload, log)
    if code:
        return code
    if lock is not None:
        lock.release()
    return 0


def run_until_signalled(prog: str, agent: Daemon, reload: Callable[[], object],
                        log: logging.Logger) -> int:
    """Start ``agent``, serve signals until a stop, stop it; the exit status (0 or 1)."""
    stop = threading.Event()
    forced = threading.Event()
    hangup = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        (forced if stop.is_set() else stop).set()
        wake.set()

    def on_hangup(signum: int, _frame: FrameType | None) -> None:
        hangup.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    agent.start()
    while not stop.is_set():
        # Short waits: CPython runs signal handlers on the main thread only, and a
        # signal the kernel delivers to another thread does not interrupt this
        # wait; the handler then runs at the next wake-up (seen under load: a
        # SIGTERM ignored until SIGKILL with a one-hour wait).
        wake.wait(_HANDLER_LATENCY)
        wake.clear()
        if hangup.is_set() and not stop.is_set():
            hangup.clear()
            try:
                reload()
            except Exception as exc:  # noqa: BLE001 - a failed reload must not stop the agent
                log.error("reload failed, keeping the running configuration: %s: %s",
                          type(exc).__name__, exc)
    stopper = threading.Thread(target=agent.stop, kwargs={"graceful": True},
                               name="zkpoll-stop", daemon=True)
    stopper.start()
    while stopper.is_alive() and not forced.is_set():
        stopper.join(0.2)
    if forced.is_set():
        print(f"{prog}: second signal: stopping at once", file=sys.stderr)
        return 1
    return 0
