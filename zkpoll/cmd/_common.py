"""Shared command-line plumbing: logging, option validation, error exits."""

from __future__ import annotations

import logging
import sys

from oslo_config import cfg

from zkpoll.exceptions import ConfigError

__all__ = ["check_all_options", "die", "setup_logging"]


def setup_logging(debug: bool) -> None:
    """Log to stderr (journald keeps it), one line per record."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] "
                               "%(message)s")
    if not debug:
        logging.getLogger("kazoo").setLevel(logging.WARNING)
        logging.getLogger("stevedore").setLevel(logging.WARNING)


def check_all_options(conf: cfg.ConfigOpts) -> None:
    """Read every registered option once, so a bad value fails at start, by name."""
    files = ", ".join(conf.config_file) or "the command line"
    for key in list(conf.keys()):
        value = _read(conf, None, key, files)
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for name in list(value.keys()):
                _read(value, key, name, files)


def _read(namespace: object, group: str | None, name: str, files: str) -> object:
    try:
        return getattr(namespace, name)
    except (cfg.ConfigFileValueError, ValueError) as exc:
        detail = str(exc).split("is not valid: ", 1)[-1]
        raise ConfigError(f"[{group or 'DEFAULT'}] {name}: {detail} (in {files})") from exc


def die(prog: str, message: str, code: int = 2) -> int:
    """Print one readable error line and return the exit code."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
