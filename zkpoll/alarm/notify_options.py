"""``[alarm]`` options of the notification spools, and how to read them.

Alarm notifications to ``http://`` and ``https://`` actions wait in one
durable spool per destination (see :mod:`zkpoll.alarm.webhook`).  They are
few and small, so their bounds are their own rather than the samples'
``[publisher] spool_max_bytes`` / ``spool_max_age``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from zkpoll.delivery.spool import FSYNC_POLICIES

__all__ = ["GROUP", "OPTS", "NotifySettings", "list_opts", "notify_settings", "register_opts"]

GROUP = "alarm"

OPTS = [
    cfg.IntOpt("notify_spool_max_bytes", default=64 << 20, min=0,
               help="Bytes of undelivered notifications the spool of one action URL may "
                    "hold (JSON bodies; the file on disk is somewhat larger). Beyond it "
                    "the OLDEST notifications are dropped, counted (reason max_bytes) and "
                    "logged at ERROR. 0: no size bound."),
    cfg.FloatOpt("notify_spool_max_age", default=86400.0, min=0,
                 help="Seconds a notification may wait for its webhook (counted from when "
                      "it was enqueued). Older notifications are dropped, counted (reason "
                      "max_age) and logged at ERROR. 0: no age bound."),
    cfg.StrOpt("notify_spool_fsync", default="always", choices=FSYNC_POLICIES,
               help="When the notification spools force their writes to disk. always: "
                    "one fsync per enqueue (per action URL and evaluation batch); an "
                    "enqueued notification survives power loss. os: the kernel writes "
                    "back; it survives a crash or kill -9 of the agent, not of the host."),
]


@dataclass(frozen=True)
class NotifySettings:
    """The notification spool options in force."""

    max_bytes: int = 64 << 20
    max_age: float = 86400.0
    fsync: str = "always"


def _get(conf: Any, name: str) -> Any:
    """``[alarm] name`` from ``conf``, or its default when None or unregistered."""
    group = getattr(conf, GROUP, None) if conf is not None else None
    try:
        return getattr(group, name)
    except (AttributeError, cfg.NoSuchOptError):
        return next(o.default for o in OPTS if o.dest == name)


def notify_settings(conf: Any) -> NotifySettings:
    """Read the options from ``conf`` (their defaults when None or unregistered)."""
    return NotifySettings(int(_get(conf, "notify_spool_max_bytes")),
                          float(_get(conf, "notify_spool_max_age")),
                          str(_get(conf, "notify_spool_fsync")))


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[alarm]`` options of this module on ``conf`` (idempotent)."""
    conf.register_opts(OPTS, group=GROUP)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """(group, options) of this module, for ``zkpoll.opts.list_opts``."""
    return [(GROUP, list(OPTS))]
