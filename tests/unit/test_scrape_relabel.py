"""zkpoll.scrape.relabel: cases ported from Prometheus's model/relabel/relabel_test.go."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpoll.exceptions import ConfigError
from zkpoll.scrape.relabel import (
    RelabelRule,
    apply,
    compile_regex,
    compile_template,
    expand,
    parse_rules,
)

ABC = {"a": "foo", "b": "bar", "c": "baz"}
PORTS = {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"}

# (input, rules, output or None when dropped): TestRelabel, case by case.
CASES: list[tuple[dict[str, str], list[dict[str, Any]], dict[str, str] | None]] = [
    (ABC, [{"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
            "replacement": "ch${1}-ch${1}"}], {**ABC, "d": "choo-choo"}),
    (ABC, [{"source_labels": ["a", "b"], "regex": "f(.*);(.*)r", "target_label": "a",
            "replacement": "b${1}${2}m"},
           {"source_labels": ["c", "a"], "regex": "(b).*b(.*)ba(.*)", "target_label": "d",
            "replacement": "$1$2$2$3"}],
     {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"},
                    {"source_labels": ["a"], "regex": "f(.*)", "target_label": "d",
                     "replacement": "ch$1-ch$1"}], None),
    ({"a": "foo", "b": "bar"}, [{"source_labels": ["a"], "regex": ".*o.*", "action": "drop"}],
     None),
    ({"a": "abc"}, [{"source_labels": ["a"], "regex": ".*(b).*", "target_label": "d"}],
     {"a": "abc", "d": "b"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "drop"}],
     {"a": "foo"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f|o", "action": "drop"}], {"a": "foo"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}], None),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}], {"a": "foo"}),
    # No replacement must be applied if there is no match.
    ({"a": "boo"}, [{"source_labels": ["a"], "regex": "f", "target_label": "b",
                     "replacement": "bar"}], {"a": "boo"}),
    (ABC, [{"source_labels": ["c"], "target_label": "d", "action": "hashmod", "modulus": 1000}],
     {**ABC, "d": "976"}),
    ({"a": "foo\nbar"}, [{"source_labels": ["a"], "target_label": "b", "action": "hashmod",
                          "modulus": 1000}], {"a": "foo\nbar", "b": "734"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"},
     [{"regex": "(b.*)", "replacement": "bar_${1}", "action": "labelmap"}],
     {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"}),
    ({"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
     [{"regex": "__meta_(my.*)", "replacement": "${1}", "action": "labelmap"}],
     {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc",
      "my_bar": "aaa", "my_baz": "bbb"}),
    ({"a": "some-name-value"}, [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)",
                                 "replacement": "${2}", "target_label": "${1}"}],
     {"a": "some-name-value", "name": "value"}),
    # Replacement "${3}" is empty: the (absent) target is deleted.
    ({"a": "some-name-value"}, [{"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)",
                                 "replacement": "${3}", "target_label": "${1}"}],
     {"a": "some-name-value"}),
    # Invalid target labels after expansion: nothing happens.
    ({"a": "some-name-0"}, [
        {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}",
         "target_label": "${3}"},
        {"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}",
         "target_label": "${3}"},
        {"source_labels": ["a"], "regex": "some-([^-]+)(-[^,]+)", "replacement": "${1}",
         "target_label": "${3}"}], {"a": "some-name-0"}),
    # A more complex real-life like use case.
    ({"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"}, [
        {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)path:(/[^,]+).*",
         "replacement": "${1}", "target_label": "__metrics_path__"},
        {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)job:([^,]+).*",
         "replacement": "${1}", "target_label": "job"},
        {"source_labels": ["__meta_sd_tags"], "regex": "(?:.+,|^)label:([^=]+)=([^,]+).*",
         "replacement": "${2}", "target_label": "${1}"}],
     {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar",
      "__metrics_path__": "/secret", "job": "some-job", "foo": "bar"}),
    # prometheus/prometheus#12283.
    ({"__meta_kubernetes_pod_container_port_name": "foo",
      "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091"}, [
        {"regex": "^__meta_kubernetes_pod_container_port_name$", "action": "labeldrop"},
        {"source_labels": ["__meta_kubernetes_pod_annotation_XXX_metrics_port"],
         "regex": "(.+)", "replacement": "metrics",
         "target_label": "__meta_kubernetes_pod_container_port_name"},
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "^metrics$",
         "action": "keep"}],
     {"__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
      "__meta_kubernetes_pod_container_port_name": "metrics"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labelkeep"}],
     {"b1": "bar", "b2": "baz"}),
    ({"a": "foo", "b1": "bar", "b2": "baz"}, [{"regex": "(b.*)", "action": "labeldrop"}],
     {"a": "foo"}),
    ({"foo": "bAr123Foo"}, [
        {"source_labels": ["foo"], "action": "uppercase", "target_label": "foo_uppercase"},
        {"source_labels": ["foo"], "action": "lowercase", "target_label": "foo_lowercase"}],
     {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"}),
    (PORTS, [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port1"}],
     PORTS),
    (PORTS, [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port1"}],
     None),
    (PORTS, [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port2"}],
     PORTS),
    (PORTS, [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port2"}],
     None),
    # Not from relabel_test.go: defaults, empty values and the fast path.
    ({"a": "x", "e": ""}, [{"target_label": "new", "replacement": "v"}],
     {"a": "x", "new": "v"}),
    ({"a": "x"}, [{"source_labels": ["a"], "target_label": "a", "replacement": ""}], {}),
    ({"a": "x"}, [{"source_labels": ["a"], "target_label": "b"}], {"a": "x", "b": "x"}),
    ({"a": "x"}, [{"source_labels": ["missing"], "target_label": "b", "regex": "(.+)"}],
     {"a": "x"}),
    ({"a": "x", "b": "y"}, [{"source_labels": ["a", "b"], "separator": "/",
                             "target_label": "c"}], {"a": "x", "b": "y", "c": "x/y"}),
    ({"a": "X\u00c9"}, [{"source_labels": ["a"], "action": "lowercase", "target_label": "a"}],
     {"a": "x\u00e9"}),
    ({"a": "x"}, [{"source_labels": ["a"], "regex": "(?P<v>x)", "target_label": "b",
                   "replacement": "${v}-$$-$v1-${1}"}], {"a": "x", "b": "x-$--x"}),
    ({"a": "x"}, [{"source_labels": ["a"], "regex": "(?<v>x)", "target_label": "b",
                   "replacement": "<$v>"}], {"a": "x", "b": "<x>"}),
]


@pytest.mark.parametrize("labels, rules, expected", CASES)
def test_relabel(labels: dict[str, str], rules: list[dict[str, Any]],
                 expected: dict[str, str] | None) -> None:
    before = dict(labels)
    assert apply(parse_rules(rules), labels) == expected
    assert labels == before


def test_regex_is_anchored_on_both_ends() -> None:
    rules = parse_rules([{"source_labels": ["a"], "regex": "oo", "action": "keep"}])
    assert apply(rules, {"a": "foo"}) is None
    assert apply(rules, {"a": "oo"}) == {"a": "oo"}
    # Python's $ would match before a final newline; Prometheus's anchor does not.
    assert apply(parse_rules([{"source_labels": ["a"], "regex": "oo", "action": "keep"}]),
                 {"a": "oo\n"}) is None


def test_from_yaml_with_defaults() -> None:
    rules = parse_rules(yaml.safe_load("""
        - source_labels: [__address__]
          target_label: instance
        - action: LabelMap
          regex: __meta_(.+)
    """))
    assert rules[0] == RelabelRule(source_labels=("__address__",), target_label="instance")
    assert rules[0].separator == ";" and rules[0].regex == "(.*)" and rules[0].replacement == "$1"
    assert rules[1].action == "labelmap"
    assert apply(rules, {"__address__": "h:1", "__meta_x": "1"}) == {
        "__address__": "h:1", "__meta_x": "1", "instance": "h:1", "x": "1"}


# TestTargetLabelValidity, through the replace action's validation.
@pytest.mark.parametrize("target, valid", [
    ("-label", False), ("label", True), ("label${1}", True), ("${1}label", True), ("${1}", True),
    ("${", False), ("$", False), ("${}", False), ("foo${", False), ("$1", True),
    ("asd$2asd", True), ("-foo${1}bar-", False), ("_${1}_", True), ("foo${bar}foo", True),
])
def test_target_label_validity(target: str, valid: bool) -> None:
    rule = {"source_labels": ["a"], "target_label": target}
    if valid:
        parse_rules([rule])
    else:
        with pytest.raises(ConfigError, match=r"\[0\]: target_label: .* is invalid"):
            parse_rules([rule])


# TestRelabelValidate and the checks of Config.Validate, each naming index and key.
@pytest.mark.parametrize("rule, key, reason", [
    ({"action": "replace"}, "target_label", "requires a target_label"),
    ({"action": "lowercase"}, "target_label", "requires a target_label"),
    ({"action": "lowercase", "target_label": "${3}"}, "target_label", "is invalid"),
    ({"source_labels": ["a"], "regex": "some-([^-]+)-([^,]+)", "replacement": "${1}",
      "target_label": "0${3}"}, "target_label", "is invalid"),
    ({"source_labels": ["a"], "target_label": "-${3}"}, "target_label",
     "is invalid for the replace action"),
    ({"action": "hashmod", "target_label": "x"}, "modulus", "non-zero modulus"),
    ({"action": "hashmod", "target_label": "x", "modulus": "10"}, "modulus", "integer"),
    ({"action": "hashmod", "target_label": "x", "modulus": True}, "modulus", "integer"),
    ({"action": "frobnicate"}, "action", "unknown relabel action 'frobnicate'"),
    ({"action": 3}, "action", "expected a string"),
    ({"regex": "(", "target_label": "x"}, "regex", "invalid regex"),
    ({"regex": "\\p{Greek}", "target_label": "x"}, "regex", "not supported"),
    ({"regex": ["a"], "target_label": "x"}, "regex", "expected a string"),
    ({"target_label": 5}, "target_label", "expected a string"),
    ({"source_labels": "a", "target_label": "x"}, "source_labels", "a list"),
    ({"source_labels": ["a-b"], "target_label": "x"}, "source_labels", "not a valid label name"),
    ({"source_labels": [1], "target_label": "x"}, "source_labels", "not a valid label name"),
    ({"bogus": 1}, "bogus", "unknown key"),
    ({"action": "uppercase", "target_label": "x", "replacement": "y"}, "replacement",
     "cannot be set"),
    ({"action": "labelmap", "replacement": "-x"}, "replacement", "invalid"),
    ({"action": "keepequal", "target_label": "x", "regex": "a"}, "regex", "only source_labels"),
    ({"action": "labeldrop", "source_labels": ["a"]}, "source_labels", "only regex"),
    ({"action": "labelkeep", "target_label": "a"}, "target_label", "only regex"),
])
def test_invalid_rules(rule: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_rules([{"target_label": "ok", "source_labels": ["a"]}, rule], where="job 'x'")
    assert str(err.value).startswith(f"job 'x'[1]: {key}: ")
    assert reason in str(err.value)


def test_not_a_list_or_not_a_mapping() -> None:
    assert parse_rules(None) == ()
    with pytest.raises(ConfigError, match="expected a list"):
        parse_rules({"action": "keep"})
    with pytest.raises(ConfigError, match=r"relabel_configs\[0\]: a relabel rule is a mapping"):
        parse_rules(["keep"])


@pytest.mark.parametrize("template, expected", [
    ("$1", "A"), ("${1}", "A"), ("$1x", ""), ("${1}x", "Ax"), ("$$1", "$1"), ("$", "$"),
    ("${", "${"), ("${1", "${1"), ("$name", "B"), ("${name}_", "B_"), ("$name_", ""),
    ("$0", "AB"), ("$01", ""), ("$3", ""), ("a$-b", "a$-b"), ("$2$1", "BA"),
])
def test_expand_is_gos(template: str, expected: str) -> None:
    regex = compile_regex("(A)(?P<name>B)")
    match = regex.fullmatch("AB")
    assert match is not None
    assert expand(compile_template(template, regex), match) == expected


def test_posix_classes_and_end_of_text() -> None:
    regex = compile_regex("[[:alpha:]]+[[:digit:]]\\z")
    assert regex.fullmatch("abc1") and not regex.fullmatch("ab-1")
    assert compile_regex("\\w+").fullmatch("\u00e9") is None  # ASCII classes, as RE2


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,4}", fullmatch=True),
                       st.text(max_size=5), max_size=5), st.integers(1, 2**40))
def test_hashmod_is_the_md5_tail(labels: dict[str, str], modulus: int) -> None:
    import hashlib

    rule = parse_rules([{"source_labels": sorted(labels) or ["x"], "action": "hashmod",
                         "target_label": "shard", "modulus": modulus}])
    out = apply(rule, labels)
    assert out is not None
    joined = ";".join(labels.get(k, "") for k in sorted(labels) or ["x"])
    digest = hashlib.md5(joined.encode()).digest()
    assert out["shard"] == str(int.from_bytes(digest[8:], "big") % modulus)
    assert all(v for v in out.values())


def test_rules_compare_by_configuration() -> None:
    a = parse_rules([{"source_labels": ["a"], "target_label": "b", "regex": "x(.*)"}])[0]
    b = parse_rules([{"source_labels": ["a"], "target_label": "b", "regex": "x(.*)"}])[0]
    assert a == b and isinstance(a.pattern, re.Pattern)
