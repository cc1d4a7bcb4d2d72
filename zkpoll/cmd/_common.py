"""Shared command-line plumbing: logging, option validation, error exits."""

from __future__ import annotations

import json
import logging
import sys

from oslo_config import cfg

from zkpoll.exceptions import ConfigError

__all__ = ["LOGGING_OPTS", "JSONFormatter", "check_all_options", "die", "setup_logging"]

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
