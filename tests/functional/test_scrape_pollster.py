"""The prometheus.scrape pollster against real targets: node_exporter, the exposition
generator (OpenMetrics, gzip, faults) and a TLS server that checks credentials."""

from __future__ import annotations

import base64
import http.server
import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zkpoll.plugin import Unreachable
from zkpoll.polling.plugins import LoadedPlugins
from zkpoll.sample import CUMULATIVE, GAUGE, Sample, is_stale
from zkpoll.scrape.config import parse_scrape
from zkpoll.scrape.pollster import ScrapePollster
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.node_exporter import ManagedNodeExporter
from zkpoll.testing.plugins import (
    make_context,
    make_test_plugins,
    poll_results,
    require_server,
)
from zkpoll.testing.tls import make_certificates

pytestmark = pytest.mark.functional


def scrape(pollster: ScrapePollster, resources: list[Any], scrape_yaml: dict[str, Any] | None
           = None, *, source: str = "job1", discovered: frozenset[str] | None = None,
           timeout: float = 10.0) -> list[Sample | Unreachable]:
    context = make_context(timeout=timeout, source=source)
    context.scrape = parse_scrape(scrape_yaml or {}, source)
    context.discovered = discovered
    return poll_results(pollster, resources, context=context, timeout=timeout)


def by_name(results: list[Any]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for sample in results:
        if isinstance(sample, Sample):
            out.setdefault(sample.name, []).append(sample)
    return out


@pytest.fixture(scope="module")
def node_exporter() -> Iterator[ManagedNodeExporter]:
    require_server(ManagedNodeExporter)
    with ManagedNodeExporter() as server:
        yield server


@pytest.fixture(scope="module")
def generator() -> Iterator[ManagedExpositionServer]:
    with ManagedExpositionServer(targets=4, series=200) as server:
        yield server


def test_node_exporter_series_keep_names_labels_and_types(
        node_exporter: ManagedNodeExporter) -> None:
    results = scrape(ScrapePollster(), [node_exporter.address])
    series = by_name(results)
    up, = series["up"]
    assert up.volume == 1.0 and up.labels == {"instance": node_exporter.address, "job": "job1"}
    cpu = series["node_cpu_seconds_total"]
    assert {s.type for s in cpu} == {CUMULATIVE}
    assert all({"cpu", "mode", "job", "instance"} <= set(s.labels) for s in cpu)
    assert {s.type for s in series["node_load1"]} == {GAUGE}
    scraped, = series["scrape_samples_scraped"]
    kept, = series["scrape_samples_post_metric_relabeling"]
    reports = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
               "scrape_samples_post_metric_relabeling"}
    assert scraped.volume == kept.volume == sum(
        len(v) for k, v in series.items() if k not in reports)
    assert {s.resource_id for s in results if isinstance(s, Sample)} == {node_exporter.address}
    assert len({s.id for s in results if isinstance(s, Sample)}) == len(results)


def test_openmetrics_and_gzip_histograms_and_summaries(generator: ManagedExpositionServer
                                                       ) -> None:
    series = by_name(scrape(ScrapePollster(), [generator.targets[0]]))
    buckets = [n for n in series if n.endswith("_bucket")]
    assert buckets and all(s.type == CUMULATIVE and "le" in s.labels
                           for n in buckets for s in series[n])
    quantiles = [s for ss in series.values() for s in ss if "quantile" in s.labels]
    assert quantiles and {s.type for s in quantiles} == {GAUGE}
    assert {s.type for n, ss in series.items() for s in ss
            if n.endswith(("_sum", "_count"))} == {CUMULATIVE}
    assert series["up"][0].volume == 1.0


def test_metric_relabelling_and_honor_labels(generator: ManagedExpositionServer) -> None:
    target = generator.targets[1]
    results = scrape(ScrapePollster(), [target], {
        "metric_relabel_configs": [
            {"source_labels": ["__name__"], "regex": ".*_bucket", "action": "drop"},
            {"regex": "mode", "action": "labeldrop"}],
        "static_configs": [{"targets": [target], "labels": {"team": "a"}}]})
    series = by_name(results)
    assert not [n for n in series if n.endswith("_bucket")]
    assert not [s for ss in series.values() for s in ss if "mode" in s.labels]
    kept, = series["scrape_samples_post_metric_relabeling"]
    scraped, = series["scrape_samples_scraped"]
    assert 0 < kept.volume < scraped.volume


def test_limits_fail_the_scrape_with_up_0_and_one_line(
        generator: ManagedExpositionServer, caplog: pytest.LogCaptureFixture) -> None:
    target = generator.targets[2]
    pollster = ScrapePollster()
    with caplog.at_level(logging.WARNING, logger="zkpoll.scrape"):
        for _ in range(2):
            series = by_name(scrape(pollster, [target], {"sample_limit": 10}))
            assert set(series) == {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                                   "scrape_samples_post_metric_relabeling"}
            assert series["up"][0].volume == 0.0
        series = by_name(scrape(pollster, [target], {"body_size_limit": "1KB"}))
        assert series["up"][0].volume == 0.0
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines   # one per reason, not one per cycle
    assert "sample_limit exceeded" in lines[0] and "body size limit exceeded" in lines[1]


