"""Shared command-line plumbing: logging, option validation, error exits."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
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
    """Read every registered option once, so a bad value fails at start, by name.

    Also refused: ``nan`` and ``inf`` (FloatOpt accepts them) and an empty
    value for an option that has a default (oslo.config reads it as None,
    which the code using the option never expects).
    """
    files = ", ".join(conf.config_file) or "the command line"
    for key in list(conf.keys()):
        value = _read(conf, None, key, files)
        if isinstance(value, cfg.ConfigOpts.GroupAttr):
            for name in list(value.keys()):
                _check_empty(conf, key, name, _read(value, key, name, files), files)
        else:
            _check_empty(conf, None, key, value, files)


def _check_empty(conf: cfg.ConfigOpts, group: str | None, name: str, value: object,
                 files: str) -> None:
    if value is not None:
        return
    opt = conf._get_opt_info(name, group)["opt"]  # no public way to reach the Opt
    if opt.default is not None:
        raise ConfigError(f"[{group or 'DEFAULT'}] {name}: empty value (in {files}); remove "
                          f"the line to use the default, {opt.default!r}")


def _read(namespace: object, group: str | None, name: str, files: str) -> object:
    try:
        value = getattr(namespace, name)
    except (cfg.ConfigFileValueError, ValueError) as exc:
        detail = str(exc).split("is not valid: ", 1)[-1]
        raise ConfigError(f"[{group or 'DEFAULT'}] {name}: {detail} (in {files})") from exc
    if isinstance(value, float) and not math.isfinite(value):  # FloatOpt takes nan and inf
        raise ConfigError(f"[{group or 'DEFAULT'}] {name}: {value} is not a finite number "
                          f"(in {files})")
    return value


def die(prog: str, message: str, code: int = 2) -> int:
    """Print one readable error line and return the exit code."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def parse_command_line(conf: cfg.ConfigOpts, args: Sequence[str], **kwargs: Any) -> None:
    """``conf(args, **kwargs)``, with every unreadable file turned into a ConfigError.

    oslo.config raises its own errors for a missing or malformed file, but
    lets OSError (``--config-file`` naming a directory) and UnicodeDecodeError
    (a binary file) escape as tracebacks, and exits 1 (not 2) for a bad value
    of a command-line option set in a file.
    """
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            conf(list(args), **kwargs)
    except SystemExit as exc:
        # split on newlines only: a value may hold a form feed or other line breaks
        lines = [line for line in said.getvalue().split("\n") if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("argument --")), "")
        if exc.code == 1 and last:
            name, _, reason = last.removeprefix("argument --").partition(": ")
            reason = " ".join(reason.split())
            raise ConfigError(f"[DEFAULT] {name}: {reason} (in "
                              f"{', '.join(_files(args)) or 'a configuration file'})") from None
        sys.stderr.write(said.getvalue())  # argparse's usage error (exit 2) or --help
        raise
    except (cfg.Error, OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(said.getvalue())
        raise _file_error(exc, args) from exc
    sys.stderr.write(said.getvalue())


def _file_error(exc: Exception, args: Sequence[str]) -> ConfigError:
    if isinstance(exc, UnicodeDecodeError):
        where = _undecodable(args) or "a configuration file"
        return ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    if isinstance(exc, OSError):
        where = exc.filename or "a configuration file"
        return ConfigError(f"{where}: cannot read: {exc.strerror or exc}")
    return ConfigError(str(exc))


def _undecodable(args: Sequence[str]) -> str | None:
    """The first ``--config-file`` (or ``*.conf`` of a ``--config-dir``) that is not UTF-8."""
    for path in _files(args):
        try:
            with open(path) as stream:
                stream.read()
        except UnicodeDecodeError:
            return path
        except OSError:
            continue
    return None


def _files(args: Sequence[str]) -> list[str]:
    """The files named by ``--config-file`` and the ``*.conf`` of ``--config-dir``."""
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
    return candidates
