"""ClockEstimator: the offset interval of each sample, intersected over the newest ones."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpoll.coordination.clock import ClockEstimate, ClockEstimator, ClockSample
from zkpoll.coordination.standalone import StandaloneCoordinator

T0 = 1_800_000_000.0  # a wall-clock time of the right magnitude
EPS = 1e-5            # float slack at that magnitude


def sample_for(offset: float, sent: float, there: float, back: float,
               resolution: float = 0.0) -> ClockSample:
    """The sample a backend whose clock is ``offset`` behind ours gives: it reads
    its clock ``there`` s after ``sent`` (truncated to ``resolution``), and the
    answer takes ``back`` s to come back."""
    backend = sent + there - offset
    if resolution:
        backend = math.floor(backend / resolution) * resolution
    return ClockSample(sent, backend, sent + there + back, resolution)


def test_nothing_before_the_first_sample() -> None:
    estimator = ClockEstimator()
    assert estimator.estimate() is None
    assert estimator.round_trip() is None


def test_one_sample_gives_its_exact_interval() -> None:
    estimate = ClockEstimator().add(ClockSample(T0, T0 - 10.0, T0 + 0.2, 0.001))
    # [sent - (backend + resolution), received - backend] = [9.999, 10.2]
    assert estimate.offset == pytest.approx((9.999 + 10.2) / 2, abs=EPS)
    assert estimate.error == pytest.approx((10.2 - 9.999) / 2, abs=EPS)
    assert (estimate.round_trip, estimate.samples) == (pytest.approx(0.2), 1)
    assert (estimate.backend_time, estimate.measured_at) == (T0 - 10.0, T0 + 0.2)


def test_agreeing_samples_intersect() -> None:
    estimator = ClockEstimator()
    estimator.add(ClockSample(T0, T0 - 3.0, T0 + 0.4))       # [3.0, 3.4]
    estimate = estimator.add(ClockSample(T0 + 1, T0 - 2.1, T0 + 1.5))  # [3.1, 3.6]
    assert estimate.offset == pytest.approx(3.25, abs=EPS)
    assert estimate.error == pytest.approx(0.15, abs=EPS)
    assert estimate.round_trip == pytest.approx(0.5)
    assert estimate.samples == 2
    assert estimate.measured_at == T0 + 1.5


def test_a_one_second_clock_narrows_over_sub_second_phases() -> None:
    """Memcached's ``stats`` time ticks once a second: one sample bounds the
    offset to 1 s; samples at eight phases of the second narrow it below 0.2 s."""
    true_offset = 0.37
    estimator = ClockEstimator()
    first = estimator.add(sample_for(true_offset, T0, 0.001, 0.001, 1.0))
    assert first.error > 0.49
    for phase in range(1, 8):
        estimate = estimator.add(sample_for(true_offset, T0 + phase * 1.125, 0.001, 0.001, 1.0))
    assert estimate.samples == 8
    assert estimate.error < 0.1
    assert abs(estimate.offset - true_offset) <= estimate.error + EPS


@pytest.mark.parametrize("step", [5.0, -5.0, 0.5, -0.5])
def test_a_stepped_clock_is_followed_at_once(step: float) -> None:
    estimator = ClockEstimator()
    for i in range(8):
        estimator.add(sample_for(0.0, T0 + i, 0.01, 0.01, 0.001))
    estimate = estimator.add(sample_for(step, T0 + 8, 0.01, 0.01, 0.001))
    assert estimate.samples == 1
    assert abs(estimate.offset - step) <= estimate.error + EPS
    estimate = estimator.add(sample_for(step, T0 + 9, 0.005, 0.015, 0.001))
    assert estimate.samples == 2  # the samples after the step agree; the older ones do not
    assert abs(estimate.offset - step) <= estimate.error + EPS


def test_the_window_limits_the_samples_combined() -> None:
    estimator = ClockEstimator(window=3)
    estimator.add(sample_for(1.0, T0, 0.5, 0.5))  # a slow one, soon out of the window
    for i in range(1, 5):
        estimate = estimator.add(sample_for(1.0, T0 + i, 0.01, 0.01))
    assert estimate.samples == 3
    assert estimator.round_trip() == pytest.approx(0.02)


def test_round_trip_covers_the_window_even_samples_that_disagree() -> None:
    estimator = ClockEstimator()
    estimator.add(sample_for(0.0, T0, 0.3, 0.3))
    estimate = estimator.add(sample_for(9.0, T0 + 1, 0.01, 0.01))  # a step
    assert estimate.samples == 1 and estimate.round_trip == pytest.approx(0.02)
    assert estimator.round_trip() == pytest.approx(0.6)


@pytest.mark.parametrize("bad", [
    ClockSample(float("nan"), T0, T0 + 1),
    ClockSample(T0, float("nan"), T0 + 1),
    ClockSample(T0, T0, float("inf")),
    ClockSample(T0, T0, T0 + 1, float("nan")),
    ClockSample(T0, T0, T0 + 1, -0.001),
    ClockSample(T0 + 1, T0, T0),  # received before sent: the local clock stepped back
])
def test_bad_samples_are_refused_and_change_nothing(bad: ClockSample) -> None:
    estimator = ClockEstimator()
    with pytest.raises(ValueError):
        estimator.add(bad)
    assert estimator.estimate() is None and estimator.round_trip() is None
    good = estimator.add(sample_for(2.0, T0, 0.01, 0.01))
    with pytest.raises(ValueError):
        estimator.add(bad)
    assert estimator.estimate() == good


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        ClockEstimator(window=0)


def test_concurrent_adds_keep_a_consistent_estimate() -> None:
    estimator = ClockEstimator()

    def feed(first: int) -> None:
        for i in range(first, first + 500):
            estimator.add(sample_for(0.25, T0 + i * 0.01, 0.002, 0.003, 0.001))

    threads = [threading.Thread(target=feed, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    estimate = estimator.estimate()
    assert isinstance(estimate, ClockEstimate) and 1 <= estimate.samples <= 8
    assert abs(estimate.offset - 0.25) <= estimate.error + EPS


#: One-way delays: never quite 0, so that no interval is narrower than float error.
def test_the_standalone_coordinator_is_its_own_clock() -> None:
    coordinator = StandaloneCoordinator("solo")
    coordinator.start()
    first = coordinator.clock()
    assert (first.offset, first.error, first.round_trip) == (0.0, 0.0, 0.0)
    measured = coordinator.measure_clock()
    assert (measured.offset, measured.error) == (0.0, 0.0)
    assert measured.samples > first.samples and measured.measured_at >= first.measured_at
    assert coordinator.watch_delay() == 0.0
    coordinator.stop()


_delay = st.floats(min_value=1e-4, max_value=0.5, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(true_offset=st.floats(min_value=-100.0, max_value=100.0, allow_nan=False),
       resolution=st.sampled_from([0.0, 1e-6, 0.001, 1.0]),
       window=st.integers(min_value=1, max_value=10),
       start=st.floats(min_value=1e9, max_value=2e9, allow_nan=False),
       exchanges=st.lists(st.tuples(st.floats(min_value=0.0, max_value=5.0,
                                              allow_nan=False), _delay, _delay),
                          min_size=1, max_size=20))
def test_the_true_offset_is_always_within_the_error(
        true_offset: float, resolution: float, window: int, start: float,
        exchanges: list[tuple[float, float, float]]) -> None:
    """Samples consistent with one offset: the estimate contains it, and its
    error is at most half the smallest round trip combined plus the resolution."""
    estimator = ClockEstimator(window)
    sent = start
    made: list[ClockSample] = []
    for gap, there, back in exchanges:
        sent += gap
        made.append(sample_for(true_offset, sent, there, back, resolution))
        estimate = estimator.add(made[-1])
        assert estimate.offset - estimate.error - EPS <= true_offset \
            <= estimate.offset + estimate.error + EPS
        recent = made[-window:]
        assert estimate.samples == len(recent)  # consistent samples never disagree
        assert estimate.error <= min(s.round_trip for s in recent) / 2 + resolution + EPS
        assert estimate.round_trip == pytest.approx(max(s.round_trip for s in recent))
