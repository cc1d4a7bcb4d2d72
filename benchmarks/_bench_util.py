"""What every benchmark script shares: output, the bench error, child processes.

* Output: :func:`emit` (the JSON lines on stdout, a bench's only output
  there), :func:`progress` (stderr), :func:`percentile`, :func:`rounded`,
  :func:`load1`; :class:`BenchError` for a run that cannot produce a
  measurement (the script says it in a line with ``error``).
* Children: :func:`module_command` (another module of this package, run
  with ``-m`` from :data:`ROOT`), :func:`zkpoll_polling_command`,
  :func:`spawn_logged`, :class:`ChildProcess` (alive, signal, kill, wait,
  the log's tail), :func:`stop_children`, :func:`rss_mb`,
  :func:`tree_rss_mb`, :func:`cpu_seconds`; :class:`MemberMonitor` sees members leave a
  ZooKeeper group.
* Peers and workers: :func:`cycle_starts` (the wall-clock aligned cycle
  loop), :func:`stop_on_signals`, :func:`log_to_stderr`, :func:`sleep_until`.

psutil and kazoo are imported where they are used: the scale bench's
workers import this module, and their resident memory is what that bench
measures.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: The repository root: the working directory of the package's child processes.
ROOT = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """The run cannot produce a measurement (said in an ``error`` line)."""


# --- output -------------------------------------------------------------------------
def emit(**fields: object) -> None:
    """Print one JSON line (the benchmarks' only output on stdout)."""
    print(json.dumps(fields), flush=True)


def progress(text: str) -> None:
    """One line of progress on stderr, with the time of day."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def load1() -> float:
    """The 1-minute load average, two decimals."""
    return round(os.getloadavg()[0], 2)


def sleep_until(t: float, tick: Callable[[], None] | None = None, step: float = 0.5) -> None:
    """Sleep until wall-clock ``t``, calling ``tick()`` about every ``step`` s."""
    while (left := t - time.time()) > 0:
        time.sleep(min(left, step))
        if tick is not None:
            tick()


# --- child processes ----------------------------------------------------------------
def module_command(name: str, *args: str) -> list[str]:
    """The command running ``benchmarks.<name>``; start it with ``cwd=ROOT``."""
    return [sys.executable, "-m", f"benchmarks.{name}", *args]


def zkpoll_polling_command() -> list[str]:
    """The installed ``zkpoll-polling`` beside this interpreter, else its module."""
    script = Path(sys.executable).with_name("zkpoll-polling")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "zkpoll.cmd.polling"]


def spawn_logged(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session: no stdin or stdout, stderr to ``log_path``."""
    with log_path.open("wb") as err:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=cwd, start_new_session=True)


class ChildProcess:
    """Methods for a benchmark's record of one child: ``name``, ``proc`` and,
    when it has one, ``log_path``."""

    name: str
    proc: subprocess.Popen[Any]
    log_path: Path | None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, sig: int) -> float:
        """Send ``sig``; returns the wall time it was sent."""
        self.proc.send_signal(sig)
        return time.time()

    def kill(self) -> float:
        """SIGKILL the child (if still running) and reap it; returns the wall time
        of the kill."""
        t = time.time()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return t

    def wait_exit(self, deadline: float) -> bool:
        """Wait for the child until monotonic ``deadline``; whether it exited."""
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` of the child's log ("" before it wrote one)."""
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _terminate(child: ChildProcess) -> None:
    child.proc.send_signal(signal.SIGTERM)


def stop_children(children: Sequence[ChildProcess], timeout: float,
                  ask: Callable[[Any], None] = _terminate) -> None:
    """Ask every live child to stop (``ask``: SIGTERM), give them ``timeout`` s in
    all, then SIGKILL and reap every child still running."""
    live = [c for c in children if c.alive]
    for child in live:
        ask(child)
    deadline = time.monotonic() + timeout
    for child in live:
        if not child.wait_exit(deadline):
            progress(f"{child.name}: no exit {timeout:.0f} s after asked to stop: SIGKILL")
    for child in children:
        child.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (0 when the process is gone)."""
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """(resident MiB, processes) of ``pid`` and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree) / 2**20, len(tree)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds ``pid`` has used so far (0 when it is gone)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    return times.user, times.system


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


# --- peers and workers ----------------------------------------------------------------
def log_to_stderr(level: int | str = logging.INFO, tag: str = "") -> None:
    """A child's log: stderr, ``<time> <tag><level> <logger> <message>``."""
    logging.basicConfig(level=level, stream=sys.stderr,
                        format=f"%(asctime)s {tag}%(levelname)s %(name)s %(message)s")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (a peer's graceful exit)."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())


def cycle_starts(interval: float, offset: float,
                 stop: threading.Event) -> Iterator[tuple[int, float]]:
    """``(index, start)`` of each cycle (``start = index * interval + offset``),
    yielded at its start, until ``stop`` is set; after a late cycle the next one
    is the first still to start (cycles are skipped, never run late)."""
    index = math.floor((time.time() - offset) / interval) + 1
    while True:
        start = index * interval + offset
        if stop.wait(max(0.0, start - time.time())):
            return
        yield index, start
        index = math.floor((time.time() - offset) / interval) + 1


# --- ZooKeeper groups -----------------------------------------------------------------
def member_id_of(child: str) -> str:
    """The member id a group child names: zkpoll's ``id!rev!...`` names, tooz's ids."""
    return child.split("!", 1)[0]


class MemberMonitor(threading.Thread):
    """When members leave ZooKeeper groups, by listing the groups every ``every`` s.

    A member counts as gone when no child of its group names its id any more
    (only members seen once are reported).
    """

    def __init__(self, hosts: str, paths: Sequence[str], every: float = 0.05) -> None:
        from kazoo.client import KazooClient

        super().__init__(name="member-monitor", daemon=True)
        self.client = KazooClient(hosts=hosts, timeout=10.0)
        self.paths, self.every = list(paths), every
        self.present: dict[str, set[str]] = {p: set() for p in self.paths}
        self.gone_at: dict[tuple[str, str], float] = {}
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

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
