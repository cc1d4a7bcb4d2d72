"""Cycle maths and sample ids: what every agent must compute identically."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zkpoll.sample import GAUGE, Sample, sample_id
from zkpoll.service.cycles import cycle_index, cycle_start, next_cycle, source_offset


def test_cycles_are_aligned_to_wall_clock_multiples_plus_the_offset() -> None:
    assert cycle_index(1000.0, 10) == 100
    assert cycle_start(100, 10) == 1000.0
    assert cycle_index(1009.999, 10) == 100 and cycle_index(1010.0, 10) == 101
    assert cycle_index(1000.0, 10, offset=0.5) == 99
    assert cycle_start(100, 10, offset=0.5) == 1000.5
    assert next_cycle(1000.0, 10) == (101, 1010.0)
    assert next_cycle(1000.2, 10, offset=0.5) == (100, 1000.5)


@pytest.mark.parametrize("interval", [1, 10, 60, 300, 3600])
def test_offset_is_deterministic_and_bounded(interval: int) -> None:
    offsets = {source_offset(f"source-{i}", interval) for i in range(200)}
    assert all(0 <= o < min(interval * 0.1, 5.0) for o in offsets)
    assert len(offsets) > 50  # sources are spread out
    assert source_offset("same", interval) == source_offset("same", interval)


def test_offset_is_the_same_in_another_process() -> None:
    code = "from zkpoll.service.cycles import source_offset; print(source_offset('cpu', 60))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "99"}).stdout.strip()
    assert float(out) == source_offset("cpu", 60)


def test_sample_id_is_deterministic_and_pinned() -> None:
    # Pinned: consumers de-duplicate on it, across agents and versions.
    assert sample_id("cpu", "h", 1.0) == "3b979418-50de-2eaa-51cf-7ffd3745c6d3"
    assert sample_id("cpu", "h", 1.0) == sample_id("cpu", "h", 1.0004)  # milliseconds
    assert len({sample_id("cpu", "h", 1.0), sample_id("cpu", "h", 2.0),
                sample_id("mem", "h", 1.0), sample_id("cpu", "g", 1.0)}) == 4


def test_sample_serialises_with_its_id_and_iso_times() -> None:
    sample = Sample("cpu", GAUGE, "%", 12.5, "host-1", timestamp=0.0,
                    resource_metadata={"k": "v"}, source="s", member_id="m", cycle_start=60.0)
    data = json.loads(json.dumps(sample.as_dict()))
    assert data["id"] == sample_id("cpu", "host-1", 60.0)
    assert data["timestamp"] == "1970-01-01T00:00:00+00:00"
    assert data["cycle_start"] == "1970-01-01T00:01:00+00:00"
    assert (data["volume"], data["member_id"], data["resource_metadata"]) == (12.5, "m", {"k": "v"})


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"type": "rate"}, "type"),
    ({"resource_id": ""}, "resource_id"),
    ({"volume": "12"}, "volume"),
    ({"volume": True}, "volume"),
])
def test_validate_rejects_broken_samples(kwargs: dict, error: str) -> None:
    fields = {"name": "cpu", "type": GAUGE, "unit": "%", "volume": 1, "resource_id": "h"}
    with pytest.raises(ValueError, match=error):
        Sample(**{**fields, **kwargs}).validate()


def test_latest_samples_keep_meters_not_scraped_series() -> None:
    from zkpoll.polling.latest import LatestSamples
    latest = LatestSamples()
    latest.record([Sample("host.load", "gauge", "1", 0.5, "h1"),
                   Sample("node_load1", "gauge", "", 0.7, "t1", labels={"job": "node"})])
    assert latest.meters() == ["host.load"]
