"""``prometheus.allocate``: what a member records each cycle and what ``/sd/SOURCE`` serves."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.endpoint.server import ApiServer
from zkpoll.polling import agent as agent_module
from zkpoll.polling import options
from zkpoll.polling.agent import Agent
from zkpoll.polling.plugins import LoadedPlugins, PollsterInfo
from zkpoll.polling.runner import SourceRunner
from zkpoll.polling.sources import Source, load_polling_config
from zkpoll.scrape.allocator import (
    METER,
    AllocatePollster,
    Allocation,
    AllocationBook,
    sd_group,
    served_groups,
    slack,
)
from zkpoll.scrape.config import parse_scrape
from zkpoll.scrape.targets import JobConfig, build_target
from zkpoll.testing.plugins import make_context, make_test_plugins
from zkpoll.testing.waiting import wait_for

JOB = JobConfig(job_name="node")


def target(address: str, job: JobConfig = JOB) -> Any:
    built = build_target({"__address__": address}, job)
    assert built is not None
    return built


def allocation(start: float, interval: float | None, *addresses: str) -> Allocation:
    targets = {t.id: t for t in (target(a) for a in addresses)}
    return Allocation("node", start, interval, targets)


def addresses(groups: list[dict[str, Any]]) -> list[str]:
    return [a for g in groups for a in g["targets"]]


# --- the pure part ---------------------------------------------------------------------

def test_slack_is_a_quarter_of_the_interval_between_one_second_and_the_interval() -> None:
    assert [slack(i) for i in (0.5, 2, 4, 10, 60)] == [0.5, 1.0, 1.0, 2.5, 15.0]


def test_a_group_carries_the_address_the_public_labels_and_what_rebuilds_the_url() -> None:
    job = JobConfig.from_mapping({
        "job_name": "snmp", "scheme": "https", "metrics_path": "/snmp",
        "params": {"module": ["if_mib"], "auth": ["public_v2"]},
        "relabel_configs": [{"target_label": "env", "replacement": "prod"}]})
    built = target("10.0.0.1:9116", job)
    group = sd_group(built)
    assert group == {"targets": ["10.0.0.1:9116"], "labels": {
        "env": "prod", "instance": "10.0.0.1:9116", "job": "snmp",
        "__scheme__": "https", "__metrics_path__": "/snmp",
        "__param_auth": "public_v2", "__param_module": "if_mib"}}
    assert json.loads(json.dumps(group)) == group
    # What a scraper builds from it (scheme://address + path + the __param_ query)
    # is the URL zkpoll would scrape.
    labels = group["labels"]
    query = "&".join(f"{k[len('__param_'):]}={v}" for k, v in sorted(labels.items())
                     if k.startswith("__param_"))
    assert f"{labels['__scheme__']}://{group['targets'][0]}{labels['__metrics_path__']}" \
           f"?{query}" == built.url


def test_a_group_keeps_the_targets_scrape_interval_and_timeout() -> None:
    job = JobConfig.from_mapping({"job_name": "j", "relabel_configs": [
        {"target_label": "__scrape_interval__", "replacement": "1m30s"},
        {"target_label": "__scrape_timeout__", "replacement": "500ms"}]})
    labels = sd_group(target("h:1", job))["labels"]
    assert labels["__scrape_interval__"] == "90s" and labels["__scrape_timeout__"] == "500ms"


def test_the_current_cycle_is_served_until_the_next_one_plus_slack() -> None:
    record = allocation(100.0, 10.0, "b:1", "a:1")
    assert addresses(served_groups(record, 100.0)) == ["a:1", "b:1"]  # sorted by id
    assert addresses(served_groups(record, 112.49)) == ["a:1", "b:1"]
    assert served_groups(record, 112.5) == []  # 100 + 10 + slack(10)
    assert served_groups(None, 100.0) == []


def test_a_later_completed_cycle_ends_the_record_at_once() -> None:
    # The member owned targets in the cycle at 100; the cycle at 110 completed
    # without calling the pollster: it owns none now.
    record = allocation(100.0, 10.0, "a:1")
    assert addresses(served_groups(record, 110.5, latest_cycle=100.0)) == ["a:1"]
    assert served_groups(record, 110.5, latest_cycle=110.0) == []


def test_an_unknown_interval_never_expires_by_the_clock() -> None:
    record = allocation(100.0, None, "a:1")
    assert addresses(served_groups(record, 1e9)) == ["a:1"]
    assert served_groups(record, 1e9, latest_cycle=200.0) == []


def test_the_book_replaces_on_a_later_cycle_adds_on_the_same_ignores_an_older() -> None:
    book = AllocationBook()
    a, b, c = target("a:1"), target("b:1"), target("c:1")
    book.record("node", 100.0, 10.0, {a.id: a})
    book.record("node", 100.0, 10.0, {b.id: b})  # a catch-up of the same cycle
    assert set(book.get("node").targets) == {a.id, b.id}  # type: ignore[union-attr]
    book.record("node", 110.0, 10.0, {c.id: c})
    book.record("node", 100.0, 10.0, {a.id: a})  # late, older: ignored
    kept = book.get("node")
    assert kept is not None and kept.cycle_start == 110.0 and set(kept.targets) == {c.id}
    assert book.sources() == ["node"] and book.get("other") is None


# --- the pollster ------------------------------------------------------------------------

def test_the_pollster_records_address_strings_built_for_the_source_and_yields_nothing() -> None:
    pollster = AllocatePollster()
    assert pollster.default_discovery == "prometheus_sd"
    context = make_context(source="node", cycle_start=50.0, interval=5.0)
    assert list(pollster.get_samples(context, ["10.0.0.2:9100", "10.0.0.1:9100"])) == []
    record = pollster.book.get("node")
    assert record is not None and record.cycle_start == 50.0 and record.interval == 5.0
    groups = served_groups(record, 51.0)
    assert addresses(groups) == ["10.0.0.1:9100", "10.0.0.2:9100"]
    assert groups[0]["labels"] == {"instance": "10.0.0.1:9100", "job": "node",
                                   "__scheme__": "http", "__metrics_path__": "/metrics"}


def test_the_pollster_uses_the_sources_scrape_section_and_discovered_targets(
        caplog: pytest.LogCaptureFixture) -> None:
    scrape = parse_scrape({"metrics_path": "/probe", "relabel_configs": [
        {"source_labels": ["__address__"], "regex": "drop.*", "action": "drop"}]}, "web")
    discovered = target("10.9.9.9:80", scrape.job)
    pollster = AllocatePollster()
    context = make_context(source="web", cycle_start=0.0, interval=5.0, scrape=scrape)
    pollster.get_samples(context, ["h:80", "drop-me:80", {"id": discovered.id,
                                                          "target": discovered},
                                   "bad/address", {"id": "x"}])
    groups = served_groups(pollster.book.get("web"), 1.0)
    assert addresses(groups) == ["10.9.9.9:80", "h:80"]
    assert {g["labels"]["__metrics_path__"] for g in groups} == {"/probe"}
    assert "2 resource(s) are not scrape targets" in caplog.text
    caplog.clear()
    pollster.get_samples(context, ["bad/address", {"id": "x"}])
    assert "not scrape targets" not in caplog.text  # said once, not every cycle


def test_through_the_runner_the_pollster_records_only_the_owned_targets() -> None:
    pollster = AllocatePollster()
    source = Source("node", 10, (METER,), resources=tuple(f"h{i}:9100" for i in range(6)))
    owned = {"h1:9100", "h4:9100"}
    with futures.ThreadPoolExecutor(2) as pool:
        runner = SourceRunner(source, [PollsterInfo(METER, "central", pollster)],
                              LoadedPlugins(), [], pool,
                              lambda src, ns, keys, index, start: [k for k in keys if k in owned],
                              None, lambda: "me", timeout=2.0, batch_size=10)
        stats = runner.run_cycle(3, 30.0)
    assert stats.errors == 0 and stats.samples == 0
    record = pollster.book.get("node")
    assert record is not None and (record.cycle_start, record.interval) == (30.0, 10.0)
    assert addresses(served_groups(record, 31.0, latest_cycle=stats.start)) == sorted(owned)


# --- the endpoint --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


class FakeAgent:
    """The parts of an agent ``/sd`` reads."""

    def __init__(self, pollsters: Mapping[str, Any], last_stats: Mapping[str, Any]) -> None:
        self._pollsters = pollsters
        self.last_stats = last_stats

    def pollsters_of(self, meter: str) -> Mapping[str, Any]:
        return self._pollsters if meter == METER else {}


class Stats:
    def __init__(self, start: float) -> None:
        self.start = start


@pytest.fixture
def fake_endpoint() -> Iterator[tuple[str, AllocatePollster, dict[str, Any]]]:
    pollster = AllocatePollster()
    last_stats: dict[str, Any] = {}
    agent = FakeAgent({"node": pollster, "idle": pollster}, last_stats)
    server = ApiServer(agent, f"127.0.0.1:{free_port()}")  # type: ignore[arg-type]
    server.start()
    yield f"http://{server.address}", pollster, last_stats
    server.stop()


def test_sd_serves_the_current_cycle_as_json_and_lists_the_sources(
        fake_endpoint: tuple[str, AllocatePollster, dict[str, Any]]) -> None:
    url, pollster, last_stats = fake_endpoint
    now = time.time()
    pollster.get_samples(make_context(source="node", cycle_start=now, interval=60.0),
                         ["10.0.0.1:9100"])
    status, ctype, body = get(f"{url}/sd/node")
    assert (status, ctype) == (200, "application/json")
    assert json.loads(body) == [{"targets": ["10.0.0.1:9100"], "labels": {
        "instance": "10.0.0.1:9100", "job": "node", "__scheme__": "http",
        "__metrics_path__": "/metrics"}}]
    assert get(f"{url}/sd/idle")[::2] == (200, b"[]")  # polls the meter, owns nothing yet
    assert json.loads(get(f"{url}/sd")[2]) == {"sources": ["idle", "node"]}
    # A later cycle completed without calling the pollster: it owns none now.
    last_stats["node"] = Stats(now + 60.0)
    assert get(f"{url}/sd/node")[::2] == (200, b"[]")


def test_sd_of_an_unknown_source_is_a_404_with_a_one_line_json_error(
        fake_endpoint: tuple[str, AllocatePollster, dict[str, Any]]) -> None:
    url = fake_endpoint[0]
    for path in ("/sd/nope", "/sd/no%20such", "/sd/a/b"):
        status, ctype, body = get(url + path)
        assert (status, ctype) == (404, "application/json")
        assert b"\n" not in body and "does not poll prometheus.allocate" in \
            json.loads(body)["error"]
    assert get(f"{url}/sd/")[0] == 404


def test_an_agent_serves_its_targets_on_sd(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A standalone agent (it owns every target) with the pollster loaded as if installed."""
    polling = tmp_path / "polling.yaml"
    polling.write_text("sources:\n  - name: node\n    interval: 1\n"
                       f"    meters: [{METER}]\n"
                       "    resources: ['10.0.0.1:9100', '10.0.0.2:9100']\n"
                       "    scrape:\n      metrics_path: /m\n")
    monkeypatch.setattr(agent_module, "load_plugins", lambda conf, namespaces:
                        make_test_plugins(pollsters={METER: AllocatePollster}, conf=conf))
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("cfg_file", str(polling), "polling")
    conf.set_override("default_publishers", ["null://"], "publisher")
    conf.set_override("bind", f"127.0.0.1:{free_port()}", "api")
    agent = Agent(conf, ["central"])
    agent.setup()
    agent.start()
    try:
        assert agent.api is not None
        url = f"http://{agent.api.address}"
        groups = wait_for(lambda: json.loads(get(f"{url}/sd/node")[2]), 5, "a cycle's targets")
        assert addresses(groups) == ["10.0.0.1:9100", "10.0.0.2:9100"]
        assert {g["labels"]["__metrics_path__"] for g in groups} == {"/m"}
        assert json.loads(get(f"{url}/sd")[2]) == {"sources": ["node"]}
    finally:
        agent.stop(graceful=False)


