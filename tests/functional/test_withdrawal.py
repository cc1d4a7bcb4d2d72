"""Health-aware withdrawal on a real ZooKeeper with a publisher that fails and recovers."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.functional.agents import start_agent, write_static_source
from zkpoll.testing import free_port
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


class Endpoint:
    """An HTTP sink that records every body it gets, answering 500 while failing."""

    def __init__(self) -> None:
        self.failing = False
        self.samples: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                failing = endpoint.failing
                if not failing:  # a batch answered 500 stays in the spool and comes back
                    with endpoint.lock:
                        endpoint.samples.extend(json.loads(body))
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/?max_backoff=1&timeout=1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    sink = Endpoint()
    yield sink
    sink.close()


def test_unhealthy_agent_hands_over_without_gap_or_duplicate_and_rejoins(
        zookeeper_server, zk_chroot, tmp_path: Path, endpoint: Endpoint) -> None:
    ids = write_static_source(tmp_path / "polling.yaml", 100, interval=1)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    api = f"127.0.0.1:{free_port()}"
    sick = start_agent(tmp_path, "sick", url, tmp_path / "polling.yaml",
                        extra=f"[publisher]\ndefault_publishers = {endpoint.url}\n"
                              f"spool_dir = {tmp_path / 'spool'}\n"
                              f"[polling]\nwithdraw_after = 2\n[api]\nbind = {api}\n")
    well = start_agent(tmp_path, "well", url, tmp_path / "polling.yaml")

    def polled() -> dict[str, Counter[str]]:
        cycles: dict[str, Counter[str]] = defaultdict(Counter)
        with endpoint.lock:
            received = list(endpoint.samples)
        for sample in received + well.records():
            cycles[sample["cycle_start"]][sample["resource_id"]] += 1
        return cycles

    def health() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://{api}/healthz", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    try:
        wait_for(lambda: len(endpoint.samples) > 100 and len(well.records()) > 100, 20,
                 "len(endpoint.samples) > 100 and len(well.records()) > 100", interval=0.2)
        first = min(c for c, n in polled().items() if sum(n.values()) == len(ids))
        endpoint.failing = True
        wait_for(lambda: "WITHDRAWING" in sick.log(), 20, '"WITHDRAWING" in sick.log()',
                 interval=0.2, diagnostics=lambda: sick.log()[-3000:])
        wait_for(lambda: health()[0] == 503, 5, "health()[0] == 503", interval=0.2)
        assert "withdrawn: every publisher failing" in " ".join(health()[1]["problems"])
        withdrawn_samples = len(endpoint.samples)
        wait_for(lambda: len(endpoint.samples) == withdrawn_samples, 5,
                 "len(endpoint.samples) == withdrawn_samples", interval=1.5)
        endpoint.failing = False
        wait_for(lambda: "rejoining" in sick.log(), 20, '"rejoining" in sick.log()', interval=0.2,
                 diagnostics=lambda: sick.log()[-3000:])
        wait_for(lambda: len(endpoint.samples) > withdrawn_samples + 50, 20,
                 "len(endpoint.samples) > withdrawn_samples + 50", interval=0.2)
        wait_for(lambda: health()[0] == 200, 10, "health()[0] == 200", interval=0.2)
    finally:
        sick.terminate()
        well.terminate()
    cycles = polled()
    checked = sorted(c for c in cycles if c >= first)[:-2]  # the newest may be partial
    assert len(checked) >= 5, sorted(cycles)
    for cycle in checked:
        counts = cycles[cycle]
        assert set(counts) == set(ids), f"cycle {cycle}: gaps {sorted(set(ids) - set(counts))[:10]}"
        assert max(counts.values()) == 1, f"cycle {cycle}: duplicates"
    assert "Traceback" not in sick.log() + well.log()
