"""Shared command-line plumbing: logging, option validation, error exits."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from oslo_config import cfg

from zkpoll.exceptions import ConfigError

__all__ = ["LOGGING_OPTS", "JSONFormatter", "check_all_options", "die", "parse_command_line",
           "setup_logging"]

LOGGING_OPTS = [
    cfg.StrOpt("log_format", default="text", choices=[
        ("text", "one human-readable line per record"),
        ("json", "one JSON object per line: ts, level, logger, thread, message")],
               help="Format of the log lines written to standard error."),
]


class JSONFormatter(logging.Formatter):
    """One JSON object per record, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "thread": record.threadName,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(debug: bool, log_format: str = "text") -> None:
    """Log to stderr (journald keeps it), one line per record."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
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


def parse_command_line(conf: cfg.ConfigOpts, args: Sequence[str], **kwargs: Any) -> None:
    """``conf(args, **kwargs)``, with every unreadable file turned into a ConfigError.

    oslo.config raises its own errors for a missing or malformed file, but
    lets OSError (``--config-file`` naming a directory) and UnicodeDecodeError
    (a binary file) escape as tracebacks.
    """
    try:
        conf(list(args), **kwargs)
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        where = exc.filename or "a configuration file"
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        where = _undecodable(args) or "a configuration file"
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from exc


def _undecodable(args: Sequence[str]) -> str | None:
    """The first ``--config-file`` (or ``*.conf`` of a ``--config-dir``) that is not UTF-8."""
    candidates: list[str] = []
    for i, arg in enumerate(args):
        for flag in ("--config-file", "--config-dir"):
            value = None
            if arg == flag and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value is None:
                continue
            if flag == "--config-file":
                candidates.append(value)
            elif os.path.isdir(value):
                candidates += sorted(os.path.join(value, f) for f in os.listdir(value)
                                     if f.endswith(".conf"))
    for path in candidates:
        try:
            with open(path) as stream:
                stream.read()
        except UnicodeDecodeError:
            return path
        except OSError:
            continue
    return None
