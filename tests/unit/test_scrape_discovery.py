"""zkpoll.scrape.discovery: static, file and HTTP service discovery, with real
files and a real HTTP server."""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from zkpoll.exceptions import PluginError
from zkpoll.plugin import PollingContext, resource_key
from zkpoll.scrape.config import ScrapeConfig, parse_scrape
from zkpoll.scrape.discovery import PrometheusSD
from zkpoll.scrape.targets import ScrapeTarget
from zkpoll.testing import make_certificates

LOGGER = "zkpoll.scrape.discovery"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def context(scrape: ScrapeConfig | None, source: str = "node",
            timeout: float = 5.0) -> PollingContext:
    return PollingContext(None, {}, source, time.time(), timeout, ("prometheus.scrape",),
                          scrape)


def scrape(source: str = "node", **raw: Any) -> ScrapeConfig:
    return parse_scrape(raw, source)


def addresses(found: list[dict[str, Any]]) -> list[str]:
    return sorted(dict(r["target"].labels)["instance"] for r in found)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# --- the contract -----------------------------------------------------------------------
def test_a_source_without_scrape_section_is_an_error() -> None:
    with pytest.raises(PluginError, match=r"'node'.*needs the source to have a scrape: "):
        PrometheusSD().discover(context(None))


def test_the_discovery_takes_no_parameter() -> None:
    with pytest.raises(PluginError, match="no parameter"):
        PrometheusSD().discover(context(scrape()), "x")


def test_static_targets_are_relabelled_resources() -> None:
    config = scrape(static_configs=[{"targets": ["a:9100", "b:9100"], "labels": {"env": "p"}}],
                    relabel_configs=[{"source_labels": ["__address__"], "regex": "b:.*",
                                      "action": "drop"}])
    found = PrometheusSD().discover(context(config))
    assert len(found) == 1
    target = found[0]["target"]
    assert isinstance(target, ScrapeTarget)
    assert found[0]["id"] == target.id == resource_key(found[0])
    assert dict(target.labels) == {"env": "p", "instance": "a:9100", "job": "node"}
    assert target.url == "http://a:9100/metrics"


def test_targets_that_cannot_be_built_are_logged_once_per_streak(
        caplog: pytest.LogCaptureFixture) -> None:
    sd = PrometheusSD()
    broken = scrape(static_configs=[{"targets": ["a:1", "b/c:1"]}])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            assert addresses(sd.discover(context(broken))) == ["a:1"]
        sd.discover(context(scrape(static_configs=[{"targets": ["a:1"]}])))
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1 and "'b/c:1'" in warnings[0]
    assert len(logged(caplog, logging.INFO)) == 1


# --- file_sd ----------------------------------------------------------------------------
def write_sd(path: Path, targets: list[str], **labels: str) -> None:
    doc = [{"targets": targets, "labels": labels}]
    if path.suffix == ".json":
        path.write_text(json.dumps(doc))
    else:
        path.write_text(f"- targets: [{', '.join(targets)}]\n  labels: {json.dumps(labels)}\n")


def test_file_sd_reads_json_and_yaml_through_globs(tmp_path: Path) -> None:
    write_sd(tmp_path / "a.json", ["a:1"], rack="r1")
    write_sd(tmp_path / "b.yml", ["b:1"], rack="r2")
    write_sd(tmp_path / "c.yaml", ["c:1"])
    config = scrape(file_sd_configs=[{"files": [str(tmp_path / "*.json"),
                                                str(tmp_path / "*.yml"),
                                                str(tmp_path / "*.yaml")]}],
                    relabel_configs=[{"source_labels": ["__meta_filepath"],
                                      "regex": ".*/(.)\\..*", "target_label": "file"}])
    found = PrometheusSD().discover(context(config))
    labels = sorted((dict(r["target"].labels) for r in found), key=lambda x: x["instance"])
    assert [(x["instance"], x["file"], x.get("rack")) for x in labels] == \
        [("a:1", "a", "r1"), ("b:1", "b", "r2"), ("c:1", "c", None)]
    assert all(not k.startswith("__") for x in labels for k in x)