# --- the documented configuration ----------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "allocator.md"


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)


def test_the_documented_agent_configuration_loads(tmp_path: Path) -> None:
    polling = tmp_path / "polling.yaml"
    polling.write_text(next(b for b in doc_blocks("yaml") if b.startswith("sources:")))
    (source,) = load_polling_config(str(polling)).sources
    assert source.meters == (METER,) and source.scrape is not None
    ini = configparser.ConfigParser()
    ini.read_string(doc_blocks("ini")[0])
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    register_coordination_opts(conf)
    for section in ini.sections():
        for name in ini[section]:
            assert name in conf[section], f"[{section}] {name} is not an option"


@pytest.mark.parametrize("program", ["promtool", "vmagent"])
def test_the_documented_scraper_configuration_is_accepted(program: str, tmp_path: Path) -> None:
    binary = shutil.which(program)
    if binary is None:
        pytest.skip(f"{program} is not installed")
    prometheus, vmagent = (b for b in doc_blocks("yaml")
                           if b.startswith(("scrape_configs:", "# /etc/vmagent")))
    config = tmp_path / "scrape.yml"
    if program == "promtool":
        config.write_text(prometheus)
        command = [binary, "check", "config", str(config)]
    else:
        config.write_text(vmagent)
        command = [binary, "-dryRun", f"-promscrape.config={config}"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
