"""``[publisher]`` options of the durable spool, and where a publisher's spool lives."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmh3
from oslo_config import cfg

from zkpoll.delivery.spool import FSYNC_POLICIES
from zkpoll.publisher.base import redact_url
from zkpoll.sample import HASH_SEED

__all__ = ["DEFAULT_STATE_DIR", "OPTS", "SpoolSettings", "degraded_after", "spool_name",
           "spool_settings"]

#: The spool's default home when it is writable (else ``./zkpoll-spool``).
DEFAULT_STATE_DIR = "/var/lib/zkpoll/spool"

OPTS = [
    cfg.StrOpt("spool_dir",
               sample_default=f"<systemd STATE_DIRECTORY>/spool, {DEFAULT_STATE_DIR} or "
                              "./zkpoll-spool",
               help="Directory of the durable spools of network publishers (one "
                    "sub-directory per destination, named by a hash of the URL without "
                    "credentials and query string). Every "
                    "sample is written here before it counts as accepted, and removed "
                    "once the sink acknowledged it; a restart resumes from there. "
                    "Default: spool in systemd's STATE_DIRECTORY when set, else "
                    + DEFAULT_STATE_DIR + " when it can be created and written, else "
                    "zkpoll-spool in the working directory. Two agents must not share "
                    "one: the second refuses to start."),
    cfg.IntOpt("spool_max_bytes", default=1 << 30, min=0,
               help="Bytes each publisher's spool may hold (encoded samples; the file "
                    "on disk is somewhat larger). Beyond it the OLDEST batches are "
                    "dropped, counted (reason max_bytes) and logged at ERROR; the send "
                    "in flight (batch_size samples at most) is never dropped. 0: no "
                    "size bound."),
    cfg.FloatOpt("spool_max_age", default=86400.0, min=0,
                 help="Seconds an undelivered sample may wait in the spool (counted from "
                      "its poll time). Older batches are dropped, counted (reason "
                      "max_age) and logged at ERROR. 0: no age bound. Sinks may refuse "
                      "very old samples anyway (Prometheus: outside its "
                      "out_of_order_time_window)."),
    cfg.StrOpt("spool_fsync", default="os", choices=FSYNC_POLICIES,
               help="When the spool forces its writes to disk. os: the kernel writes "
                    "them back; accepted samples survive a crash or kill -9 of the "
                    "agent but not a crash of the host. always: fsync every accepted "
                    "batch; survives power loss, costs one fsync per batch."),
    cfg.FloatOpt("degraded_after", default=120.0, min=0.0,
                 help="Seconds a spooled (network) publisher may keep failing (no "
                      "delivery since its first failure) before the agent reports itself "
                      "degraded in /healthz, /metrics and zkpoll-status. Degraded is not "
                      "withdrawn: the samples wait in the spool. 0: degraded at the first "
                      "failure. Publishers without a spool (file, udp) lose a batch they "
                      "fail and are degraded at once, whatever this says."),
]


@dataclass(frozen=True)
class SpoolSettings:
    """The spool options in force."""

    directory: Path
    max_bytes: int
    max_age: float
    fsync: str


def _default_directory() -> Path:
    systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:  # the unit's StateDirectory= (one per unit: central and compute differ)
        return Path(systemd) / "spool"
    state = Path(DEFAULT_STATE_DIR)
    try:
        state.mkdir(parents=True, exist_ok=True)
        if os.access(state, os.W_OK | os.X_OK):
            return state
    except OSError:
        pass
    return Path("zkpoll-spool").absolute()


def _get(conf: Any, name: str) -> Any:
    """``[publisher] name`` from ``conf``, or its default when None or unregistered."""
    group = getattr(conf, "publisher", None) if conf is not None else None
    try:
        return getattr(group, name)
    except (AttributeError, cfg.NoSuchOptError):
        return next(o.default for o in OPTS if o.dest == name)


def degraded_after(conf: Any) -> float:
    """``[publisher] degraded_after`` (its default when ``conf`` lacks it)."""
    return float(_get(conf, "degraded_after"))


def spool_settings(conf: Any) -> SpoolSettings:
    """Read the options from ``conf`` (their defaults when None or unregistered)."""
    def get(name: str) -> Any:
        return _get(conf, name)

    directory = get("spool_dir")
    return SpoolSettings(Path(directory).absolute() if directory else _default_directory(),
                         int(get("spool_max_bytes")), float(get("spool_max_age")),
                         str(get("spool_fsync")))


def spool_name(url: urllib.parse.SplitResult | str) -> str:
    """``<scheme>-<mmh3 hash>`` of the destination: the redacted URL without its
    query string, so changing an option (``batch_size``, ``timeout``) keeps
    the spool and its backlog; one spool per destination."""
    parts = urllib.parse.urlsplit(redact_url(url))
    text = parts._replace(query="", fragment="").geturl()
    digest = format(mmh3.hash128(text, HASH_SEED, signed=False), "032x")
    safe = "".join(c if c.isalnum() else "-" for c in parts.scheme or "sink")
    return f"{safe}-{digest}"
