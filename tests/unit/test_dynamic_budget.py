"""Dynamic pollster expressions have a bounded cost: size, allocation, integers, steps, time.

Each case would freeze or exhaust the agent without its bound (the first
is the case of issue 12: a nested list repetition turned into a string
went to 17 GB and ignored SIGINT); here each is refused with a clear
message, quickly, before the value is built.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import pytest

from zkpoll.discovery.local import host_id
from zkpoll.exceptions import PluginError
from zkpoll.polling import dynamic
from zkpoll.polling.dynamic import budget as dynamic_budget
from zkpoll.polling.dynamic.budget import (
    MAX_ALLOCATED,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_SIZE,
    MAX_STEPS,
    ExpressionBudgetError,
    evaluation_deadline,
    size_of,
)
from zkpoll.polling.dynamic.defs import parse_definition
from zkpoll.polling.dynamic.expr import (
    MAX_NESTING,
    MAX_NODES,
    MAX_TEXT,
    Expression,
    ExpressionError,
)
from zkpoll.testing.plugins import poll

pytestmark = pytest.mark.timeout(60)

#: Growth of the peak RSS allowed while a refused expression runs (bytes).
MEMORY_SLACK = 200 * 2 ** 20


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def refused(text: str, entry: Any, reason: str) -> None:
    """``text`` on ``entry`` raises ExpressionBudgetError matching ``reason``, cheaply."""
    before = _peak_rss()
    with pytest.raises(ExpressionBudgetError, match=reason) as caught:
        Expression(text)(entry)
    assert "went over its budget" in str(caught.value)
    assert _peak_rss() - before < MEMORY_SLACK


@pytest.mark.parametrize("text", [
    "x | str([[0]*100000]*100000)",          # issue 12, as reported
    "x | str([[value]*100000]*100000)",
    "x | [[0]*1000]*1000",
    "x | str([[[0]*100]*100]*100)",
    "x | [value] * 100 * 100 * 100",
])
def test_nested_repetition_is_refused_before_it_is_built(text: str) -> None:
    refused(text, {"x": 0}, r"'\*' would build")


def test_flat_repetition_keeps_its_item_limit() -> None:
    refused("x | value * 1000000", {"x": "ab"}, "more than 100000 items")
    assert Expression("x | value * 3")({"x": "ab"}) == "ababab"
    assert Expression("x | [value] * 2")({"x": [1]}) == [[1], [1]]


def test_str_of_a_huge_value_is_refused_before_it_is_built() -> None:
    big = list(range(400_000))  # an answer that large: str() would print ~3 MB
    refused("x | str(value)", {"x": big}, r"str\(\) would build")
    assert Expression("x | str(value)")({"x": [1, 2]}) == "[1, 2]"


@pytest.mark.parametrize(("text", "reason"), [
    ("x | ','.join([value * 100000] * 50)", r"'\*' would build|join\(\) would build"),
    ("x | (value * 100000).join([value] * 20)", r"join\(\) would build"),
    ("x | (value * 1000).replace('', value * 1000)", r"replace\(\) would build"),
    ("x | value.zfill(10000000000)", r"zfill\(10000000000\)"),
    ("x | sum(map(lambda v: [v] * 100000, [value, value]), [])", r"sum\(\) of sequences would build"),
])
def test_string_and_sequence_builders_are_checked_first(text: str, reason: str) -> None:
    refused(text, {"x": "a"}, reason)


def test_sum_of_lists_is_linear_and_still_typed() -> None:
    assert Expression("x | sum(value, [])")({"x": [[1], [2, 3]]}) == [1, 2, 3]
    assert Expression("x | sum(value)")({"x": [1, 2.5]}) == 3.5
    with pytest.raises(ExpressionError, match="can only concatenate list"):
        Expression("x | sum(value, [])")({"x": [[1], (2,)]})


def test_integer_products_are_bounded_in_bits() -> None:
    squares = "[int(value)]"
    for _ in range(20):
        squares = f"map(lambda v: v * v, {squares})"
    refused(f"x | list({squares})", {"x": "9" * 4000},
            f"integer of about .* bits \\(limit {MAX_INT_BITS}\\)")
    assert Expression("x | value * value")({"x": 2 ** 60}) == 2 ** 120


def test_long_texts_are_not_converted_to_integers() -> None:
    refused("x | int(value)", {"x": "9" * 100_000}, r"int\(\) of a text of 100000")


@pytest.mark.parametrize("text", ["x | value ** 99", "x | value << 99999", "x | 1 >> value"])
def test_powers_and_shifts_are_not_in_the_subset(text: str) -> None:
    with pytest.raises(ExpressionError, match="is not allowed"):
        Expression(text)


def test_many_values_built_one_at_a_time_are_bounded_in_all() -> None:
    refused("x | len(list(map(lambda v: [v] * 100000, [0] * 1000)))", {"x": 0},
            f"more than {MAX_ALLOCATED} units in all")


def test_steps_are_bounded() -> None:
    text = "x | len(list(map(lambda v: sorted(map(lambda w: w + 1, value)), value)))"
    refused(text, {"x": list(range(1000))}, f"more than {MAX_STEPS} evaluation steps")
    assert Expression(text)({"x": list(range(10))}) == 10


def test_time_is_bounded_by_the_deadline_of_the_poll() -> None:
    text = "x | len(list(map(lambda v: v + 1, value)))"
    with evaluation_deadline(time.monotonic() - 1):
        refused(text, {"x": list(range(5000))}, "longer than its time budget")
    assert Expression(text)({"x": list(range(5000))}) == 5000


def test_deeply_nested_values_are_refused() -> None:
    deep: Any = 0
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    refused("x | list(value)", {"x": deep}, f"deeper than {MAX_DEPTH}")


@pytest.mark.parametrize(("text", "reason"), [
    ("x | [" + ",".join(["1"] * 1200) + "]", f"more than {MAX_NODES} syntax nodes"),
    ("x | " + "-" * (MAX_NESTING + 5) + "value", f"deeper than {MAX_NESTING}"),
    ("x | value" + " " * MAX_TEXT, f"longer than {MAX_TEXT} characters"),
])
def test_the_shape_of_an_operation_is_bounded_at_load(text: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        Expression(text)


def test_lazy_results_are_values_and_functions_are_refused() -> None:
    assert Expression("x | map(str, value)")({"x": [1, 2]}) == ["1", "2"]
    assert Expression("x | value.keys()")({"x": {"a": 1}}) == ["a"]
    with pytest.raises(ExpressionError, match="gives a function"):
        Expression("x | lambda v: v")({"x": 1})


def test_size_counts_shared_items_each_time_but_walks_them_once() -> None:
    inner = [0] * 1000
    assert size_of([inner, inner]) == 2 * (2 + size_of(inner)) + 2
    assert size_of([inner] * 10_000) > MAX_SIZE
    assert size_of("abc") == 6 and size_of({"a": 1}) < 20


# --- the pollster: over budget is an error of the pollster for the cycle ----------
def test_a_pollster_over_its_budget_fails_its_call_and_others_go_on() -> None:
    entry = """printf '%s' '[{"id": "disk0", "free": "12"}]'"""
    base = {"sample_type": "gauge", "unit": "x", "host_command": entry}
    bad = dynamic.DynamicPollster(parse_definition(
        {**base, "name": "dyn.bad", "value_attribute": "free | str([[0]*100000]*100000)"},
        "/etc/zkpoll/pollsters.d/bad.yaml"))
    good = dynamic.DynamicPollster(parse_definition(
        {**base, "name": "dyn.good", "value_attribute": "free | int(value)"},
        "/etc/zkpoll/pollsters.d/good.yaml"))
    with pytest.raises(PluginError, match="went over its budget: '\\*' would build"):
        poll(bad, [host_id(None)])
    assert [s.volume for s in poll(good, [host_id(None)])] == [12]


def test_a_metadata_field_over_budget_fails_the_pollster_too() -> None:
    p = dynamic.DynamicPollster(parse_definition(
        {"name": "dyn.meta", "sample_type": "gauge", "unit": "x", "value_attribute": "free",
         "metadata_fields": ["free | [str(value) * 100000] * 100"],
         "host_command": """printf '%s' '[{"id": "d", "free": 1}]'"""},
        "/etc/zkpoll/pollsters.d/m.yaml"))
    with pytest.raises(dynamic_budget.ExpressionBudgetError):
        poll(p, [host_id(None)])
