"""Child processes for functional tests: spawn, read their JSON lines, kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zkpoll.testing.waiting import wait_for

HERE = Path(__file__).resolve().parent


class Child:
    """A child process whose stdout carries one JSON object per line."""

    def __init__(self, args: Sequence[str], log_path: Path | None = None) -> None:
        self.log_path = log_path
        stderr = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, text=True, bufsize=1)
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def mark(self) -> int:
        """The position of the next event: pass it as ``after`` to match only later ones.

        Take it just before the action whose effect a test waits for, so that
        an event from before the action can never satisfy the wait.
        """
        with self._cond:
            return len(self.events)

    def wait_event(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                   after: int = 0, what: str = "a matching event") -> dict[str, Any]:
        """The first event at position ``after`` or later matching ``predicate``.

        :raises AssertionError: none within ``timeout`` (names the last events
            and the child's stderr)
        """
        def found() -> dict[str, Any] | None:
            with self._cond:
                return next((e for e in self.events[after:] if predicate(e)), None)
        return wait_for(found, timeout, what, interval=0.01,
                        diagnostics=lambda: f"last events: {self.events[-3:]}\n"
                                            f"stderr: {self.stderr_tail()}")

    def last(self, kind: str) -> dict[str, Any] | None:
        with self._cond:
            for event in reversed(self.events):
                if event.get("event") == kind:
                    return event
        return None

    def stderr_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def member(url: str, tmp_path: Path, name: str, group: str = "central") -> Child:
    """Start ``member_proc.py`` (one coordination member) in its own process."""
    return Child([sys.executable, str(HERE / "member_proc.py"), "--url", url, "--group", group],
                 log_path=tmp_path / f"{name}.log")