def test_file_sd_rereads_only_when_mtime_or_size_changed(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    write_sd(path, ["a:1"])
    config = scrape(file_sd_configs=[{"files": [str(path)]}])
    sd = PrometheusSD()
    assert addresses(sd.discover(context(config))) == ["a:1"]
    stamp = path.stat().st_mtime_ns
    write_sd(path, ["b:1"])                          # same size...
    os.utime(path, ns=(stamp, stamp))                # ...same mtime: not read again
    assert addresses(sd.discover(context(config))) == ["a:1"]
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert addresses(sd.discover(context(config))) == ["b:1"]
    write_sd(path, ["bb:1"])                         # size changed, mtime kept
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    assert addresses(sd.discover(context(config))) == ["bb:1"]


def test_a_broken_file_keeps_its_last_groups_with_one_error_per_streak(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, other = tmp_path / "good.yml", tmp_path / "other.json"
    write_sd(good, ["a:1", "b:1"])
    write_sd(other, ["c:1"])
    config = scrape(file_sd_configs=[{"files": [str(tmp_path / "*.yml"),
                                                str(tmp_path / "*.json")]}])
    sd = PrometheusSD()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert addresses(sd.discover(context(config))) == ["a:1", "b:1", "c:1"]
        good.write_text("- targets: [a:1\n")        # broken YAML
        for _ in range(4):
            assert addresses(sd.discover(context(config))) == ["a:1", "b:1", "c:1"]
        assert sd.errors() == {("node", "file_sd", str(good)): 1}  # not re-read unchanged
        write_sd(good, ["d:1"])
        for _ in range(2):
            assert addresses(sd.discover(context(config))) == ["c:1", "d:1"]
    errors = logged(caplog, logging.ERROR)
    assert len(errors) == 1
    assert str(good) in errors[0] and "not valid YAML" in errors[0] and "1 target group" in errors[0]
    assert "\n" not in errors[0]
    infos = logged(caplog, logging.INFO)
    assert len(infos) == 1 and str(good) in infos[0] and "recovered" in infos[0]


def test_an_unreadable_file_is_retried_and_counted_each_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "x.json").mkdir()                    # matched, cannot be read (even by root)
    config = scrape(file_sd_configs=[{"files": [str(tmp_path / "*.json")]}])
    sd = PrometheusSD()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(3):
            assert sd.discover(context(config)) == []
    assert sd.refresh_failures() == {("node", "file_sd"): 3}
    errors = logged(caplog, logging.ERROR)
    assert len(errors) == 1 and "cannot read" in errors[0]


def test_a_glob_matching_nothing_is_not_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pattern = str(tmp_path / "*.json")
    config = scrape(file_sd_configs=[{"files": [pattern]}])
    sd = PrometheusSD()
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(3):
            assert sd.discover(context(config)) == []
        write_sd(tmp_path / "n.json", ["a:1"])
        assert addresses(sd.discover(context(config))) == ["a:1"]
        (tmp_path / "n.json").unlink()                # a file gone takes its targets along
        assert sd.discover(context(config)) == []
    assert sd.errors() == {}
    assert not logged(caplog, logging.ERROR) and not logged(caplog, logging.WARNING)
    assert [m for m in logged(caplog, logging.INFO) if pattern in m] == \
        [f"source node: file_sd: no file matches {pattern} (no targets from it)"] * 2
    assert len(logged(caplog, logging.DEBUG)) >= 2


# --- http_sd ----------------------------------------------------------------------------
@dataclass
class Answer:
    status: int = 200
    body: bytes = b"[]"
    content_type: str = "application/json"


@dataclass
class SDServer:
    """An HTTP SD endpoint: the answer per path, and the requests it got."""

    server: ThreadingHTTPServer
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/sd", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}{path}"

    def serve(self, path: str, groups: Any, **kw: Any) -> None:
        self.answers[path] = Answer(body=json.dumps(groups).encode(), **kw)

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def start_server(wrap: ssl.SSLContext | None = None) -> SDServer:
    state: SDServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers)))
            if self.path == "/slow":
                state.release.wait(10)
            answer = state.answers.get(self.path, Answer(404, b"not found", "text/plain"))
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if wrap is not None:
        server.socket = wrap.wrap_socket(server.socket, server_side=True)
    state = SDServer(server)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return state


@pytest.fixture
def sd_server() -> Iterator[SDServer]:
    state = start_server()
    yield state
    state.release.set()
    state.server.shutdown()
    state.server.server_close()


def test_http_sd_fetches_at_once_then_once_per_refresh_interval(sd_server: SDServer) -> None:
    sd_server.serve("/sd", [{"targets": ["a:1"]}])
    clock = Clock()
    sd = PrometheusSD(clock=clock)
    config = scrape(http_sd_configs=[{"url": sd_server.url(), "refresh_interval": "1m"}])
    assert addresses(sd.discover(context(config))) == ["a:1"]
    assert len(sd_server.requests) == 1
    sd_server.serve("/sd", [{"targets": ["b:1"]}])
    for step in (20, 20, 19.5):                       # 59.5 s: the old list, no request
        clock.now += step
        assert addresses(sd.discover(context(config))) == ["a:1"]
    assert len(sd_server.requests) == 1
    clock.now += 0.5
    assert addresses(sd.discover(context(config))) == ["b:1"]
    assert len(sd_server.requests) == 2
    assert sd_server.requests[0][1]["X-Prometheus-Refresh-Interval-Seconds"] == "60"


