"""zkpoll.scrape.exposition against prometheus_client's parsers and itself."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as pc_om
from prometheus_client.parser import text_string_to_metric_families as pc_text

from zkpoll.exceptions import ZkpollError
from zkpoll.scrape.exposition import (
    ACCEPT,
    OPENMETRICS,
    TEXT,
    ExpositionError,
    Family,
    Series,
    format_for,
    parse,
)

DATA = Path(__file__).parent / "data" / "exposition"
FIXTURES = sorted(p.name for p in DATA.iterdir())


def fmt_of(name: str) -> str:
    return OPENMETRICS if name.endswith(".om.txt") else TEXT


# --- comparing with prometheus_client ----------------------------------------------
def _ms(ts: Any) -> int | None:
    if ts is None:
        return None
    if hasattr(ts, "sec"):
        return ts.sec * 1000 + ts.nsec // 1_000_000
    return round(ts * 1000)


def _key(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


def pc_series(body: str, fmt: str) -> list[tuple[str, dict[str, str], str, int | None, str]]:
    """prometheus_client's samples, flat, in order, with their family's type."""
    parser = pc_om if fmt == OPENMETRICS else pc_text
    out = []
    for fam in parser(body):
        for s in fam.samples:
            out.append((s.name, dict(s.labels), _key(s.value), _ms(s.timestamp), fam.type))
    return out


def our_series(body: str, fmt: str) -> list[tuple[str, dict[str, str], str, int | None, str]]:
    exp = parse(body, fmt)
    out = []
    for name, labels, value, ts in exp.series:
        kind = exp.type_of(name)
        out.append((name, dict(labels), _key(value), ts, "unknown" if kind == "untyped" else kind))
    return out


def assert_same_as_prometheus_client(body: str, fmt: str) -> None:
    ours, theirs = our_series(body, fmt), pc_series(body, fmt)
    assert len(ours) == len(theirs)
    for mine, pcs in zip(ours, theirs):
        name, labels, value, ts, kind = mine
        if fmt == TEXT and kind == "counter" and pcs[0] == name + "_total":
            # prometheus_client renames a text counter's samples to <family>_total.
            pcs = (name, *pcs[1:])
        assert (name, labels, value, ts, kind) == pcs


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixtures_parse_as_prometheus_client_does(fixture: str) -> None:
    assert_same_as_prometheus_client((DATA / fixture).read_text(), fmt_of(fixture))


def test_tricky_text_details() -> None:
    exp = parse((DATA / "tricky.prom").read_text())
    by_name = {s[0]: s for s in exp.series}
    assert by_name["weird_values"][1] == (("a", "x,y=z}"), ("b", '{"},'),
                                          ("c", " # not an exemplar "), ("d", ""))
    assert by_name["msdos_file_access_time_seconds"][1][1] == ("error", 'Cannot find file:\n"FILE.TXT"')
    assert by_name["something_weird"][2:] == (math.inf, -3982045)
    assert exp.families["http_requests_total"] == Family(
        "http_requests_total", "counter",
        'The total number of HTTP requests; a \\ backslash, a \n newline, a \\" kept.')
    assert exp.families["help_only"].type == "untyped"
    assert exp.type_of("http_request_duration_seconds_bucket") == "histogram"
    assert exp.type_of("rpc_duration_seconds") == "summary"
    assert exp.type_of("nothing_declared") == "untyped"


def test_openmetrics_families_and_suffixes() -> None:
    exp = parse((DATA / "tricky.om.txt").read_text(), OPENMETRICS)
    assert exp.families["process_cpu_seconds"] == Family(
        "process_cpu_seconds", "counter", "Total user and system CPU time spent in seconds.",
        "seconds")
    assert exp.family_of("process_cpu_seconds_total") is exp.families["process_cpu_seconds"]
    assert exp.type_of("process_cpu_seconds_created") == "counter"
    assert exp.type_of("process_cpu_seconds") == "unknown"  # a counter has no bare series
    assert exp.type_of("gh_gsum") == "gaugehistogram"
    assert exp.type_of("build_info") == "info"
    assert exp.type_of("hist") == "unknown"
    assert [s[3] for s in exp.series if s[0] == "hist_count"] == [1520879607789]


def test_text_suffixes_are_the_text_formats() -> None:
    body = "# TYPE c counter\nc 1\nc_total 2\nc_created 3\n# TYPE h histogram\nh_created 1\n"
    exp = parse(body)
    assert [exp.type_of(s[0]) for s in exp.series] == ["counter", "untyped", "untyped", "untyped"]


@pytest.mark.parametrize("content_type, fmt", [
    ("application/openmetrics-text; version=1.0.0; charset=utf-8", OPENMETRICS),
    ("Application/OpenMetrics-Text", OPENMETRICS),
    ("text/plain; version=0.0.4; charset=utf-8", TEXT),
    ("", TEXT), (None, TEXT), ("application/json", TEXT),
])
def test_format_for(content_type: str | None, fmt: str) -> None:
    assert format_for(content_type) == fmt


def test_accept_header_is_prometheus() -> None:
    assert ACCEPT == ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def test_bytes_and_timestamps() -> None:
    exp = parse('a{x="é"} 1 -2\n'.encode())
    assert exp.series == [("a", (("x", "é"),), 1.0, -2)]
    om = parse(b"a 1 -1.5\nb 2 12.3456\nc 3 1e3\nd 4 1700000000.123\n# EOF", OPENMETRICS)
    assert [s[3] for s in om.series] == [-1500, 12345, 1000000, 1700000000123]
    with pytest.raises(ExpositionError, match="line 2: invalid UTF-8"):
        parse(b"a 1\nb{x=\"\xff\"} 1\n")


def test_hex_value_and_odd_numbers() -> None:
    exp = parse("a 0x1p-2\nb .5\nc 5.\nd +inf\ne -Infinity\n")
    assert [s[2] for s in exp.series] == [0.25, 0.5, 5.0, math.inf, -math.inf]


# --- errors -------------------------------------------------------------------------
TEXT_ERRORS = [
    ('foo{a="1",a="2"} 1', "duplicate label name 'a'"),
    ('foo{a="1" 1', "expected ',' or '}'"),
    ('foo{a=1} 1', "expected a quoted value"),
    ('foo{a="1"', "not closed"),
    ("foo 1 2 3", "text after the timestamp"),
    ("foo 1 1.5", "invalid timestamp"),
    ("foo", "no value"),
    ("foo 1_000", "invalid value"),
    ("foo \u0661", "invalid value"),
    ("foo bar", "invalid value"),
    ("9foo 1", "invalid metric name"),
    ("fo-o 1", "invalid metric name"),
    ('{a="b"} 1', "expected a metric name"),
    ('foo{__name__="bar"} 1', "metric name given twice"),
    ('foo{,a="b"} 1', "expected a label name"),
    ('foo{a="b",,} 1', "expected a label name"),
    ('foo{1a="b"} 1', "expected a label name"),
    ("# TYPE foo", "invalid metric type ''"),
    ("# TYPE foo gaugehistogram", "invalid metric type"),
    ("# HELP 9foo x", "invalid metric name"),
    ('foo{a="b\\"} 1', "expected a quoted value"),
]


@pytest.mark.parametrize("line, reason", TEXT_ERRORS)
def test_text_errors_name_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(ExpositionError) as err:
        parse(f"ok 1\n# comment\n{line}\nok 2\n")
    assert err.value.lineno == 3
    assert reason in err.value.reason
    assert str(err.value).startswith("line 3: ")
    assert isinstance(err.value, ZkpollError)


OM_ERRORS = [
    ("foo 1\n", "missing # EOF"),
    ("foo 1\n\n# EOF\n", "blank line"),
    ("foo 1\n# EOF\nbar 1\n", "text after # EOF"),
    ("foo 1\n# EOF\n\n", "text after # EOF"),
    ("foo  1\n# EOF\n", "single spaces"),
    ("foo\t1\n# EOF\n", "one space before the value"),
    ("foo 1 \n# EOF\n", "single spaces"),
    ("# TYPE foo untyped\n# EOF\n", "invalid metric type"),
    ("# a comment\n# EOF\n", "expected '# HELP'"),
    ("# HELP foo\n# EOF\n", "expected '# HELP'"),
    ("# UNIT foo_bytes seconds\n# EOF\n", "not a suffix"),
    ('foo{a="1"} 1 # trace 1\n# EOF\n', "exemplar"),
    ('foo{a="1"} 1 # {t="1"}\n# EOF\n', "exemplar"),
    ('foo{a = "1"} 1\n# EOF\n', "expected '='"),
    ("foo 1 NaN\n# EOF\n", "invalid timestamp"),
]


@pytest.mark.parametrize("body, reason", OM_ERRORS)
def test_openmetrics_errors(body: str, reason: str) -> None:
    with pytest.raises(ExpositionError, match=reason):
        parse(body, OPENMETRICS)


def test_error_line_is_truncated() -> None:
    with pytest.raises(ExpositionError) as err:
        parse("x" * 5000 + "{ 1\n")
    assert len(err.value.line) <= 203 and len(str(err.value)) < 400


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        parse("a 1\n", "json")


# --- rendering and property tests ---------------------------------------------------
def render_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: list[dict[str, Any]], fmt: str) -> str:
    """Render generated families (see ``families()``) in ``fmt``."""
    om = fmt == OPENMETRICS
    out = []
    for fam in families:
        if fam["help"] is not None:
            help_text = fam["help"].replace("\\", "\\\\").replace("\n", "\\n")
            if om:
                help_text = help_text.replace('"', '\\"')
            out.append(f"# HELP {fam['name']} {help_text}")
        out.append(f"# TYPE {fam['name']} {fam['type']}")
        for name, labels, value, ts in fam["series"]:
            body = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
            line = f"{name}{{{body}}} {render_value(value)}" if labels or fam["braces"] else \
                f"{name} {render_value(value)}"
            if ts is not None:
                line += f" {ts // 1000}.{ts % 1000:03d}" if om else f" {ts}"
            out.append(line)
    if om:
        out.append("# EOF")
    return "\n".join(out) + "\n"


label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("le", "quantile"))
label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8) | st.sampled_from(
    ['a"b', "c\\d", "e\nf", "x}", "a,b=c", " # {x} 1 ", "\\n", ""])
counts = st.integers(0, 10**6)
any_value = st.floats(allow_nan=True) | st.sampled_from([0.0, -0.0, 1.0, 1e-300])
positive = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@st.composite
def families(draw: st.DrawFn, fmt: str) -> list[dict[str, Any]]:
    om = fmt == OPENMETRICS
    kinds = ["counter", "gauge", "histogram", "summary"] + (
        ["unknown", "info", "stateset", "gaugehistogram"] if om else ["untyped"])
    stamps = draw(st.booleans())
    out = []
    for i in range(draw(st.integers(1, 6))):
        base = draw(st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True)) + f"_{i}"
        kind = draw(st.sampled_from(kinds))
        ts = draw(st.integers(0, 2**41)) if stamps else None
        groups = draw(st.lists(st.lists(st.tuples(label_names, label_values), max_size=3,
                                        unique_by=lambda kv: kv[0]),
                               min_size=1, max_size=3, unique_by=lambda g: tuple(sorted(g))))
        series = []
        for labels in groups:
            labels = [kv for kv in labels if kv[0] != base]
            series += draw(_family_series(base, kind, labels, ts, om))
        if len({(s[0], tuple(sorted(s[1]))) for s in series}) != len(series):
            continue  # two groups that became equal after dropping a label
        help_text = draw(st.none() | st.text(
            st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")) | st.sampled_from(
                "\\\n\" ab"), max_size=12).map(str.strip))
        out.append({"name": base, "type": kind, "series": series, "help": help_text or None,
                    "braces": draw(st.booleans())})
    return out


@st.composite
def _family_series(draw: st.DrawFn, base: str, kind: str, labels: list[tuple[str, str]],
                   ts: int | None, om: bool) -> list[Series]:
    lab = tuple(labels)
    if kind in ("histogram", "gaugehistogram"):
        bounds = sorted(set(draw(st.lists(st.floats(0, 100, allow_nan=False), max_size=4))))
        total = 0
        out = []
        for le in [*map(repr, bounds), "+Inf"]:
            total += draw(st.integers(0, 100))
            out.append((f"{base}_bucket", lab + (("le", le),), float(total), ts))
        g = "g" if kind == "gaugehistogram" else ""
        out += [(f"{base}_{g}count", lab, float(total), ts),
                (f"{base}_{g}sum", lab, draw(positive), ts)]
        return out
    if kind == "summary":
        out = [(base, lab + (("quantile", q),), draw(positive), ts)
               for q in draw(st.lists(st.sampled_from(["0", "0.5", "0.9", "0.99", "1"]),
                                      unique=True, max_size=3))]
        return out + [(f"{base}_sum", lab, draw(positive), ts),
                      (f"{base}_count", lab, float(draw(counts)), ts)]
    if kind == "counter":
        out = [(f"{base}_total" if om else base, lab, draw(positive if om else any_value), ts)]
        if om and draw(st.booleans()):
            out.append((f"{base}_created", lab, draw(positive), ts))
        return out
    if kind == "info":
        return [(f"{base}_info", lab, 1.0, ts)]
    if kind == "stateset":
        states = draw(st.lists(st.from_regex(r"[a-z]{1,4}", fullmatch=True), min_size=1,
                               max_size=3, unique=True))
        return [(base, lab + ((base, s),), float(draw(st.integers(0, 1))), ts) for s in states]
    return [(base, lab, draw(any_value), ts)]


def _flat(fams: list[dict[str, Any]]) -> list[tuple[str, tuple[tuple[str, str], ...], str, int | None]]:
    return [(n, tuple(lab), _key(v), ts) for f in fams for n, lab, v, ts in f["series"]]


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_render_then_parse_is_identity(fmt: str, data: st.DataObject) -> None:
    fams = data.draw(families(fmt))
    exp = parse(render(fams, fmt), fmt)
    assert [(n, lab, _key(v), ts) for n, lab, v, ts in exp.series] == _flat(fams)
    for fam in fams:
        assert exp.families[fam["name"]] == Family(fam["name"], fam["type"], fam["help"])
        for name, *_ in fam["series"]:
            assert exp.type_of(name) == fam["type"]


@pytest.mark.parametrize("fmt", [TEXT, OPENMETRICS])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_expositions_parse_as_prometheus_client_does(fmt: str, data: st.DataObject) -> None:
    assert_same_as_prometheus_client(render(data.draw(families(fmt)), fmt), fmt)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from('ab{}="\\, \t#\n1.-+eE_:'), max_size=40))
def test_garbage_raises_only_exposition_errors(body: str) -> None:
    for fmt in (TEXT, OPENMETRICS):
        try:
            exp = parse(body, fmt)
        except ExpositionError:
            continue
        for name, labels, value, ts in exp.series:
            assert isinstance(name, str) and isinstance(value, float)
            assert ts is None or isinstance(ts, int)
            assert len({k for k, _ in labels}) == len(labels)
