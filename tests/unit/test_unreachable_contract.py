"""Unreachable from both sides: the runner that consumes it, the kit that checks it.

The runner sets Unreachable results apart, counts them, hands off the
resources nothing reached (when the agent has failover) and publishes the
samples of the rest exactly as the pollster published them before.  The pollsters here are fakes of pure logic; one test
runs the real HTTP pollsters on real loopback sockets.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.plugin import PollingContext, Pollster, Unreachable, resource_key
from zkpoll.polling.agent import Agent
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import CycleStats, SourceRunner
from zkpoll.polling.sources import Source
from zkpoll.pollsters import network
from zkpoll.publisher.base import Publisher
from zkpoll.sample import GAUGE, Sample
from zkpoll.testing.plugins import PollsterContract, RefusedPort, poll, poll_results

pytestmark = pytest.mark.timeout(30)

RESOURCES = tuple(f"r{i}" for i in range(6))


class Recorder(Publisher):
    def __init__(self) -> None:  # an in-memory publisher for assertions
        super().__init__(None, urllib.parse.urlsplit("memory://"))
        self.samples: list[Sample] = []

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        self.samples.extend(samples)


def _down(rid: str) -> Sample:
    return Sample("m", GAUGE, "1", 0, rid, timestamp=1.0, resource_metadata={"error": "refused"})


class Fixed(Pollster):
    """Yields a sample per resource, except: ``down`` an Unreachable with a "down"
    sample, ``gone`` one without; then ``extra`` as given."""

    default_discovery = None
    meter = "m"

    def __init__(self, down: Sequence[str] = (), gone: Sequence[str] = (),
                 extra: Sequence[Any] = (), as_before: bool = False) -> None:
        super().__init__()
        self.down, self.gone, self.extra, self.as_before = set(down), set(gone), extra, as_before

    def get_samples(self, context: PollingContext, resources: list[Any]) -> Iterator[Any]:
        for rid in map(resource_key, resources):
            if rid in self.down:  # as_before: what pollsters yielded before issue 21
                yield _down(rid) if self.as_before else Unreachable(rid, "refused", _down(rid))
            elif rid in self.gone:
                if not self.as_before:
                    yield Unreachable(rid, "no route")
            else:
                yield Sample("m", GAUGE, "1", 1, rid, timestamp=1.0)
        yield from self.extra


@pytest.fixture
def executor() -> Iterator[futures.ThreadPoolExecutor]:
    pool = futures.ThreadPoolExecutor(4)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def _runner(pollsters: list[Pollster], executor: futures.ThreadPoolExecutor,
            resources: Sequence[str] = RESOURCES, kind: type[SourceRunner] = SourceRunner,
            ) -> tuple[SourceRunner, Recorder]:
    infos = [PollsterInfo(p.meter, "central", p) for p in pollsters]  # type: ignore[attr-defined]
    recorder = Recorder()
    runner = kind(Source("s", 60, ("*",), resources=tuple(resources)), infos, LoadedPlugins(),
                  [recorder], executor, lambda src, ns, keys, index, start: keys, None,
                  lambda: "me", timeout=5.0, batch_size=4)
    return runner, recorder


def _published(recorder: Recorder) -> list[str]:
    return sorted(json.dumps(s.as_dict(), sort_keys=True) for s in recorder.samples)


# --- the runner ---------------------------------------------------------------------------

def test_unreachable_samples_are_published_exactly_as_before(
        executor: futures.ThreadPoolExecutor) -> None:
    now, recorder = _runner([Fixed(down=["r1"], gone=["r2"])], executor)
    before, old = _runner([Fixed(down=["r1"], gone=["r2"], as_before=True)], executor)
    stats, old_stats = now.run_cycle(3, 180.0), before.run_cycle(3, 180.0)
    assert _published(recorder) == _published(old)  # same samples, same bytes
    assert (stats.samples, stats.errors) == (old_stats.samples, old_stats.errors) == (5, 0)
    assert (stats.unreachable, stats.unreachable_keys) == (2, {"r1", "r2"})
    assert (old_stats.unreachable, old_stats.unreachable_keys) == (0, set())


def test_the_real_http_pollsters(executor: futures.ThreadPoolExecutor, healthy_http: str,
                                 refused_port: RefusedPort) -> None:
    good, dead = f"http://{healthy_http}/", f"http://{refused_port.address}/"
    runner, recorder = _runner([network.HTTPStatusPollster(), network.HTTPResponseTimePollster()],
                               executor, [good, dead])
    stats = runner.run_cycle(1, 60.0)
    assert (stats.unreachable, stats.unreachable_keys) == (2, {dead})  # one per meter
    assert (stats.samples, stats.errors) == (3, 0)
    by_meter = {(s.name, s.resource_id): s for s in recorder.samples}
    assert set(by_meter) == {("http.status", good), ("http.status", dead),
                             ("http.response.time", good)}
    assert by_meter["http.status", dead].volume == 0
    assert by_meter["http.status", dead].resource_metadata["error"].startswith(
        "ConnectionRefusedError")
    assert by_meter["http.status", dead].cycle_start == 60.0  # stamped like any sample


def test_invalid_unreachables_are_dropped_and_counted(
        executor: futures.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    extra = [Unreachable("elsewhere", "not given"), Unreachable("r1", "twice"),
             Unreachable("r3", "beside its sample"), Unreachable(42, "no id"),  # type: ignore[arg-type]
             Unreachable("r4", "a bad sample", "not a sample"),  # type: ignore[arg-type]
             "not a sample either"]
    runner, recorder = _runner([Fixed(down=["r1", "r4"], extra=extra)], executor)
    with caplog.at_level(logging.ERROR):
        stats = runner.run_cycle(1, 0.0)
    # r4's first Unreachable is valid; the second, with a bad sample, is its duplicate.
    assert (stats.unreachable, stats.unreachable_keys) == (2, {"r1", "r4"})
    assert "pollster m returned 5 invalid Unreachable(s)" in caplog.text
    assert "pollster m returned 1 invalid sample(s)" in caplog.text
    assert stats.errors == 2  # one per kind of garbage, as for samples
    assert sorted(s.resource_id for s in recorder.samples) == [f"r{i}" for i in range(6)]


def test_a_bad_sample_in_a_valid_unreachable_is_garbage(
        executor: futures.ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    bad = _Yields(Unreachable("r0", "refused", "not a sample"))  # type: ignore[arg-type]
    runner, recorder = _runner([bad], executor, ["r0"])
    stats = runner.run_cycle(1, 0.0)
    assert (stats.unreachable, stats.errors, recorder.samples) == (1, 1, [])
    assert "returned 1 invalid sample(s)" in caplog.text


def test_keys_nothing_reached_are_handed_off_and_only_the_given_up_published(
        executor: futures.ThreadPoolExecutor) -> None:
    calls: list[tuple[str, list[str], int, tuple[str, ...]]] = []

    def hand_off(source: str, namespace: str, keys: Sequence[str], index: int, start: float,
                 tried: tuple[str, ...]) -> list[str]:
        calls.append((namespace, sorted(keys), index, tried))
        return ["r2"]  # r1 handed to another member, r2 unreachable from every member

    runner, recorder = _runner([Fixed(down=["r1", "r2"])], executor)
    runner.hand_off = hand_off
    stats = runner.run_cycle(4, 240.0)
    assert calls == [("central", ["r1", "r2"], 4, ())]
    assert sorted(s.resource_id for s in recorder.samples) == ["r0", "r2", "r3", "r4", "r5"]
    assert (stats.unreachable, stats.handed_off, stats.gave_up) == (2, 1, 1)


def test_a_key_one_meter_reached_is_not_handed_off(executor: futures.ThreadPoolExecutor) -> None:
    """Handing it off would poll the meter that reached it twice."""
    class Other(Fixed):
        meter = "m2"

    handed: list[Sequence[str]] = []
    runner, recorder = _runner([Fixed(down=["r1"]), Other()], executor)
    runner.hand_off = lambda *args: handed.append(args[2]) or []
    runner.run_cycle(4, 240.0)
    assert handed == []
    assert [s.resource_metadata for s in recorder.samples if s.resource_id == "r1"
            and s.volume == 0] == [{"error": "refused"}], "its Unreachable's sample, once"


def test_a_handoff_poll_hands_on_with_its_chain(executor: futures.ThreadPoolExecutor) -> None:
    seen: list[tuple[str, ...]] = []
    runner, recorder = _runner([Fixed(down=["r1"])], executor)
    runner.hand_off = lambda *args: seen.append(args[5]) or list(args[2])
    stats = runner.catch_up(4, 240.0, "central", ["r1", "r3"], tried=("owner",))
    assert seen == [("owner",)], "its chain goes on"
    assert stats.handoff and stats.handed_in == 2 and stats.gave_up == 1
    assert sorted(s.resource_id for s in recorder.samples) == ["r1", "r3"]


def test_a_catch_up_counts_its_unreachables(executor: futures.ThreadPoolExecutor) -> None:
    runner, recorder = _runner([Fixed(down=["r1"], gone=["r2"])], executor)
    runner.run_cycle(1, 60.0)
    recorder.samples.clear()
    stats = runner.catch_up(1, 60.0, "central", ["r1", "r2", "r5"])
    assert (stats.unreachable, stats.unreachable_keys, stats.errors) == (2, {"r1", "r2"}, 0)
    assert sorted(s.resource_id for s in recorder.samples) == ["r1", "r5"]


@pytest.mark.parametrize(("unreachable", "tail"), [
    (0, "0 publish errors; standalone"), (2, "0 publish errors, 2 unreachable; standalone")])
def test_the_cycle_line_names_unreachables_only_when_there_are_some(
        unreachable: int, tail: str, caplog: pytest.LogCaptureFixture) -> None:
    stats = CycleStats("s", 7, 0.0, resources=3, owned=3, samples=3, duration=0.25,
                       unreachable=unreachable)
    with caplog.at_level(logging.INFO, logger="zkpoll.polling.agent"):
        Agent(cfg.ConfigOpts(), ["central"])._log_cycle(stats)
    line = f"source s cycle 7: polled 3 of 3 resource(s), 3 samples in 0.250s, 0 errors, " \
        f"0 timeouts, {tail}"
    assert caplog.messages == [line]
    assert caplog.records[0].levelno == logging.INFO


# --- the kit ----------------------------------------------------------------------------

class _Yields(Pollster):
    """Yields ``results`` whatever it is given."""

    default_discovery = None
    meter = "m"

    def __init__(self, *results: Any) -> None:
        super().__init__()
        self.results = list(results)

    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Any]:
        return self.results


def _sample(rid: str, volume: int = 1) -> Sample:
    return Sample("m", GAUGE, "1", volume, rid)


def test_poll_returns_what_a_lone_agent_publishes() -> None:
    down = _sample("b", 0)
    pollster = _Yields(_sample("a"), Unreachable("b", "refused", down), Unreachable("c", "gone"))
    assert poll(pollster, ["a", "b", "c"]) == [pollster.results[0], down]
    assert poll_results(pollster, ["a", "b", "c"]) == pollster.results


@pytest.mark.parametrize(("results", "complaint"), [
    ([Unreachable("elsewhere", "x")], "not one of the resources given"),
    ([Unreachable("a", "x"), Unreachable("a", "y")], "two Unreachable"),
    ([Unreachable("a", "")], "no reason"),
    ([Unreachable("a", "x", "junk")], "not a Sample"),  # type: ignore[arg-type]
    ([_sample("a"), Unreachable("a", "x")], "a sample and an Unreachable"),
])
def test_poll_results_checks_each_unreachable(results: list[Any], complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        poll_results(_Yields(*results), ["a", "b"])


class _Probe(PollsterContract):
    """The contract's Unreachable checks, called by hand on fakes."""

    meter, sample_type, unit = "m", GAUGE, "1"


def test_the_contract_wants_an_unreachable_not_a_down_sample() -> None:
    with pytest.raises(AssertionError, match="no Unreachable for"):
        _Probe().test_unreachable_resources_give_unreachable(_Yields(_sample("a", 0)), ["a"])
    _Probe().test_unreachable_resources_give_unreachable(
        _Yields(Unreachable("a", "refused", _sample("a", 0))), ["a"])


def test_the_contract_wants_the_down_sample_of_the_declared_meter() -> None:
    other = Sample("other", GAUGE, "1", 0, "a")
    with pytest.raises(AssertionError):
        _Probe().test_unreachable_resources_give_unreachable(
            _Yields(Unreachable("a", "refused", other)), ["a"])


def test_the_contract_wants_live_resources_not_unreachable() -> None:
    everything = _Yields(Unreachable("live", "x"), Unreachable("dead", "x"))
    with pytest.raises(AssertionError, match="live resources said Unreachable"):
        _Probe().test_only_the_unreachable_resources_are_unreachable(
            everything, ["live"], ["dead"])
