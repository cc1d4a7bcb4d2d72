"""Prometheus remote write into a real Prometheus, read back through its query API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from oslo_config import cfg

from zkpoll.polling import options
from zkpoll.publisher import load_publisher
from zkpoll.sample import Sample
from zkpoll.testing.prometheus import ManagedPrometheus
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

FAST = "retry_backoff=0.05&max_backoff=0.5&timeout=2"


def make_conf(tmp_path: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([])
    conf.set_override("spool_dir", str(tmp_path / "spool"), "publisher")
    return conf


def cycle(start: float, resources: int, value: float = 1.0) -> list[Sample]:
    out = []
    for i in range(resources):
        out.append(Sample("host.cpu.util", "gauge", "%", value + i, f"node-{i}",
                          timestamp=start + 0.3, source="hosts", member_id="a",
                          cycle_start=start))
        out.append(Sample("host.disk.read.bytes", "cumulative", "B", 1000.0 * i, f"node-{i}",
                          timestamp=start + 0.3, source="hosts", member_id="a",
                          cycle_start=start))
    return out


def points(prom: ManagedPrometheus) -> dict[tuple[str, str, int], int]:
    """(metric, resource, timestamp ms) -> how many points Prometheus holds."""
    counts: dict[tuple[str, str, int], int] = {}
    for labels, values in prom.samples('{source="hosts"}').items():
        label = dict(labels)
        for stamp, _ in values:
            key = (label["__name__"], label["resource_id"], stamp)
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_series_names_labels_values_and_poll_time_read_back(managed_prometheus, tmp_path):
    prom = managed_prometheus()
    start = round(time.time() - 30, 3)
    with load_publisher(make_conf(tmp_path), f"{prom.remote_write_url}?{FAST}") as publisher:
        publisher.publish_samples(cycle(start, 3, value=2.5))
        wait_for(lambda: publisher.stats["published"] == 6, 20.0,
                 'publisher.stats["published"] == 6', interval=0.1)
    series = prom.samples('{source="hosts"}')
    assert len(series) == 6
    gauge = series[(("__name__", "host_cpu_util_percent"), ("resource_id", "node-1"),
                    ("source", "hosts"), ("type", "gauge"))]
    assert gauge == [(round(start * 1000), 3.5)]  # the cycle start, to the ms
    counter = series[(("__name__", "host_disk_read_bytes_total"), ("resource_id", "node-2"),
                      ("source", "hosts"), ("type", "cumulative"))]
    assert counter == [(round(start * 1000), 2000.0)]
    assert not any(dict(k).get("member_id") for k in series)


def test_an_outage_loses_nothing_and_duplicates_nothing(managed_prometheus, tmp_path):
    prom = managed_prometheus()
    conf = make_conf(tmp_path)
    url = f"{prom.remote_write_url}?{FAST}"
    now = round(time.time())
    starts = [now - 60 + 2 * k for k in range(12)]
    publisher = load_publisher(conf, url)
    for start in starts[:4]:
        publisher.publish_samples(cycle(start, 5))
    wait_for(lambda: publisher.stats["published"] == 40, 20.0, 'publisher.stats["published"] == 40',
             interval=0.1)
    prom.stop()
    for start in starts[4:8]:
        publisher.publish_samples(cycle(start, 5))
    wait_for(lambda: publisher.stats["errors"] >= 3, 20.0, 'publisher.stats["errors"] >= 3',
             interval=0.1)
    assert publisher.health.failing and publisher.health.depth == 40
    publisher.close(timeout=0)  # an agent restart in the middle of the outage
    publisher = load_publisher(conf, url)
    assert publisher.health.depth == 40
    for start in starts[8:]:
        publisher.publish_samples(cycle(start, 5))
    prom.start()
    wait_for(lambda: publisher.stats["published"] == 80, 20.0, 'publisher.stats["published"] == 80',
             interval=0.1)
    assert publisher.stats["dropped"] == 0 and not publisher.health.failing
    publisher.close()
    counts = points(prom)
    expected = {(name, f"node-{i}", start * 1000) for start in starts for i in range(5)
                for name in ("host_cpu_util_percent", "host_disk_read_bytes_total")}
    assert set(counts) == expected
    assert set(counts.values()) == {1}


def test_a_sample_prometheus_refuses_for_good_is_dropped_and_counted(managed_prometheus,
                                                                      tmp_path, caplog):
    prom = managed_prometheus()
    with load_publisher(make_conf(tmp_path), f"{prom.remote_write_url}?{FAST}") as publisher:
        publisher.publish_samples(cycle(time.time() - 30, 1))
        wait_for(lambda: publisher.stats["published"] == 2, 20.0,
                 'publisher.stats["published"] == 2', interval=0.1)
        too_old = cycle(time.time() - 5 * 3600, 1)  # beyond the OOO window
        good = cycle(time.time() - 20, 3)
        publisher.publish_samples([good[0], too_old[0], *good[1:], too_old[1]])
        wait_for(lambda: publisher.stats["dropped"] == 2, 20.0, 'publisher.stats["dropped"] == 2',
                 interval=0.1)
        wait_for(lambda: publisher.stats["published"] == 8, 20.0,
                 'publisher.stats["published"] == 8', interval=0.1)  # the rest of that batch
    assert publisher.health.drops == {"rejected": 2}
    assert "refused 2 of 8 samples" in caplog.text and "too old sample" in caplog.text
    assert len(points(prom)) == 8
