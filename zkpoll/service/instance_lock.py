"""One standalone agent per configuration: a lock file per (configuration, namespace).

Two standalone agents started with the same config files and polling YAML
would both poll everything and publish every sample twice.
:func:`acquire` takes an ``fcntl.flock`` lock on
``<lock_dir>/zkpoll-polling-<hash>.lock`` for each namespace the agent
polls, where ``<hash>`` is mmh3 (fixed seed) of the resolved config file
paths, the resolved polling YAML path and the namespace.  The kernel
releases the lock when the process ends, however it ends; the file
(holding the owner's pid, for the error message) is left in place.

Agents coordinated through a backend never take it: the group splits
their work.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from collections.abc import Iterable

import mmh3

from zkpoll.exceptions import ConfigError

__all__ = ["DEFAULT_LOCK_DIR", "AlreadyRunning", "InstanceLock", "acquire", "default_lock_dir", "lock_path"]

#: Preferred lock directory (systemd's RuntimeDirectory=zkpoll gives it).
DEFAULT_LOCK_DIR = "/run/zkpoll"
_SEED = 0x7A6B706F  # "zkpo", as zkpoll.sample.HASH_SEED


class AlreadyRunning(ConfigError):
    """Another standalone agent already runs this configuration."""


def default_lock_dir() -> str:
    """``/run/zkpoll`` if writable, else ``$XDG_RUNTIME_DIR``, else the temp dir."""
    for candidate in (DEFAULT_LOCK_DIR, os.environ.get("XDG_RUNTIME_DIR")):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


def lock_path(lock_dir: str, config_files: Iterable[str], polling_file: str,
              namespace: str) -> str:
    """The lock file of one namespace of one configuration."""
    key = "\0".join([*sorted(os.path.realpath(f) for f in config_files),
                     os.path.realpath(polling_file), namespace])
    digest = format(mmh3.hash128(key, _SEED, signed=False), "032x")[:16]
    return os.path.join(lock_dir, f"zkpoll-polling-{digest}.lock")


class InstanceLock:
    """Held lock files; keep this object for the life of the process."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.paths: list[str] = []

    def release(self) -> None:
        """Unlock and close (the process's end does the same)."""
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def acquire(lock_dir: str, config_files: Iterable[str], polling_file: str,
            namespaces: Iterable[str]) -> InstanceLock:
    """Lock every namespace of this configuration, or raise.

    :raises AlreadyRunning: another process holds one of the locks; the
        message names its pid and the lock file.
    :raises ConfigError: the lock directory cannot be used.
    """
    files = list(config_files)
    held = InstanceLock()
    for namespace in namespaces:
        path = lock_path(lock_dir, files, polling_file, namespace)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            held.release()
            raise ConfigError(f"[polling] lock_dir: cannot create the lock file {path}: "
                              f"{exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            held.release()
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(
                    f"another standalone agent (pid {holder}) already polls namespace "
                    f"{namespace} with this configuration (lock file {path}); stop it, or "
                    "give this agent other config files") from exc
            raise ConfigError(f"[polling] lock_dir: cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        held.fds.append(fd)
        held.paths.append(path)
    return held
