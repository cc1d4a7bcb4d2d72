"""The real servers a Prometheus-style scraper is tested and benchmarked with.

VictoriaMetrics (the sink: duplicates kept and counted), node_exporter (a
genuine target), the exposition server (many targets in one process, with
faults and counts) and the peer scrapers vmagent and Prometheus agent,
sharding a file_sd target list and writing into VictoriaMetrics.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cramjam
import psutil
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_om,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from zkpoll.exceptions import ZkpollError
from zkpoll.publisher.prompb import encode_labels, encode_series
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.exposition_server import target_addresses
from zkpoll.testing.node_exporter import COLLECTORS, ManagedNodeExporter
from zkpoll.testing.plugins import require_server
from zkpoll.testing.scrapers import (
    ManagedPrometheusAgent,
    ManagedVmagent,
    write_file_sd,
)
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

#: What Prometheus 2.42 sends when it scrapes.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
Fleet = Callable[..., ManagedExpositionServer]


def get(url: str, headers: dict[str, str] | None = None,
        timeout: float = 5.0) -> tuple[int, Any, bytes]:
    """(status, headers, body) of a GET; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=timeout) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def remote_write(url: str, series: list[tuple[dict[str, str], float, int]]) -> None:
    """POST one remote-write request of (labels, value, timestamp ms) samples."""
    body = b"".join(encode_series(encode_labels(sorted(labels.items())), value, stamp)
                    for labels, value, stamp in series)
    request = urllib.request.Request(url, data=bytes(cramjam.snappy.compress_raw(body)),
                                     headers={"Content-Encoding": "snappy",
                                              "Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 204


# -- VictoriaMetrics -----------------------------------------------------------------

def test_victoria_metrics_runs_without_deduplication(
        victoria_metrics_server: ManagedVictoriaMetrics) -> None:
    flags = victoria_metrics_server.flags()
    assert flags["dedup.minScrapeInterval"] == "0s"
    assert flags["search.latencyOffset"] == "0s"


def test_export_returns_every_duplicate_right_after_flush(
        victoria_metrics_server: ManagedVictoriaMetrics) -> None:
    vm = victoria_metrics_server
    job = f"dup-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)

    def series(case: str) -> dict[str, str]:
        return {"__name__": "dup_probe", "job": job, "case": case}

    vm.import_samples(series("same"), [(now, 1.0)])
    vm.import_samples(series("same"), [(now, 1.0)])
    vm.import_samples(series("other-value"), [(now, 1.0)])
    vm.import_samples(series("other-value"), [(now, 2.0)])
    remote_write(vm.write_url, [(series("rw"), 5.0, now), (series("rw"), 5.0, now)])
    remote_write(vm.write_url, [(series("rw"), 5.0, now), (series("later"), 1.0, now)])
    remote_write(vm.write_url, [(series("later"), 2.0, now + 1000)])
    vm.flush()
    got = {dict(labels)["case"]: points for labels, points in vm.export(f'{{job="{job}"}}').items()}
    assert got["same"] == [(now, 1.0), (now, 1.0)]
    assert sorted(got["other-value"]) == [(now, 1.0), (now, 2.0)]
    assert got["rw"] == [(now, 5.0)] * 3      # two in one request, one in another
    assert got["later"] == [(now, 1.0), (now + 1000, 2.0)]
    assert vm.series_count(f'{{job="{job}"}}') == 4
    assert vm.export(f'{{job="{job}"}}', start=now / 1000 + 0.5) == {
        tuple(sorted(series("later").items())): [(now + 1000, 2.0)]}


def test_own_victoria_metrics_restarts_with_its_data_and_cleans_up() -> None:
    require_server(ManagedVictoriaMetrics)
    vm = ManagedVictoriaMetrics()
    try:
        vm.start()
        now = int(time.time() * 1000)
        vm.import_samples({"__name__": "kept", "job": "restart"}, [(now, 3.0), (now, 3.0)])
        vm.flush()
        vm.restart()
        assert vm.export('{job="restart"}') == {
            (("__name__", "kept"), ("job", "restart")): [(now, 3.0), (now, 3.0)]}
    finally:
        vm.close()
    assert not vm.running and not vm.log_path.parent.exists()
    with pytest.raises(ZkpollError):
        vm.flush()


# -- node_exporter -------------------------------------------------------------------

def test_node_exporter_serves_only_collectors_that_work_here() -> None:
    require_server(ManagedNodeExporter)
    with ManagedNodeExporter() as node:
        status, _, body = get(node.metrics_url)
        assert status == 200
        families = {family.name: family for family in parse_text(body.decode())}
    success = {s.labels["collector"]: s.value
               for s in families["node_scrape_collector_success"].samples}
    assert success == dict.fromkeys(COLLECTORS, 1.0)
    assert "node_cpu_seconds" in families  # the parser drops _total
    assert not node.running and not node.log_path.parent.exists()


# -- the exposition server -----------------------------------------------------------

def test_target_addresses_stay_in_loopback_and_skip_0_and_255() -> None:
    assert target_addresses(3, "127.1.0.254") == ["127.1.0.254", "127.1.1.1", "127.1.1.2"]
    with pytest.raises(ZkpollError, match="leave 127.0.0.0/8"):
        target_addresses(3, "127.255.255.253")


def test_a_thousand_targets_share_one_port_and_all_answer(
        managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=1000, series=93)
    hosts = {target.rpartition(":")[0] for target in fleet.targets}
    assert len(hosts) == 1000 and all(host.startswith("127.") for host in hosts)
    assert {target.rpartition(":")[2] for target in fleet.targets} == {str(fleet.target_port)}
    for target in fleet.targets:
        assert get(f"http://{target}/metrics")[0] == 200
    assert set(fleet.scrape_counts().values()) == {1}


def test_text_and_openmetrics_bodies_parse_with_the_series_asked(
        managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=2, series=500)
    url = f"http://{fleet.targets[0]}/metrics"
    status, headers, body = get(url)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = list(parse_text(body.decode()))
    assert sum(len(family.samples) for family in text) == 500
    assert {family.type for family in text} == {"counter", "gauge", "histogram", "summary"}

    status, headers, body = get(url, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert headers["Content-Encoding"] == "gzip"
    document = gzip.decompress(body).decode()
    assert document.endswith("# EOF\n")
    families = {family.name: family for family in parse_om(document)}
    assert sum(len(family.samples) for family in families.values()) == 500
    histogram = families["http_request_duration_seconds"]
    for handler in {s.labels["handler"] for s in histogram.samples}:
        mine = [s for s in histogram.samples if s.labels["handler"] == handler]
        buckets = [s.value for s in mine if s.name.endswith("_bucket")]
        count = next(s.value for s in mine if s.name.endswith("_count"))
        assert buckets == sorted(buckets) and buckets[-1] == count


def test_counters_grow_on_every_scrape_of_a_target(managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=1, series=200)

    def counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        body = get(f"http://{fleet.targets[0]}/metrics")[2].decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in parse_text(body) if family.type == "counter"
                for s in family.samples}

    first, second = counters(), counters()
    assert first.keys() == second.keys() and len(first) > 50
    assert all(second[key] > first[key] for key in first)


def test_scrape_counts_count_metrics_requests_per_target(
        managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=4, series=100)
    a, b, *rest = fleet.targets
    for _ in range(3):
        get(f"http://{a}/metrics")
    get(f"http://{b}/metrics")
    assert get(f"http://{b}/other")[0] == 404
    assert fleet.scrape_counts() == {a: 3, b: 1, **dict.fromkeys(rest, 0)}


def test_faults_error_hang_and_down_then_ok_again(managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=3, series=100)
    broken, slow, gone = fleet.targets
    fleet.set_fault(broken, "error")
    fleet.set_fault(slow, "hang", seconds=30)
    fleet.set_fault(gone, "down")
    assert fleet.faults() == {broken: ("error", 3600.0), slow: ("hang", 30.0),
                              gone: ("down", 3600.0)}
    assert get(f"http://{broken}/metrics")[0] == 500
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        get(f"http://{slow}/metrics", timeout=0.5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(tuple(gone.split(":")), timeout=1).close()  # type: ignore[arg-type]
    assert fleet.scrape_counts() == {broken: 1, slow: 1, gone: 0}

    fleet.set_fault(slow, "hang", seconds=0.4)   # a late answer, not none
    started = time.monotonic()
    assert get(f"http://{slow}/metrics", timeout=5)[0] == 200
    assert time.monotonic() - started >= 0.4
    fleet.clear_faults()
    assert fleet.faults() == {}
    assert [get(f"http://{target}/metrics")[0] for target in fleet.targets] == [200] * 3
    with pytest.raises(ZkpollError, match="fault mode"):
        fleet.set_fault(broken, "explode")
    with pytest.raises(ZkpollError, match="no target"):
        fleet.set_fault("127.9.9.9:1", "error")


def _scrape_rate(fleet: ManagedExpositionServer, targets: list[str], rounds: int,
                 headers: dict[str, str]) -> float:
    """Scrapes per CPU-second of the generator: ``rounds`` keep-alive passes over ``targets``."""
    connections = [http.client.HTTPConnection(*t.split(":"), timeout=10) for t in targets]
    process = psutil.Process(fleet.pid)
    before = sum(process.cpu_times()[:2])
    for _ in range(rounds):
        for connection in connections:
            connection.request("GET", "/metrics", headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
    spent = sum(process.cpu_times()[:2]) - before
    for connection in connections:
        connection.close()
    return rounds * len(targets) / max(spent, 0.01)


def test_generator_sustains_hundreds_of_scrapes_per_cpu_second(
        managed_exposition_server: Fleet) -> None:
    fleet = managed_exposition_server(targets=100, series=1000)
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    in_step = _scrape_rate(fleet, fleet.targets, 20, headers)      # bodies shared by n
    one_target = _scrape_rate(fleet, fleet.targets[:1], 1000, headers)  # a new body each
    print(f"\nexposition server, 1000 series, OpenMetrics+gzip: {in_step:.0f} scrapes per "
          f"CPU-second with targets in step, {one_target:.0f} rendering every body")
    assert in_step > 1000 and one_target > 300


def test_closed_generator_leaves_no_process_dir_or_listener() -> None:
    fleet = ManagedExpositionServer(targets=3, series=100)
    fleet.start()
    pid, target = fleet.pid, fleet.targets[0]
    fleet.close()
    assert pid is not None and not fleet.running and not psutil.pid_exists(pid)
    assert not fleet.log_path.parent.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(tuple(target.split(":")), timeout=1).close()  # type: ignore[arg-type]


# -- the peer scrapers ---------------------------------------------------------------

Scraper = ManagedVmagent | ManagedPrometheusAgent


@pytest.fixture
def scrapers() -> Iterator[list[Scraper]]:
    """The scrapers a test started (append them); all closed after it."""
    started: list[Scraper] = []
    yield started
    for scraper in started:
        scraper.close()


def up_by_shard(vm: ManagedVictoriaMetrics, job: str) -> dict[str, dict[str, list[float]]]:
    """{shard: {instance: up values}} of ``job`` as VictoriaMetrics holds them now."""
    vm.flush()
    out: dict[str, dict[str, list[float]]] = {}
    for labels, points in vm.export(f'up{{job="{job}"}}').items():
        label = dict(labels)
        out.setdefault(label["shard"], {})[label["instance"]] = [v for _, v in points]
    return out


def logs(agents: list[Scraper]) -> str:
    return "\n".join(f"--- {agent!r}\n{agent.log_text(tail=15)}" for agent in agents)


@pytest.mark.parametrize("kind", [ManagedVmagent, ManagedPrometheusAgent],
                         ids=["vmagent", "prometheus-agent"])
def test_two_shards_cover_a_rewritten_file_sd_and_write_up_series(
        kind: type[Scraper], victoria_metrics_server: ManagedVictoriaMetrics,
        managed_exposition_server: Fleet, scrapers: list[Scraper], tmp_path: Path) -> None:
    require_server(kind)
    vm = victoria_metrics_server
    fleet = managed_exposition_server(targets=12, series=100)
    first, later = fleet.targets[:6], fleet.targets[6:]
    file_sd = tmp_path / "targets.json"
    write_file_sd(file_sd, first)
    job = f"{kind.program}-{uuid.uuid4().hex[:8]}"
    for member in range(2):
        scrapers.append(kind(vm.write_url, file_sd, members=2, member=member,
                             scrape_interval=1.0, job=job,
                             external_labels={"shard": str(member)}))
        scrapers[-1].start()

    def scraped(targets: list[str]) -> bool:
        counts = fleet.scrape_counts()
        return all(counts[target] > 0 for target in targets)

    wait_for(lambda: scraped(first), 15, "the first six targets scraped",
             diagnostics=lambda: logs(scrapers))
    assert all(fleet.scrape_counts()[target] == 0 for target in later)
    write_file_sd(file_sd, fleet.targets)
    wait_for(lambda: scraped(later), 15, "the targets added to file_sd scraped",
             diagnostics=lambda: logs(scrapers))

    def covered() -> dict[str, dict[str, list[float]]] | None:
        shards = up_by_shard(vm, job)
        return shards if set().union(*shards.values()) == set(fleet.targets) else None

    shards = wait_for(covered, 20, f"up of all 12 targets in VictoriaMetrics ({job})",
                      diagnostics=lambda: f"{up_by_shard(vm, job)}\n{logs(scrapers)}")
    assert not set(shards["0"]) & set(shards["1"]), "a target in both shards"
    assert all(set(values) == {1.0} for shard in shards.values() for values in shard.values())
    vm.flush()
    assert vm.series_count(f'node_load1{{job="{job}"}}') == 12

    down = fleet.targets[0]
    fleet.set_fault(down, "down")
    wait_for(lambda: any(0.0 in shard.get(down, []) for shard in up_by_shard(vm, job).values()),
             15, f"up == 0 for {down} once it is down", diagnostics=lambda: logs(scrapers))


def test_vmagent_replication_factor_two_scrapes_every_target_twice(
        victoria_metrics_server: ManagedVictoriaMetrics, managed_exposition_server: Fleet,
        scrapers: list[Scraper], tmp_path: Path) -> None:
    require_server(ManagedVmagent)
    vm = victoria_metrics_server
    fleet = managed_exposition_server(targets=6, series=100)
    file_sd = tmp_path / "targets.json"
    write_file_sd(file_sd, fleet.targets)
    job = f"vmagent-rf2-{uuid.uuid4().hex[:8]}"
    for member in range(2):
        scrapers.append(ManagedVmagent(vm.write_url, file_sd, members=2, member=member,
                                       replication_factor=2, scrape_interval=1.0, job=job,
                                       external_labels={"shard": str(member)}))
        scrapers[-1].start()
    everything = set(fleet.targets)
    wait_for(lambda: all(set(shard) == everything for shard in up_by_shard(vm, job).values())
             and len(up_by_shard(vm, job)) == 2, 20, "both members scraping all six targets",
             diagnostics=lambda: f"{up_by_shard(vm, job)}\n{logs(scrapers)}")
