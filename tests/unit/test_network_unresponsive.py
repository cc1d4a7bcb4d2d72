"""One unresponsive endpoint costs only its own sample (issue 12, item 4).

Real loopback servers: one healthy HTTP server, one TCP server that
accepts and never answers, one listener whose backlog is full (connects
hang).  The pollsters run through the real SourceRunner with the budget of
a 2 s interval: the healthy endpoints get their samples every cycle, the
unresponsive ones are reported failed, and no call outlives the runner.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import pytest

from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import SourceRunner
from zkpoll.polling.sources import Source
from zkpoll.pollsters import network
from zkpoll.publisher.base import Publisher
from zkpoll.sample import Sample
from zkpoll.testing.plugins import SilentServer

pytestmark = pytest.mark.timeout(60)

INTERVAL = 2.0


class _Recorder(Publisher):
    def __init__(self) -> None:
        super().__init__(None, urllib.parse.urlsplit("memory://"))
        self.samples: list[Sample] = []

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


@pytest.fixture
def silent() -> Iterator[str]:
    server = SilentServer()
    yield server.address
    server.close()


def _run_cycles(meters: list[Any], resources: list[str], cycles: int) -> list[tuple[Any, list[Sample]]]:
    pool = futures.ThreadPoolExecutor(4)
    try:
        recorder = _Recorder()
        source = Source("web", int(INTERVAL), ("*",), resources=tuple(resources))
        infos = [PollsterInfo(p.meter, "central", p) for p in meters]
        runner = SourceRunner(source, infos, LoadedPlugins(), [recorder], pool,
                              lambda src, ns, keys, index, start: keys, None, lambda: "me",
                              timeout=INTERVAL, batch_size=100)
        out = []
        for index in range(cycles):
            before = len(recorder.samples)
            stats = runner.run_cycle(index, float(index))
            out.append((stats, recorder.samples[before:]))
        return out
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_an_unresponsive_url_does_not_cost_the_healthy_ones(healthy_http: str,
                                                            silent: str) -> None:
    good, dead = f"http://{healthy_http}/", f"http://{silent}/"
    cycles = _run_cycles([network.HTTPStatusPollster(), network.HTTPResponseTimePollster()],
                         [good, dead], 3)
    for stats, samples in cycles:
        assert stats.timeouts == 0, stats  # every call returned within the budget
        status = {s.resource_id: s for s in samples if s.name == "http.status"}
        assert status[good].volume == 200
        assert status[dead].volume == 0
        assert "no answer within" in status[dead].resource_metadata["error"] \
            or "timed out" in status[dead].resource_metadata["error"]
        timing = [s.resource_id for s in samples if s.name == "http.response.time"]
        assert timing == [good]


def test_a_hanging_connect_does_not_cost_the_healthy_endpoints(
        healthy_http: str, full_backlog: str, caplog: pytest.LogCaptureFixture) -> None:
    cycles = _run_cycles([network.TCPConnectTimePollster()], [healthy_http, full_backlog], 2)
    for stats, samples in cycles:
        assert stats.timeouts == 0, stats
        assert [s.resource_id for s in samples] == [healthy_http]
    assert f"connect to {full_backlog} failed" in caplog.text


def test_checks_use_a_share_of_the_budget() -> None:
    context = network.PollingContext(None, {}, "s", 0.0, 5.0)
    assert network._checks_budget(context) == pytest.approx(5.0 * network.BUDGET_SHARE)
    context.timeout = 60.0
    assert network._checks_budget(context) == pytest.approx(network.MAX_TIMEOUT
                                                            * network.BUDGET_SHARE)
