"""Fuzzing dynamic pollster definitions and expressions (issue 12).

Whatever an operator writes, the only outcomes are:

- at load: a valid definition, or zkpoll's ConfigError (definitions) /
  ExpressionError (expressions); a YAML file never raises at all, its
  problems are recorded as load failures;
- at evaluation: a plain data value, or ExpressionError /
  ExpressionBudgetError (a PluginError); through a pollster, samples or a
  PluginError;

never another exception, never a hang (hypothesis' deadline per case and
the expression budget), never a memory blow-up (peak RSS checked).
Derandomized, so CI runs the same cases every time.
"""

from __future__ import annotations

import resource
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkpoll.exceptions import ConfigError, PluginError
from zkpoll.polling.dynamic import DynamicPollster, load_definitions
from zkpoll.polling.dynamic.budget import ExpressionBudgetError
from zkpoll.polling.dynamic.defs import _KEYS, UNSUPPORTED, parse_definition
from zkpoll.polling.dynamic.expr import Expression, ExpressionError
from zkpoll.sample import Sample

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(derandomize=True, max_examples=300, deadline=timedelta(seconds=10),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
#: Peak RSS growth allowed over a whole fuzz test (bytes).
MEMORY_SLACK = 400 * 2 ** 20

# --- values an answer may hold ---------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                     st.dictionaries(st.text(max_size=5), inner, max_size=5)),
    max_leaves=20)

# --- expression texts: pieces of the subset, of outside it, and their mixtures ---------
ATOMS = ["value", "v", "1", "0", "-1", "10", "100000", "1e308", "'a'", "''", "'$'", "None",
         "True", "[]", "{}", "[0]", "(1, 2)", "{'k': value}", "[value]", "str", "len", "open",
         "__import__", "x", "value.__class__", "9" * 30]
CALLS = ["str({})", "int({})", "float({})", "len({})", "list({})", "tuple({})", "sorted({})",
         "sum({})", "sum({}, [])", "max({})", "min({})", "abs({})", "round({}, 2)", "dict({})",
         "bool({})", "any({})", "all({})", "list(map(lambda v: {}, value))",
         "list(filter(lambda v: v, {}))", "list(reversed({}))", "sorted({}, key=len)",
         "{}.split('$')", "','.join({})", "{}.replace('', 'ab')", "{}.zfill(50)",
         "{}.get('k')", "{}.keys()", "{}.items()", "{}.count(0)", "{}.upper()",
         "{}.strip()", "{}.__class__()", "getattr({}, 'x')", "{}.format(1)"]
BINARY = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "==", "<", "in", "not in", "is",
          "and", "or", "&", "|"]


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(CALLS), inner).map(lambda t: t[0].format(t[1])),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}:]"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            inner.map(lambda e: f"[{e}] * 100000"),
            inner.map(lambda e: f"not {e}"),
            inner.map(lambda e: f"-{e}"),
        )

    return st.recursive(st.sampled_from(ATOMS), extend, max_leaves=12)


operations = st.one_of(_expressions(), st.text(max_size=40))
attribute_texts = st.one_of(
    st.tuples(st.sampled_from(["x", ".", "a.b", "0", "x.0"]),
              st.lists(operations, min_size=0, max_size=3)).map(
        lambda t: " | ".join([t[0], *t[1]])),
    st.text(max_size=60))


def _is_data(value: Any, depth: int = 0) -> bool:
    if depth > 200:
        return False
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_data(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_is_data(k, depth + 1) and _is_data(v, depth + 1) for k, v in value.items())
    return False


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture
def bounded_memory() -> Any:
    before = _peak()
    yield
    assert _peak() - before < MEMORY_SLACK


@FUZZ
@given(text=attribute_texts, entry=json_values)
def test_expressions_give_a_value_or_zkpoll_errors(bounded_memory: None, text: str,
                                                   entry: Any) -> None:
    try:
        expression = Expression(text)
    except ExpressionError:
        return
    try:
        result = expression.apply(entry)
    except (ExpressionError, ExpressionBudgetError):
        return
    assert _is_data(result), f"{text!r} gave {type(result).__name__}"


# --- definitions --------------------------------------------------------------------
KEYS = sorted(_KEYS | set(UNSUPPORTED) | {"nmae", "value", "url"})
key_values = st.one_of(json_values, attribute_texts, st.sampled_from(
    ["gauge", "cumulative", "delta", "http://127.0.0.1:1/x", "/rel", "echo 1", "json", "xml",
     "text", "dyn.a.b", "dyn.a.{x}", "[items].v"]))
definitions = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), key_values, max_size=10),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["dyn.a", "dyn.a.{x}", "bad name", ""]),
         "sample_type": st.sampled_from(["gauge", "delta", "nope"]),
         "unit": st.sampled_from(["B", ""]),
         "url_path": st.sampled_from(["http://127.0.0.1:1/x", "/rel", "ftp://x"]),
         "value_attribute": attribute_texts},
        optional={k: key_values for k in ("metadata_fields", "value_mapping", "timeout",
                                          "response_entries_key", "skip_sample_values",
                                          "headers", "namespaces", "host_command")}),
    json_values)


@FUZZ
@given(raw=definitions, reading=st.lists(json_values, max_size=4))
def test_definitions_load_or_are_refused_and_poll_or_fail_cleanly(
        bounded_memory: None, raw: Any, reading: list[Any]) -> None:
    try:
        definition = parse_definition(raw, "/etc/zkpoll/pollsters.d/fuzz.yaml")
    except ConfigError:
        return
    pollster = DynamicPollster(definition)
    try:
        samples = list(pollster.make_samples("res", reading, 0.0))
    except PluginError:
        return
    assert all(isinstance(s, Sample) for s in samples)
    for sample in samples:
        sample.validate()


yaml_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(
        ["- name: dyn.a", "  sample_type: gauge", "  unit: B", "  url_path: /x",
         "  value_attribute: \"x | str([[0]*100000]*100000)\"", "  value_attribute: v",
         "- {name: 1}", "sources: []", "  - [", "key: !!python/object:os.system x",
         "&a [*a]", "- &b {x: *b}", "\t- tab", "- name: dyn.b\n  sample_type: gauge"]),
        max_size=8).map("\n".join))


@settings(derandomize=True, max_examples=150, deadline=timedelta(seconds=10),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=yaml_texts)
def test_definition_files_never_raise(tmp_path: Path, text: str) -> None:
    (tmp_path / "fuzz.yaml").write_text(text)
    definitions, failures = load_definitions([str(tmp_path)])
    assert all(d.path.endswith("fuzz.yaml") for d in definitions)
    assert all(isinstance(reason, str) and reason for reason in failures.values())
