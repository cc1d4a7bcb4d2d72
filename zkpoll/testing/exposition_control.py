"""Run :mod:`zkpoll.testing.exposition_server` in its own process and drive it.

The generator runs apart from the test (and the scraper under test) so its
CPU time is its own in a benchmark. :class:`ManagedExpositionServer` is a
:class:`~zkpoll.testing._server.ManagedServer` (own directory, log, atexit
cleanup) whose port is the control endpoint; the targets share another port,
chosen by the child and kept across :meth:`~ManagedServer.stop` and
:meth:`~ManagedServer.start`::

    with ManagedExpositionServer(targets=500, series=1000) as fleet:
        fleet.targets                      # ["127.1.0.1:PORT", ...]
        fleet.set_fault(fleet.targets[3], "hang", seconds=30)
        fleet.scrape_counts()              # {target: /metrics requests received}

Each target costs the child one file descriptor, plus one per open
keep-alive connection of each scraper.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import zkpoll
from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer

__all__ = ["ManagedExpositionServer"]

# The child imports the zkpoll this process runs, whatever its PYTHONPATH and cwd.
_ROOT = str(Path(zkpoll.__file__).resolve().parent.parent)
_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
         "runpy.run_module('zkpoll.testing.exposition_server', run_name='__main__')")


class ManagedExpositionServer(ManagedServer):
    """``targets`` scrape targets of ``series`` series each, in one child process.

    ``port`` and ``host`` are those of the control endpoint; ``target_port``
    (default: any port free on every target address) is the targets' port.
    """

    program = "exposition-server"
    package = "python3"
    scheme = "http"
    ready_path = "/ready"
    start_timeout = 30.0

    def __init__(self, targets: int = 10, series: int = 1000,
                 first_address: str = "127.1.0.1", target_port: int = 0,
                 port: int | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(port, host)
        self.target_count = targets
        self.series = series
        self.first_address = first_address
        self.target_port = target_port
        self._targets: list[str] = []

    @classmethod
    def find_binary(cls) -> str:
        """This Python: the generator is part of zkpoll."""
        return sys.executable

    def command(self) -> list[str]:
        return [self.find_binary(), "-c", _BOOT, _ROOT, "--targets", str(self.target_count),
                "--series", str(self.series), "--first-address", self.first_address,
                "--port", str(self.target_port), "--control", self.address]

    def start(self, timeout: float | None = None) -> None:
        """Start the child, wait until every target is bound, learn their port."""
        super().start(timeout)
        self._targets = self._call("GET", "/targets")
        self.target_port = int(self._targets[0].rpartition(":")[2])


    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (to read its CPU time)."""
        return self._process.pid if self._process is not None and self.running else None

    @property
    def targets(self) -> list[str]:
        """``"<address>:<port>"`` of every target (known once started)."""
        if not self._targets:
            raise ZkpollError(f"{self!r}: targets are known once it has started")
        return list(self._targets)

    def scrape_counts(self) -> dict[str, int]:
        """{target: ``/metrics`` requests it received}, every target included."""
        counts: dict[str, int] = self._call("GET", "/counts")
        return counts

    def faults(self) -> dict[str, tuple[str, float]]:
        """{target: (mode, seconds)} of the targets not answering normally."""
        return {target: (mode, seconds)
                for target, (mode, seconds) in self._call("GET", "/faults").items()}

    def set_fault(self, target: str, mode: str, seconds: float = 3600.0) -> None:
        """Make ``target`` answer ``mode`` from now on.

        ``ok`` (normal), ``error`` (HTTP 500), ``hang`` (the answer comes only
        after ``seconds``) or ``down`` (its listener and connections closed:
        connection refused). Takes effect before this returns.
        """
        query = urllib.parse.urlencode({"target": target, "mode": mode, "seconds": seconds})
        self._call("POST", f"/fault?{query}")

    def clear_faults(self) -> None:
        """Every target answers normally again."""
        for target in self.faults():
            self.set_fault(target, "ok")

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise ZkpollError(f"exposition server {path}: HTTP {exc.code}: "
                              f"{exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise ZkpollError(f"exposition server {path}: {exc}") from exc
