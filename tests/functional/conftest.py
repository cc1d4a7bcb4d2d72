"""Fixtures shared by the functional tests (the servers are in tests/conftest.py).

Every test here is marked ``functional`` (``pytestmark`` in each file), so that
``-m "not functional"`` selects exactly the unit tests; collection fails on a
test here without the mark.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from zkpoll.coordination import Coordinator

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if HERE in Path(item.path).resolve().parents
                and item.get_closest_marker("functional") is None]
    if unmarked:
        raise pytest.UsageError("functional tests without pytestmark = pytest.mark.functional: "
                                + ", ".join(unmarked[:10]))


class _Stats(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # http.server's name
        body = json.dumps({"queue": {"depth": 7, "name": "jobs"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def stats_api() -> Iterator[str]:
    """URL of a loopback JSON API ``{"queue": {"depth": 7, "name": "jobs"}}``
    for dynamic pollsters to read."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Stats)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/stats"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def coordinators() -> Iterator[Callable[..., Coordinator]]:
    """Factory ``make(url, timeout=2.0)``: a started coordinator on ``url`` (session
    ``timeout``); every one made is stopped after the test."""
    from tests.functional.test_coordinator_contract import TIMEOUT, coordinator_for

    made: list[Coordinator] = []

    def make(url: str, timeout: float = TIMEOUT) -> Coordinator:
        coordinator = coordinator_for(url, timeout)
        made.append(coordinator)
        coordinator.start(timeout=10)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.stop()