@pytest.mark.parametrize("auth, header", [
    ({"basic_auth": {"username": "prom", "password": "s3cret"}}, "Basic cHJvbTpzM2NyZXQ="),
    ({"authorization": {"credentials": "tok"}}, "Bearer tok"),
    ({"bearer_token": "tok2"}, "Bearer tok2"),
])
def test_http_sd_sends_the_credentials(sd_server: SDServer, auth: dict[str, Any],
                                       header: str) -> None:
    sd_server.serve("/sd", [{"targets": ["a:1"]}])
    config = scrape(http_sd_configs=[{"url": sd_server.url(), **auth}])
    assert addresses(PrometheusSD().discover(context(config))) == ["a:1"]
    assert sd_server.requests[0][1]["Authorization"] == header


@pytest.mark.parametrize("answer, reason", [
    (Answer(500, b"oops", "text/plain"), "HTTP 500"),
    (Answer(body=b"[{"), "not valid JSON"),
    (Answer(body=b'{"targets": []}'), "expected a list of target groups"),
    (Answer(body=b'[{"targets": ["x:1"], "labels": {"a": 1}}]'), "is not a string"),
    (Answer(body=b"[]", content_type="text/html"), "Content-Type 'text/html'"),
    (None, "Connection refused"),
])
def test_http_sd_failures_keep_the_last_list(sd_server: SDServer,
                                             caplog: pytest.LogCaptureFixture,
                                             answer: Answer | None, reason: str) -> None:
    sd_server.serve("/sd", [{"targets": ["a:1"]}],
                    content_type="application/json; charset=utf-8")
    url = sd_server.url()
    clock = Clock()
    sd = PrometheusSD(clock=clock)
    config = scrape(http_sd_configs=[{"url": url, "refresh_interval": "10s",
                                      "basic_auth": {"username": "u", "password": "pw-x"}}])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert addresses(sd.discover(context(config))) == ["a:1"]
        if answer is None:
            sd_server.server.shutdown()
            sd_server.server.server_close()
        else:
            sd_server.answers["/sd"] = answer
        for _ in range(3):
            clock.now += 10
            assert addresses(sd.discover(context(config))) == ["a:1"]
        assert sd.errors() == {("node", "http_sd", url): 3}
        assert sd.refresh_failures() == {("node", "http_sd"): 3}
        if answer is not None:
            sd_server.serve("/sd", [{"targets": ["b:1"]}])
            clock.now += 10
            assert addresses(sd.discover(context(config))) == ["b:1"]
    errors = logged(caplog, logging.ERROR)
    assert len(errors) == 1 and url in errors[0] and reason in errors[0], errors
    assert "keeping the 1 target group(s)" in errors[0]
    infos = logged(caplog, logging.INFO)
    assert [m for m in infos if "recovered" in m] == ([] if answer is None else infos)
    assert len(infos) == (0 if answer is None else 1)
    assert "pw-x" not in caplog.text and "dTpwdy14" not in caplog.text


def test_http_sd_sets_meta_url_before_relabelling(sd_server: SDServer) -> None:
    sd_server.serve("/good", [{"targets": ["a:1", "b:1"], "labels": {"dc": "x"}}])
    sd_server.serve("/other", [{"targets": ["c:1"]}])
    config = scrape(http_sd_configs=[{"url": sd_server.url("/good")},
                                     {"url": sd_server.url("/other")}],
                    relabel_configs=[{"source_labels": ["__meta_url"], "regex": ".*/good",
                                      "action": "keep"}])
    found = PrometheusSD().discover(context(config))
    assert sorted(sd_server.paths()) == ["/good", "/other"]
    assert [dict(r["target"].labels) for r in found] == [
        {"dc": "x", "instance": "a:1", "job": "node"},
        {"dc": "x", "instance": "b:1", "job": "node"}]