def test_failed_scrape_and_vanished_target_end_their_series_moved_ones_do_not(
        generator: ManagedExpositionServer) -> None:
    a, b = generator.targets[2], generator.targets[3]
    pollster = ScrapePollster()
    first = by_name(scrape(pollster, [a, b], discovered=frozenset({a, b})))
    names = {n for n, ss in first.items() for s in ss if s.resource_id == a}
    generator.set_fault(a, "error")
    try:
        failed = scrape(pollster, [a, b], discovered=frozenset({a, b}))
    finally:
        generator.clear_faults()
    stale = [s for s in failed if isinstance(s, Sample) and is_stale(s.volume)]
    assert {s.resource_id for s in stale} == {a}
    assert {s.name for s in stale} == names - {"up", "scrape_duration_seconds",
                                               "scrape_samples_scraped",
                                               "scrape_samples_post_metric_relabeling"}
    up = [s for s in failed if isinstance(s, Sample) and s.name == "up" and s.resource_id == a]
    assert [s.volume for s in up] == [0.0]
    # b moved to another member (still discovered): forgotten, no marker
    moved = scrape(pollster, [a], discovered=frozenset({a, b}))
    assert not [s for s in moved if isinstance(s, Sample) and is_stale(s.volume)]
    # a vanished from discovery: every series of its last success ends
    vanished = scrape(pollster, [], discovered=frozenset({b}))
    assert vanished and {s.resource_id for s in vanished} == {a}
    assert all(is_stale(s.volume) for s in vanished)
    assert "up" in {s.name for s in vanished}


def test_unreachable_target_is_unreachable_with_up_0(generator: ManagedExpositionServer
                                                     ) -> None:
    target = generator.targets[3]
    generator.set_fault(target, "down")
    try:
        results = scrape(ScrapePollster(), [target])
    finally:
        generator.clear_faults()
    said, = [r for r in results if isinstance(r, Unreachable)]
    assert said.resource_id == target and "Refused" in said.reason
    assert said.sample is not None and (said.sample.name, said.sample.volume) == ("up", 0.0)
    assert not [r for r in results if isinstance(r, Sample)]


class _Handler(http.server.BaseHTTPRequestHandler):
    expected = ""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.end_headers()
            return
        body = b"# TYPE guarded gauge\nguarded 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("auth, header", [
    ({"basic_auth": {"username": "u", "password": "p w"}},
     "Basic " + base64.b64encode(b"u:p w").decode()),
    ({"authorization": {"credentials": "t0ken"}}, "Bearer t0ken"),
])
def test_tls_client_certificate_server_name_and_credentials(tmp_path: Path, auth: dict,
                                                            header: str) -> None:
    certs = make_certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    context.load_cert_chain(str(certs.server_pem))
    context.verify_mode = ssl.CERT_REQUIRED        # the client must show its certificate
    _Handler.expected = header
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        tls = {"ca_file": str(certs.ca), "cert_file": str(certs.client_cert),
               "key_file": str(certs.client_key), "server_name": "localhost"}
        series = by_name(scrape(ScrapePollster(), [address],
                                {"scheme": "https", "tls_config": tls, **auth}))
        assert series["up"][0].volume == 1.0 and series["guarded"][0].volume == 1.0
        denied = by_name(scrape(ScrapePollster(), [address],
                                {"scheme": "https", "tls_config": tls}))
        assert denied["up"][0].volume == 0.0   # 401 without credentials
    finally:
        server.shutdown()
        server.server_close()


def test_the_agent_loads_it_as_a_central_pollster() -> None:
    plugins: LoadedPlugins = make_test_plugins(pollsters={"prometheus.scrape": ScrapePollster})
    assert plugins.pollsters["prometheus.scrape"].pollster.default_discovery == "prometheus_sd"


def test_an_agent_scrapes_static_configs_through_prometheus_sd(
        generator: ManagedExpositionServer, node_exporter: ManagedNodeExporter,
        tmp_path: Path) -> None:
    """The whole path in a real agent: polling YAML scrape: section, the default
    discovery, the pollster, the file publisher (labels in each line)."""
    from tests.functional.agents import start_agent
    from zkpoll.testing.waiting import wait_for
    polling = tmp_path / "polling.yaml"
    polling.write_text(
        "sources:\n  - name: node\n    interval: 1\n    meters: [prometheus.scrape]\n"
        "    scrape:\n      static_configs:\n"
        f"        - targets: ['{node_exporter.address}', '{generator.targets[0]}']\n"
        "          labels: {env: test}\n"
        "      metric_relabel_configs:\n"
        "        - {source_labels: [__name__], regex: 'node_cpu_.*|up', action: keep}\n")
    agent = start_agent(tmp_path, "agent", "", polling, namespaces="central")
    try:
        def ups() -> dict[str, float]:
            return {s["labels"]["instance"]: s["volume"] for s in agent.records()
                    if s["name"] == "up"}
        wait_for(lambda: len(ups()) == 2, 30, "both targets scraped", interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
    finally:
        assert agent.terminate() == 0, agent.log()[-3000:]
    records = agent.records()
    assert ups() == {node_exporter.address: 1.0, generator.targets[0]: 1.0}
    cpu = [s for s in records if s["name"] == "node_cpu_seconds_total"]
    assert cpu and all(s["labels"]["job"] == "node" and s["labels"]["env"] == "test"
                       and "member" not in str(s["labels"]) for s in cpu)
    assert {s["type"] for s in cpu} == {"cumulative"}
    assert not [s for s in records if s["name"] == "node_load1"]   # relabelled away
