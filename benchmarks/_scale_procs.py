"""Plumbing of ``benchmarks.scale_bench``: the ZooKeeper it measures, its member processes.

:class:`Servers` starts (or uses) ZooKeeper and reads its four-letter-word
counters; :class:`WorkerProc` runs one ``benchmarks._scale_worker`` and
exchanges JSON lines with it; :func:`call_all` sends one command to many
workers at once and prints their progress; :func:`stop_workers` stops them.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from typing import Any

from benchmarks._bench_util import (
    ROOT,
    BenchError,
    ChildProcess,
    module_command,
    progress,
    stop_children,
)
from zkpoll.testing import ManagedZooKeeper, ZooKeeperEnsemble, four_letter_word


# --- ZooKeeper: servers and what they report ------------------------------------
class Servers:
    """The ZooKeeper the bench talks to: started by it, or ``--zk-hosts``."""

    def __init__(self, ensemble: bool, hosts: str | None) -> None:
        self._owned: ManagedZooKeeper | ZooKeeperEnsemble | None = None
        if hosts is None:
            if ensemble:
                self._owned = started = ZooKeeperEnsemble(3)
                hosts = started.hosts
            else:
                self._owned = single = ManagedZooKeeper()
                hosts = single.address
            try:
                self._owned.start()
            except BaseException:
                self._owned.close()
                raise
        self.hosts = hosts
        self.addresses = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]))
                          for h in hosts.split(",")]

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    @property
    def pids(self) -> list[int]:
        """The server processes this bench started (none with ``--zk-hosts``)."""
        owned = self._owned
        servers = owned.servers if isinstance(owned, ZooKeeperEnsemble) else \
            [owned] if owned is not None else []
        return [s._process.pid for s in servers if s._process is not None]

    def _words(self, cmd: str) -> list[str]:
        try:
            return [four_letter_word(host, port, cmd, timeout=10.0)
                    for host, port in self.addresses]
        except OSError as exc:  # an overloaded server: end the line with an error
            raise BenchError(f"ZooKeeper did not answer {cmd!r} within 10 s: {exc!r}") \
                from exc

    def packets_received(self) -> int:
        total = 0
        for text in self._words("mntr"):
            match = re.search(r"^zk_packets_received\s+(\d+)", text, re.MULTILINE)
            if match is None:
                raise BenchError(f"no zk_packets_received in mntr: {text[:200]!r}")
            total += int(match.group(1))
        return total

    def watches(self) -> int:
        """Data *and* children watches (``mntr`` zk_watch_count; ``wchs`` counts
        data watches only, so it would miss the children watch of every member)."""
        total = 0
        for text in self._words("mntr"):
            match = re.search(r"^zk_watch_count\s+(\d+)", text, re.MULTILINE)
            if match is None:
                raise BenchError(f"unexpected mntr answer: {text[:200]!r}")
            total += int(match.group(1))
        return total


# --- worker processes -------------------------------------------------------------
class WorkerProc(ChildProcess):
    """One ``benchmarks._scale_worker`` process and its members."""

    def __init__(self, impl: str, name: str, ids: list[str], log_level: str,
                 nice: int = 0, switch_interval: float | None = None) -> None:
        self.name = name
        self.ids = ids
        self.log_path = None  # stderr is the bench's
        command = module_command("_scale_worker", impl, log_level,
                                 *([str(switch_interval)] if switch_interval else []))
        self.proc = subprocess.Popen((["nice", "-n", str(nice)] if nice else []) + command,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, cwd=ROOT)
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.progress: dict[str, Any] = {}
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.replies.get(timeout=60)
        if first.get("type") != "ready":
            raise BenchError(f"{name}: did not start: {first}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("type") == "progress":
                self.progress = message
            else:
                self.replies.put(message)
        self.replies.put({"type": "eof"})

    def send(self, cmd: str, **args: Any) -> int:
        self._next_id += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": self._next_id, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise BenchError(f"{self.name} is gone ({cmd}): {exc}") from exc
        return self._next_id

    def reply(self, rid: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"{self.name}: no reply within {timeout:.0f} s") from None
            if message.get("type") == "eof":
                raise BenchError(f"{self.name} exited (rc {self.proc.wait()})")
            if message.get("id") == rid:
                if "error" in message:
                    raise BenchError(f"{self.name}: {message['error']}")
                return message

    def request_stop(self) -> None:
        """Ask the worker to stop its members and exit."""
        if self.alive:
            try:
                self.send("stop")
            except BenchError:
                pass


def stop_workers(workers: list[WorkerProc], timeout: float) -> None:
    """Ask every worker to stop (members leave), within ``timeout`` s in all;
    then SIGKILL whichever is left (``timeout`` 0: SIGKILL at once)."""
    if timeout > 0:
        stop_children(workers, timeout, ask=WorkerProc.request_stop)
    else:
        for worker in workers:
            worker.kill()


def call_all(workers: list[WorkerProc], cmd: str, reply_timeout: float,
             args_for: Any = None, label: str | None = None,
             **args: Any) -> list[dict[str, Any]]:
    """Send ``cmd`` to every worker at once and collect the replies, printing
    the workers' progress to stderr every few seconds."""
    rids = [w.send(cmd, **(args_for(w) if args_for else args)) for w in workers]
    results: list[dict[str, Any] | None] = [None] * len(workers)
    errors: list[BaseException | None] = [None] * len(workers)

    def collect(i: int) -> None:
        try:
            results[i] = workers[i].reply(rids[i], reply_timeout)
        except BenchError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=collect, args=(i,), daemon=True)
               for i in range(len(workers))]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(5.0)
            if label and t.is_alive():
                done = sum(w.progress.get("satisfied", 0) for w in workers)
                progress(f"  {label}: {done} member(s) satisfied so far")
                break
    for exc in errors:
        if exc is not None:
            raise exc
    return [r for r in results if r is not None]
