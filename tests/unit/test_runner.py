"""One cycle of one source: isolation of bad pollsters, partitioning, publishing."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import pytest

from zkpoll.plugin import Discovery, PollingContext, Pollster, resource_key
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import SourceRunner
from zkpoll.polling.sources import Source
from zkpoll.publisher.base import Publisher
from zkpoll.sample import GAUGE, Sample


class Recorder(Publisher):
    def __init__(self) -> None:  # an in-memory publisher for assertions
        super().__init__(None, urllib.parse.urlsplit("memory://"))
        self.samples: list[Sample] = []

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


class Good(Pollster):
    default_discovery = None

    def __init__(self, meter: str = "good") -> None:
        super().__init__()
        self.meter = meter
        self.calls: list[list[str]] = []

    def get_samples(self, context: PollingContext, resources: list[Any]) -> Iterator[Sample]:
        self.calls.append([resource_key(r) for r in resources])
        for r in resources:
            yield Sample(self.meter, GAUGE, "1", 1, resource_key(r))


class Raises(Good):
    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        raise RuntimeError("boom")


class Hangs(Good):
    def __init__(self) -> None:
        super().__init__("hangs")
        self.release = threading.Event()

    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        self.calls.append(list(resources))
        self.release.wait(10)
        return []


class Garbage(Good):
    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Any]:
        return ["not a sample", Sample("garbage", "weird-type", "1", 1, "r"),
                Sample("garbage", GAUGE, "1", 1, "r-ok")]


class Lister(Discovery):
    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        return [{"id": f"d-{i}"} for i in range(int(param or 3))]


@pytest.fixture
def executor() -> Iterator[futures.ThreadPoolExecutor]:
    pool = futures.ThreadPoolExecutor(4)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def runner_for(pollsters: list[Pollster], executor: futures.ThreadPoolExecutor,
               source: Source | None = None, ownership: Any = None,
               timeout: float = 2.0) -> tuple[SourceRunner, Recorder]:
    source = source or Source("s", 60, ("*",), resources=tuple(f"r{i}" for i in range(10)))
    plugins = LoadedPlugins(discoveries={"lister": Lister()})
    infos = [PollsterInfo(p.meter, "central", p) for p in pollsters]  # type: ignore[attr-defined]
    recorder = Recorder()
    runner = SourceRunner(source, infos, plugins, [recorder], executor,
                          ownership or (lambda src, ns, keys, index, start: keys), None,
                          lambda: "me", timeout=timeout, batch_size=3)
    return runner, recorder


def test_samples_are_stamped_and_batched(executor: futures.ThreadPoolExecutor) -> None:
    runner, recorder = runner_for([Good()], executor)
    stats = runner.run_cycle(7, 1000.0)
    assert stats.samples == 10 and stats.errors == 0 and stats.owned == 10
    assert {(s.source, s.member_id, s.cycle_start) for s in recorder.samples} == {("s", "me", 1000.0)}
    assert len({s.id for s in recorder.samples}) == 10


def test_a_raising_a_hanging_and_a_garbage_pollster_do_not_stop_the_cycle(
        executor: futures.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    hang = Hangs()
    runner, recorder = runner_for([Good(), Raises("raises"), hang, Garbage("garbage")],
                                  executor, timeout=0.5)
    started = time.monotonic()
    stats = runner.run_cycle(1, 0.0)
    assert time.monotonic() - started < 2.0
    assert stats.timeouts == 1
    assert stats.errors == 2  # raises + garbage
    assert sorted({s.name for s in recorder.samples}) == ["garbage", "good"]
    assert "pollster raises failed: RuntimeError: boom" in caplog.text
    assert "pollster hangs did not return within 0.5s" in caplog.text
    assert "pollster garbage returned 2 invalid sample(s)" in caplog.text
    # Still hung at the next cycle: skipped, not stacked on the pool.
    runner.run_cycle(2, 60.0)
    assert len(hang.calls) == 1
    assert "hangs still running" in caplog.text
    hang.release.set()
    deadline = time.monotonic() + 5
    while runner._busy and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.run_cycle(3, 120.0)
    assert len(hang.calls) == 2


def test_only_owned_resources_are_polled(executor: futures.ThreadPoolExecutor) -> None:
    good = Good()
    runner, _ = runner_for([good], executor,
                           ownership=lambda src, ns, keys, index, start: [k for k in keys if k.endswith("1")])
    stats = runner.run_cycle(1, 0.0)
    assert good.calls == [["r1"]] and stats.owned == 1 and stats.resources == 10


def test_fenced_namespace_polls_nothing(executor: futures.ThreadPoolExecutor) -> None:
    good = Good()
    runner, recorder = runner_for([good], executor, ownership=lambda src, ns, keys, index, start: None)
    stats = runner.run_cycle(1, 0.0)
    assert stats.fenced and good.calls == [] and recorder.samples == []


def test_discovery_with_param_and_unknown_discovery(executor: futures.ThreadPoolExecutor,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    good = Good()
    source = Source("s", 60, ("*",), discovery=("lister://4", "nosuch"))
    runner, _ = runner_for([good], executor, source=source)
    stats = runner.run_cycle(1, 0.0)
    assert good.calls == [["d-0", "d-1", "d-2", "d-3"]]
    assert stats.errors == 1 and "unknown discovery 'nosuch'" in caplog.text


def test_a_raising_publisher_is_counted(executor: futures.ThreadPoolExecutor) -> None:
    runner, _ = runner_for([Good()], executor)

    class Broken(Recorder):
        def publish_samples(self, samples: Sequence[Sample]) -> None:
            raise OSError("disk full")

    runner.publishers.insert(0, Broken())
    stats = runner.run_cycle(1, 0.0)
    assert stats.errors == 1 and len(runner.publishers[1].samples) == 10
