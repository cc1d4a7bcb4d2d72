"""Datapoints from Prometheus answers and from the agents' latest samples (pure parts)."""

from __future__ import annotations

import math

import pytest

from zkpoll.alarm.queries import HTTPGetter, parse_query_answer
from zkpoll.exceptions import ConfigError
from zkpoll.polling.latest import LatestSamples
from zkpoll.sample import Sample


def vector(*values: str) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"i": str(i)}, "value": [1.0, v]} for i, v in enumerate(values)]}}


def test_vector_values_in_order() -> None:
    point = parse_query_answer(200, vector("1.5", "2", "+Inf"))
    assert point.values == (1.5, 2.0, math.inf)
    assert point.error is None


def test_scalar() -> None:
    point = parse_query_answer(200, {"status": "success",
                                     "data": {"resultType": "scalar", "result": [1.0, "0.25"]}})
    assert point.values == (0.25,)


def test_empty_vector_is_no_data_without_error() -> None:
    point = parse_query_answer(200, vector())
    assert not point.values
    assert point.error is None


def test_nan_and_junk_values_are_no_value() -> None:
    assert parse_query_answer(200, vector("NaN", "x", "3")).values == (3.0,)
    assert not parse_query_answer(200, vector("NaN")).values


def test_refused_query_names_prometheus_error() -> None:
    point = parse_query_answer(400, {"status": "error", "errorType": "bad_data",
                                     "error": "parse error at char 3"})
    assert not point.values
    assert "bad_data" in point.error and "parse error" in point.error


def test_matrix_is_refused_with_advice() -> None:
    point = parse_query_answer(200, {"status": "success",
                                     "data": {"resultType": "matrix", "result": []}})
    assert not point.values
    assert "instant vector" in point.error


@pytest.mark.parametrize("payload", [None, [], "x", {"status": "success"},
                                     {"status": "success", "data": 3}])
def test_malformed_answers_are_no_data(payload: object) -> None:
    point = parse_query_answer(200, payload)
    assert not point.values
    assert point.error


@pytest.mark.parametrize("url", ["ftp://x", "http://", "prometheus:9090", ""])
def test_bad_url_is_one_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"\[alarm\] prometheus_url"):
        HTTPGetter(url, 1.0, what="[alarm] prometheus_url")


def sample(resource: str, volume: float | None, t: float, name: str = "m") -> Sample:
    return Sample(name, "gauge", "%", volume, resource, timestamp=t)


def test_latest_samples_keep_newest_per_resource() -> None:
    latest = LatestSamples(max_age=100)
    latest.record([sample("a", 1, 10), sample("b", 2, 10)])
    latest.record([sample("a", 3, 20), sample("b", 9, 5), sample("c", None, 30)])
    rows = latest.meter("m", now=50)
    assert [(r["resource_id"], r["volume"]) for r in rows] == [("a", 3.0), ("b", 2.0)]
    assert latest.meters() == ["m"]


def test_latest_samples_forget_old_entries() -> None:
    latest = LatestSamples(max_age=10)
    latest.record([sample("a", 1, 10), sample("b", 2, 25)])
    assert [r["resource_id"] for r in latest.meter("m", now=30)] == ["b"]
    assert latest.meter("other", now=30) == []
