"""zkpoll.scrape.targets: file_sd, target labels and URLs, honor_labels."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpoll.exceptions import ConfigError
from zkpoll.scrape.targets import (
    JobConfig,
    ScrapeTarget,
    TargetGroup,
    build_target,
    build_targets,
    merge_labels,
    parse_duration,
    parse_file_sd,
)

NODE = JobConfig("node")


def job(**raw: Any) -> JobConfig:
    return JobConfig.from_mapping({"job_name": "node", **raw})


# --- file_sd ------------------------------------------------------------------------
def test_file_sd_json_and_yaml_are_the_same() -> None:
    doc = [{"targets": ["a:9100", "b:9100"], "labels": {"env": "prod"}}, {"targets": []}]
    from_json = parse_file_sd(json.dumps(doc), "/sd/n.json")
    from_yaml = parse_file_sd("- targets: [a:9100, b:9100]\n  labels: {env: prod}\n"
                              "- targets: []\n", "/sd/n.json", fmt="yaml")
    assert from_json == from_yaml
    assert from_json[0] == TargetGroup(("a:9100", "b:9100"),
                                       {"env": "prod", "__meta_filepath": "/sd/n.json"},
                                       "/sd/n.json:0")
    assert parse_file_sd("", "/sd/empty.yml") == []


@pytest.mark.parametrize("text, path, reason", [
    ('[{"targets": ["a:1", 9100]}]', "f.json", "group 0: targets[1]: 9100 is not a string"),
    ('[{"targets": "a:1"}]', "f.json", "'targets' must be a list"),
    ('[{"labels": {}}]', "f.json", "'targets' must be a list"),
    ('[{"targets": [], "labels": {"a-b": "x"}}]', "f.json", "'a-b' is not a valid label name"),
    ('[{"targets": [], "labels": {"a": 1}}]', "f.json", "labels: a: 1 is not a string"),
    ('[{"targets": [], "labels": ["a"]}]', "f.json", "'labels' must be a mapping"),
    ('[{"targets": [], "extra": 1}]', "f.json", "unknown key 'extra'"),
    ('{"targets": []}', "f.json", "expected a list of target groups"),
    ('[1]', "f.json", "group 0: expected a mapping"),
    ("[{", "f.json", "not valid JSON"),
    ("- targets: [a\n  - b", "f.yml", "not valid YAML"),
    ("[]", "f.txt", "ends in .json, .yml or .yaml"),
])
def test_file_sd_errors_name_file_and_reason(text: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_file_sd(text, path)
    assert str(err.value).startswith(path + ": ")
    assert reason in str(err.value)


# --- targets ------------------------------------------------------------------------
def test_defaults() -> None:
    t = build_target({"__address__": "h:9100", "__meta_filepath": "/x"}, NODE)
    assert t == ScrapeTarget("http://h:9100/metrics", (("instance", "h:9100"), ("job", "node")),
                             'http://h:9100/metrics{instance="h:9100",job="node"}')


def test_group_labels_override_job_defaults() -> None:
    group = TargetGroup(("h:1",), {"__scheme__": "https", "__metrics_path__": "/m",
                                   "job": "other", "instance": "web-1", "dc": "x"})
    [t], problems = build_targets([group], NODE)
    assert problems == []
    assert t.url == "https://h:1/m"
    assert t.labels == (("dc", "x"), ("instance", "web-1"), ("job", "other"))


def test_params_and_relabelling_build_the_url() -> None:
    # The blackbox exporter pattern: the address becomes a parameter.
    j = job(metrics_path="/probe", params={"module": ["http_2xx"], "x": ["1", "2"]},
            relabel_configs=[
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": "blackbox:9115"}])
    [t], _ = build_targets([TargetGroup(("https://example.org/a b",))], j)
    assert t.url == ("http://blackbox:9115/probe?module=http_2xx"
                     "&target=https%3A%2F%2Fexample.org%2Fa+b&x=1&x=2")
    assert t.labels == (("instance", "https://example.org/a b"), ("job", "node"))


def test_param_label_replaces_the_first_value_only() -> None:
    j = job(params={"x": ["1", "2"]},
            relabel_configs=[{"target_label": "__param_x", "replacement": "9"}])
    assert build_target({"__address__": "h:1"}, j).url == "http://h:1/metrics?x=9&x=2"


def test_metrics_path_is_escaped_as_go_does() -> None:
    j = job(metrics_path="metrics path?x")
    assert build_target({"__address__": "h:1"}, j).url == "http://h:1/metrics%20path%3Fx"


def test_dropped_and_failed_targets() -> None:
    j = job(relabel_configs=[
        {"source_labels": ["__address__"], "regex": "drop.*", "action": "drop"},
        {"source_labels": ["__address__"], "regex": "noaddr.*", "target_label": "__address__",
         "replacement": ""}])
    group = TargetGroup(("keep:1", "drop:1", "noaddr:1", "a/b:1"), source="f.yml:0")
    targets, problems = build_targets([group], j)
    assert [t.url for t in targets] == ["http://keep:1/metrics"]
    assert len(problems) == 2
    assert problems[0].startswith("f.yml:0 target 2 ('noaddr:1'): no __address__")
    assert "not a valid address" in problems[1]


def test_meta_and_reserved_labels_never_reach_the_target() -> None:
    j = job(relabel_configs=[{"regex": "__meta_(.+)", "action": "labelmap"}])
    t = build_target({"__address__": "h:1", "__meta_zone": "z1", "__tmp_x": "y"}, j)
    assert t.labels == (("instance", "h:1"), ("job", "node"), ("zone", "z1"))


def test_intervals() -> None:
    j = job(scrape_interval="1m", scrape_timeout="10s")
    t = build_target({"__address__": "h:1"}, j)
    assert (t.interval, t.timeout) == (60, 10)
    assert ("__scrape_interval__", "1m") not in t.labels
    t = build_target({"__address__": "h:1", "__scrape_interval__": "1h30m"}, j)
    assert t.interval == 5400
    with pytest.raises(ConfigError, match="greater than the interval"):
        build_target({"__address__": "h:1", "__scrape_timeout__": "2m"}, j)
    with pytest.raises(ConfigError, match="cannot be 0"):
        build_target({"__address__": "h:1", "__scrape_interval__": "0"}, j)
    assert build_target({"__address__": "h:1"}, NODE).interval is None


@pytest.mark.parametrize("text, seconds", [("0", 0), ("15s", 15), ("500ms", 0.5),
                                           ("1h30m", 5400), ("1d", 86400), ("2w", 1209600),
                                           ("1y", 31536000)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "1.5s", "s", "1m1h", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_ids_tell_jobs_apart_and_are_stable() -> None:
    a = build_target({"__address__": "h:1"}, JobConfig("a"))
    b = build_target({"__address__": "h:1"}, JobConfig("b"))
    assert a.url == b.url and a.id != b.id
    assert a.id == 'http://h:1/metrics{instance="h:1",job="a"}'
    odd = build_target({"__address__": "h:1", "x": 'q"\\\n'}, JobConfig("a"))
    assert odd.id.endswith('x="q\\"\\\\\\n"}')


@pytest.mark.parametrize("raw, reason", [
    ({}, "job_name: a non-empty string"),
    ({"job_name": "x", "scheme": "ftp"}, "expected http or https"),
    ({"job_name": "x", "params": {"a": "b"}}, "params"),
    ({"job_name": "x", "honor_labels": "yes"}, "honor_labels"),
    ({"job_name": "x", "scrape_interval": "5 minutes"}, "scrape_interval"),
    ({"job_name": "x", "static_configs": []}, "unknown key"),
    ({"job_name": "x", "relabel_configs": [{"action": "nope"}]},
     "relabel_configs[0]: action: unknown relabel action"),
])
def test_job_config_errors(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        JobConfig.from_mapping(raw)
    assert reason in str(err.value)


# --- honor_labels -------------------------------------------------------------------
TARGET = (("instance", "h:1"), ("job", "node"))


@pytest.mark.parametrize("scraped, honor, expected", [
    ((("a", "1"),), False, {"a": "1", "instance": "h:1", "job": "node"}),
    ((("job", "x"),), False, {"job": "node", "exported_job": "x", "instance": "h:1"}),
    ((("job", "x"),), True, {"job": "x", "instance": "h:1"}),
    ((("job", "x"), ("exported_job", "y")), False,
     {"job": "node", "exported_job": "y", "exported_exported_job": "x", "instance": "h:1"}),
    ((("job", ""),), False, {"job": "node", "instance": "h:1"}),
    ((("job", ""),), True, {"instance": "h:1"}),
    ((("a", ""),), False, {"instance": "h:1", "job": "node"}),
    ((("instance", "i"), ("job", "j"), ("exported_job", "e")), False,
     {"instance": "h:1", "job": "node", "exported_instance": "i", "exported_job": "e",
      "exported_exported_job": "j"}),
])
def test_merge_labels(scraped: tuple[tuple[str, str], ...], honor: bool,
                      expected: dict[str, str]) -> None:
    assert merge_labels(scraped, TARGET, honor) == expected


def test_exported_names_go_shortest_first() -> None:
    # "ab" (shorter) is renamed before "exported_ab"; each takes the first free name.
    target = (("ab", "t1"), ("exported_ab", "t2"))
    assert merge_labels((("ab", "s1"), ("exported_ab", "s2")), target, False) == {
        "ab": "t1", "exported_ab": "t2", "exported_exported_ab": "s1",
        "exported_exported_exported_ab": "s2"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "job", "instance", "exported_job"]),
                       st.sampled_from(["", "x", "y"])),
       st.dictionaries(st.sampled_from(["a", "job", "instance"]), st.sampled_from(["t", "u"])),
       st.booleans())
def test_merge_keeps_every_value_somewhere(scraped: dict[str, str], target: dict[str, str],
                                           honor: bool) -> None:
    out = merge_labels(tuple(scraped.items()), tuple(sorted(target.items())), honor)
    assert all(out.values())
    if not honor:
        assert all(out[k] == v for k, v in target.items())
        kept = sorted(v for v in scraped.values() if v)
        assert sorted(out.values()) == sorted(kept + list(target.values()))


def test_public_api_of_the_scrape_package() -> None:
    expected = {
        "zkpoll.scrape.exposition": ["ACCEPT", "OPENMETRICS", "TEXT", "Exposition",
                                     "ExpositionError", "Family", "Labels", "Series",
                                     "format_for", "parse"],
        "zkpoll.scrape.relabel": ["ACTIONS", "LABEL_NAME", "RelabelRule", "apply", "expand",
                                  "parse_rules"],
        "zkpoll.scrape.targets": ["JobConfig", "ScrapeTarget", "TargetGroup", "build_target",
                                  "build_targets", "merge_labels", "parse_duration",
                                  "parse_file_sd"],
    }
    for module, names in expected.items():
        mod = importlib.import_module(module)
        assert sorted(mod.__all__) == sorted(names)
        assert all(hasattr(mod, n) for n in names)
