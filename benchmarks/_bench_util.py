"""What every benchmark script needs: JSON lines, percentiles, child processes."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError


def emit(**fields: object) -> None:
    """Print one JSON line (the benchmarks' only output on stdout)."""
    print(json.dumps(fields), flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class ChildProcess:
    """Methods for a benchmark's record of one child: ``proc`` and its ``log_path``."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the child (if still running) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` of the child's log ("" before it wrote one)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def require_tooz() -> None:
    """Exit with the install hint when the peer's tooz is missing."""
    try:
        import tooz  # noqa: F401
    except ImportError:
        sys.exit("tooz is not installed: pip install '.[bench]'")


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a stopped run still stops its servers."""
    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


def member_id_of(child: str) -> str:
    """The member id a group child names: zkpoll's ``id!rev!...`` names, tooz's ids."""
    return child.split("!", 1)[0]


class MemberMonitor(threading.Thread):
    """When members leave ZooKeeper groups, by listing the groups every ``every`` s.

    A member counts as gone when no child of its group names its id any more
    (only members seen once are reported).
    """

    def __init__(self, hosts: str, paths: Sequence[str], every: float = 0.05) -> None:
        super().__init__(name="member-monitor", daemon=True)
        self.client = KazooClient(hosts=hosts, timeout=10.0)
        self.paths, self.every = list(paths), every
        self.present: dict[str, set[str]] = {p: set() for p in self.paths}
        self.gone_at: dict[tuple[str, str], float] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            for path in self.paths:
                try:
                    ids = {member_id_of(c) for c in self.client.get_children(path)}
                except NoNodeError:
                    ids = set()
                except KazooException:
                    continue
                now = time.time()
                with self._lock:
                    for member in self.present[path] - ids:
                        self.gone_at.setdefault((path, member), now)
                    self.present[path] = ids

    def count(self, path: str) -> int:
        """Members of the group at ``path`` in the last listing."""
        with self._lock:
            return len(self.present[path])

    def gone(self, path: str, member: str | None) -> float | None:
        """Wall-clock time the member was first seen gone, or None."""
        with self._lock:
            return self.gone_at.get((path, member or ""))

    def start(self) -> None:
        self.client.start(timeout=15)
        super().start()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)
        self.client.stop()
        self.client.close()