def test_http_sd_credentials_in_the_url_are_sent_never_shown(
        sd_server: SDServer, caplog: pytest.LogCaptureFixture) -> None:
    sd_server.serve("/sd", [{"targets": ["a:1"]}])
    url = sd_server.url().replace("//", "//prom:pw%21x@")
    shown = sd_server.url()
    config = scrape(http_sd_configs=[{"url": url}], relabel_configs=[
        {"source_labels": ["__meta_url"], "target_label": "sd"}])
    sd = PrometheusSD()
    assert [dict(r["target"].labels)["sd"] for r in sd.discover(context(config))] == [shown]
    assert sd_server.requests[0][1]["Authorization"] == "Basic cHJvbTpwdyF4"  # prom:pw!x
    sd_server.answers.clear()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        sd.discover(context(config, source="other"))
    assert list(sd.errors()) == [("other", "http_sd", shown)]
    assert "pw%21x" not in caplog.text and "pw!x" not in caplog.text and shown in caplog.text


def test_a_request_that_cannot_be_sent_is_an_error_without_its_secret(
        sd_server: SDServer, caplog: pytest.LogCaptureFixture) -> None:
    config = scrape(http_sd_configs=[{"url": sd_server.url(), "bearer_token": "t0k\nX: y"}])
    sd = PrometheusSD()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert sd.discover(context(config)) == []
    assert sd.refresh_failures() == {("node", "http_sd"): 1}
    assert "cannot send the request" in caplog.text and "t0k" not in caplog.text
    assert sd_server.requests == []


def test_http_sd_timeout_is_capped_by_the_polling_timeout(
        sd_server: SDServer, caplog: pytest.LogCaptureFixture) -> None:
    config = scrape(http_sd_configs=[{"url": sd_server.url("/slow"),
                                      "scrape_timeout": "30s"}])
    sd = PrometheusSD()
    began = time.monotonic()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert sd.discover(context(config, timeout=0.3)) == []
    assert time.monotonic() - began < 3   # the handler holds the answer for 10 s
    assert sd_server.paths() == ["/slow"]
    assert sd.refresh_failures() == {("node", "http_sd"): 1}
    assert "no answer within 0.3s" in logged(caplog, logging.ERROR)[0]


def test_http_sd_over_tls_honours_server_name(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    certs = make_certificates(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs.server_pem)
    server = start_server(tls)
    try:
        server.serve("/sd", [{"targets": ["a:1"]}])
        url = server.url(scheme="https")            # the certificate names localhost

        def tls_scrape(name: str) -> ScrapeConfig:
            return scrape(http_sd_configs=[{"url": url, "tls_config": {
                "ca_file": str(certs.ca), "server_name": name}}])

        sd = PrometheusSD()
        assert addresses(sd.discover(context(tls_scrape("localhost")))) == ["a:1"]
        with caplog.at_level(logging.ERROR, logger=LOGGER):
            assert sd.discover(context(tls_scrape("wrong.example"), source="other")) == []
        assert sd.refresh_failures() == {("other", "http_sd"): 1}
        assert "TLS: certificate verify failed: Hostname mismatch" in caplog.text
    finally:
        server.server.shutdown()
        server.server.server_close()


# --- state per source -------------------------------------------------------------------
def test_state_is_per_source_and_calls_may_run_in_parallel(tmp_path: Path) -> None:
    sd = PrometheusSD()
    configs = {}
    for i in range(8):
        write_sd(tmp_path / f"s{i}.json", [f"h{i}:1"])
        configs[f"s{i}"] = scrape(f"s{i}", file_sd_configs=[{"files": [
            str(tmp_path / f"s{i}.json")]}], static_configs=[{"targets": ["common:1"]}])
    with futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda name: (name, sd.discover(context(configs[name], name))),
                                sorted(configs) * 5))
    for name, found in results:
        assert addresses(found) == ["common:1", f"h{name[1:]}:1"]
        assert {dict(r["target"].labels)["job"] for r in found} == {name}


def test_refresh_failures_are_exported_on_the_agents_metrics(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from zkpoll.endpoint.metrics import AgentCollector
    from zkpoll.testing import free_port
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    sd = PrometheusSD()
    config = scrape(file_sd_configs=[{"files": [str(broken)]}],
                    http_sd_configs=[{"url": f"http://127.0.0.1:{free_port()}/sd"}])
    assert sd.discover(context(config)) == []    # nothing good yet: an empty list kept
    agent = SimpleNamespace(plugins=SimpleNamespace(discoveries={"prometheus_sd": sd}))
    family = AgentCollector._discovery_failures(agent)
    assert family.name == "zkpoll_sd_refresh_failures"
    assert {(s.labels["source"], s.labels["mechanism"]): s.value for s in family.samples
            if s.name.endswith("_total")} == {("node", "file_sd"): 1.0, ("node", "http_sd"): 1.0}
