"""Tests for the alarm definition files: every refusal names file, line and alarm."""

from __future__ import annotations

import os
import pathlib
import textwrap

import pytest

from zkpoll.alarm import checks
from zkpoll.alarm.definitions import (
    AlarmDefinition,
    AlarmSet,
    load_alarm_dir,
    load_alarm_file,
)
from zkpoll.exceptions import AlarmConfigError, ConfigError

ETC_ALARMS = pathlib.Path(__file__).resolve().parents[2] / "etc" / "zkpoll" / "alarms"

# Line 2 is the entry (and its id), 3 its type, 4 its query, 5 its threshold;
# a line appended is line 6.
PROM = """\
alarms:
  - id: a1
    type: prometheus
    query: up
    threshold: 1
"""
# Same layout: 5 is the meter.
THRESH = """\
alarms:
  - id: t1
    type: threshold
    meter: host.cpu.util
    threshold: 90
"""


def write(directory: pathlib.Path, text: str, name: str = "alarms.yaml") -> str:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def refused(path: str, *, line: int | None, alarm: str | None, reason: str
            ) -> AlarmConfigError:
    """Load the directory of ``path`` and check the error names what it should."""
    with pytest.raises(AlarmConfigError) as info:
        load_alarm_dir(os.path.dirname(path))
    err = info.value
    assert isinstance(err, ConfigError)
    message = str(err)
    assert reason in err.reason, message
    assert (err.path, err.line, err.alarm) == (path, line, alarm), message
    where = path if line is None else f"{path}:{line}"
    if alarm is not None:
        where += f" (alarm {alarm!r})"
    assert message == f"{where}: {err.reason}"
    return err


# -- one bad field each: (text appended to PROM or THRESH, line at fault, reason) ---------
FIELD_CASES = [
    (PROM, "    thresold: 2\n", 6, ("unknown key 'thresold'; known keys: aggregation, "
                                   "alarm_actions, comparison_operator, description")),
    (PROM, "    name: ''\n", 6, "invalid 'name': must not be empty"),
    (PROM, f"    name: {'n' * 256}\n", 6, "at most 255 characters"),
    (PROM, "    description: 5\n", 6, "invalid 'description': must be a string, got an integer"),
    (PROM, "    enabled: 'yes'\n", 6, "invalid 'enabled': must be true or false"),
    (PROM, "    repeat_actions: 1\n", 6, "invalid 'repeat_actions': must be true or false"),
    (PROM, "    severity: high\n", 6, ("invalid 'severity': 'high' is not one of low, moderate, "
                                      "critical")),
    (PROM, "    comparison_operator: '>'\n", 6, "'>' is not one of lt, le, eq, ne, ge, gt"),
    (PROM, "    evaluation_periods: 0\n", 6, "invalid 'evaluation_periods': must be from 1"),
    (PROM, "    evaluation_periods: 1.5\n", 6, "must be a whole number, got a number (1.5)"),
    (PROM, "    evaluation_periods: '3'\n", 6, "(write it without quotes)"),
    (PROM, "    evaluation_periods: 10001\n", 6, "must be from 1 to 10000"),
    (PROM, "    evaluation_interval: 0\n", 6, "invalid 'evaluation_interval': must be from 1"),
    (PROM, f"    evaluation_interval: {31 * 86400 + 1}\n", 6, "to 2678400"),
    (PROM, "    evaluation_interval: 1e400\n", 6, "must be a whole number of seconds"),
    (PROM, "    alarm_actions: log://\n", 6, "invalid 'alarm_actions': must be a list of URLs"),
    (PROM, "    alarm_actions: ['ftp://host/x']\n", 6,
     "action #1: alarm action URL 'ftp://host/x': unsupported scheme 'ftp'"),
    (PROM, "    alarm_actions: ['log://', 'http://']\n", 6,
     "action #2: alarm action URL 'http://': names no host"),
    (PROM, "    alarm_actions: ['https://u:secret@h/?verify=maybe']\n", 6,
     "action #1: alarm action URL 'https://***@h/?verify=maybe': bad value 'maybe'"),
    (PROM, "    alarm_actions: ['http://h/?timeout=1&verify=false']\n", 6,
     "verify apply to https:// only"),
    (PROM, "    alarm_actions: ['log://?level=debug']\n", 6, "log:// takes no options"),
    (PROM, "    ok_actions: ['https://h:99999/']\n", 6, "invalid 'ok_actions': action #1: "),
    (PROM, "    ok_actions: ['http://a b/']\n", 6, "contains spaces or control characters"),
    (PROM, "    ok_actions: ['hooks.example.com']\n", 6, "is not a log://, http:// or https://"),
    (PROM, "    insufficient_data_actions: [1]\n", 6, "action #1: must be a string"),
    (PROM, "    insufficient_data_actions: ['']\n", 6, "action #1: is empty"),
    (PROM, "    meter: cpu\n", 6, "'meter' applies to threshold alarms only"),
    (PROM, "    resources: ['*']\n", 6, "'resources' applies to threshold alarms only"),
    (PROM, "    aggregation: last\n", 6, "'aggregation' applies to threshold alarms only"),
    (PROM, "    threshold: 3\n", 6, ("key 'threshold' given twice in one mapping (first at "
                                    "line 5)")),
    (THRESH, "    query: up\n", 6, "'query' applies to prometheus alarms only"),
    (THRESH, "    resources: []\n", 6, "invalid 'resources': must not be empty"),
    (THRESH, "    resources: ['*', 'r1']\n", 6, "'*' (every resource) cannot be listed"),
    (THRESH, "    resources: r1\n", 6, "must be a list of resource ids"),
    (THRESH, "    resources: ['r1', '']\n", 6, "resource #2 is empty"),
    (THRESH, "    aggregation: median\n", 6, "'median' is not one of last, each, mean"),
]


@pytest.mark.parametrize(("base", "extra", "line", "reason"), FIELD_CASES)
def test_each_bad_field_is_refused_with_its_line(tmp_path, base, extra, line, reason):
    alarm = "a1" if base is PROM else "t1"
    refused(write(tmp_path, base + extra), line=line, alarm=alarm, reason=reason)


# -- a required or typed value replaced: (old line text, new line text, line, reason) ------
REPLACE_CASES = [
    (PROM, "    type: prometheus\n", "    type: promql\n", 3,
     "invalid 'type': 'promql' is not one of prometheus, threshold"),
    (PROM, "    type: prometheus\n", "", 2, "'type' is required"),
    (PROM, "    threshold: 1\n", "", 2, "'threshold' is required"),
    (PROM, "    threshold: 1\n", "    threshold: '0.8'\n", 5,
     "invalid 'threshold': must be a number, got a string ('0.8') (write it without quotes)"),
    (PROM, "    threshold: 1\n", "    threshold: .nan\n", 5, "must be a finite number"),
    (PROM, "    threshold: 1\n", "    threshold: -.inf\n", 5, "must be a finite number"),
    (PROM, "    threshold: 1\n", "    threshold: true\n", 5, "got a boolean"),
    (PROM, "    query: up\n", "    query: '  '\n", 4, "needs a non-empty 'query' (PromQL)"),
    (PROM, "    query: up\n", "", 2, "'query' is required for a prometheus alarm"),
    (PROM, "    query: up\n", "    query: [up]\n", 4, "invalid 'query': must be a string"),
    (THRESH, "    meter: host.cpu.util\n", "", 2, "'meter' is required for a threshold alarm"),
    (THRESH, "    meter: host.cpu.util\n", "    meter: ''\n", 4, ("a threshold alarm needs a "
                                                                "'meter'")),
    (THRESH, "    meter: host.cpu.util\n", "    meter: host cpu\n", 4, "contains spaces"),
]


@pytest.mark.parametrize(("base", "old", "new", "line", "reason"), REPLACE_CASES)
def test_each_bad_required_value_is_refused_with_its_line(tmp_path, base, old, new, line,
                                                         reason):
    assert old in base
    alarm = "a1" if base is PROM else "t1"
    refused(write(tmp_path, base.replace(old, new)), line=line, alarm=alarm, reason=reason)


def test_an_invalid_id_names_its_line(tmp_path):
    path = write(tmp_path, PROM.replace("id: a1", "id: 'bad id!'"))
    refused(path, line=2, alarm=None, reason="'bad id!' is not a valid alarm id")


@pytest.mark.parametrize("alarm_id", ["-x", ".x", "x" * 129, "a/b", "ä", ""])
def test_alarm_id_charset(tmp_path, alarm_id):
    path = write(tmp_path, PROM.replace("id: a1", f"id: '{alarm_id}'"))
    refused(path, line=2, alarm=None, reason="is not a valid alarm id")


def test_id_is_required(tmp_path):
    path = write(tmp_path, PROM.replace("  - id: a1\n    type", "  - type"))
    refused(path, line=2, alarm=None, reason="alarm #1 has no 'id'")


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("alarms: []\nalarms: []\n", 2, ("key 'alarms' given twice in one mapping (first at "
                                    "line 1)")),
    ("- 1\n", 1, "expected a mapping with an 'alarms' list, got a list"),
    ("alarms: []\nsinks: []\n", 2, "unknown top-level key 'sinks'; known keys: alarms"),
    ("{}\n", 1, "no 'alarms' list"),
    ("alarms: {a: 1}\n", 1, "'alarms' must be a list, got a mapping"),
    ("alarms:\n  - [1]\n", 2, "alarm #1 must be a mapping, got a list"),
    ("alarms:\n  - id: a1\n    type: [\n", 4, "invalid YAML"),
    ("alarms:\n  - !!python/object:os.system {}\n", 2, "invalid YAML"),
])
def test_bad_file_structure(tmp_path, text, line, reason):
    refused(write(tmp_path, text), line=line, alarm=None, reason=reason)


def test_a_password_in_an_action_url_never_reaches_a_message(tmp_path):
    path = write(tmp_path, PROM + "    ok_actions: ['https://u:secret@h:99999/']\n")
    err = refused(path, line=6, alarm="a1", reason="bad port")
    assert "secret" not in str(err)
    path = write(tmp_path, PROM + "    ok_actions: ['https://u:secret@h/ x']\n")
    err = refused(path, line=6, alarm="a1", reason="contains spaces")
    assert "secret" not in str(err)


def test_non_string_key_is_unknown(tmp_path):
    refused(write(tmp_path, PROM + "    1: x\n"), line=6, alarm="a1",
            reason="unknown key 1; known keys:")


# -- Aodh's nested form ----------------------------------------------------------------
AODH_PROM = """\
alarms:
  - id: p1
    type: prometheus
    prometheus_rule:
      query: sum(up)
      comparison_operator: lt
      threshold: 3
"""
AODH_THRESH = """\
alarms:
  - id: t2
    type: threshold
    threshold_rule:
      meter_name: host.load.1min
      comparison_operator: ge
      threshold: 4
      evaluation_periods: 2
      resources: [r1, r2]
      aggregation_method: avg
"""


def test_aodh_nested_forms_are_merged(tmp_path):
    write(tmp_path, AODH_PROM, "a.yaml")
    write(tmp_path, AODH_THRESH, "b.yaml")
    alarms = load_alarm_dir(str(tmp_path)).by_id()
    assert alarms["p1"] == AlarmDefinition(id="p1", type="prometheus", query="sum(up)",
                                           comparison_operator="lt", threshold=3.0)
    assert alarms["t2"] == AlarmDefinition(
        id="t2", type="threshold", meter="host.load.1min", comparison_operator="ge",
        threshold=4.0, evaluation_periods=2, resources=("r1", "r2"), aggregation="mean")


@pytest.mark.parametrize(("text", "line", "reason"), [
    (AODH_PROM + "    threshold: 4\n", 7,
     "'prometheus_rule.threshold' sets 'threshold', already given as 'threshold' at line 8"),
    (AODH_PROM + "      threshold: 4\n", 8,
     "key 'threshold' given twice in one mapping (first at line 7)"),
    (AODH_PROM.replace("    type: prometheus\n", "    type: threshold\n    meter: m\n"), 5,
     "'prometheus_rule' given for a threshold alarm"),
    (AODH_PROM + "      period: 60\n", 8,
     ("unknown key 'period' in 'prometheus_rule'; known keys: comparison_operator, query, "
     "threshold")),
    (AODH_PROM + "    threshold_rule: {}\n", 8, ("give either 'prometheus_rule' or "
                                              "'threshold_rule', not both")),
    (AODH_PROM.replace("      comparison_operator: lt\n", "      comparison_operator: less\n"),
     6, "invalid 'prometheus_rule.comparison_operator': 'less' is not one of"),
    ("alarms:\n  - id: p1\n    type: prometheus\n    prometheus_rule: [1]\n", 4,
     "'prometheus_rule' must be a mapping, got a list"),
])
def test_aodh_nested_form_refusals(tmp_path, text, line, reason):
    refused(write(tmp_path, text), line=line, alarm="p1", reason=reason)


def test_aodh_threshold_rule_refusals(tmp_path):
    text = AODH_THRESH.replace("      aggregation_method: avg\n", "      statistic: avg\n")
    refused(write(tmp_path, text), line=10, alarm="t2",
            reason="unknown key 'statistic' in 'threshold_rule'; known keys: "
                   "aggregation_method, comparison_operator, evaluation_periods, meter_name, "
                   "resources, threshold")
    text = AODH_THRESH + "    meter: other\n"
    refused(write(tmp_path, text), line=5, alarm="t2",
            reason="'threshold_rule.meter_name' sets 'meter', already given as 'meter' at "
                   "line 11")


# -- duplicates -------------------------------------------------------------------------
def test_duplicate_id_in_one_file_names_both_lines(tmp_path):
    path = write(tmp_path, PROM + PROM.replace("alarms:\n", ""))
    refused(path, line=6, alarm="a1", reason=f"duplicate alarm id (also defined at {path}:2)")


def test_duplicate_id_across_files_names_both_places(tmp_path):
    first = write(tmp_path, PROM, "10-first.yaml")
    second = write(tmp_path, THRESH + PROM.replace("alarms:\n", ""), "20-second.yml")
    refused(second, line=6, alarm="a1",
            reason=f"duplicate alarm id (also defined at {first}:2)")


# -- the directory ----------------------------------------------------------------------
def test_empty_directory_has_no_alarm(tmp_path):
    alarms = load_alarm_dir(str(tmp_path))
    assert alarms == AlarmSet(directory=str(tmp_path), files=(), alarms=())
    assert alarms.by_id() == {} and alarms.by_interval() == {}


def test_only_yaml_files_are_read_in_sorted_order(tmp_path):
    write(tmp_path, THRESH, "b.yml")
    write(tmp_path, PROM, "a.yaml")
    for name in ("README", "alarms.yaml.bak", "x.json", ".hidden.yaml", "a.yaml~"):
        (tmp_path / name).write_text("not: [yaml")
    (tmp_path / "sub.yaml").mkdir()
    write(tmp_path / "sub.yaml", PROM.replace("a1", "nested"))
    alarms = load_alarm_dir(str(tmp_path))
    assert alarms.files == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yml"))
    assert [a.id for a in alarms.alarms] == ["a1", "t1"]


@pytest.mark.parametrize("text", ["", "# all commented out\n", "alarms: []\n", "alarms:\n"])
def test_a_file_without_alarms_defines_none(tmp_path, text):
    path = write(tmp_path, text)
    assert load_alarm_file(path) == ()
    assert load_alarm_dir(str(tmp_path)).files == (path,)


def test_missing_directory(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(AlarmConfigError, match=f"^{path}: directory not found$"):
        load_alarm_dir(path)


def test_a_file_is_not_a_directory(tmp_path):
    path = write(tmp_path, PROM)
    with pytest.raises(AlarmConfigError, match=f"^{path}: not a directory$"):
        load_alarm_dir(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, PROM)
    os.chmod(path, 0)
    try:
        refused(path, line=None, alarm=None, reason="cannot read file")
    finally:
        os.chmod(path, 0o600)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    refused(str(path), line=None, alarm=None, reason="invalid YAML")


# -- good files -------------------------------------------------------------------------
FULL = """\
alarms:
  - id: web-cpu-high
    name: Web CPU high
    type: prometheus
    description: busy web tier
    enabled: true
    severity: critical
    query: 'avg(rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
    comparison_operator: gt
    threshold: 0.8
    evaluation_periods: 3
    evaluation_interval: 30
    repeat_actions: true
    alarm_actions: ["log://", "https://hooks.example.com/alarm", "log://"]
    ok_actions: ["log://"]
    insufficient_data_actions: ["http://127.0.0.1:8080/x?timeout=2.5"]
  - id: disabled
    type: threshold
    enabled: false
    meter: host.load.1min
    threshold: 4
    aggregation: max
"""


def test_every_field_is_read(tmp_path):
    path = write(tmp_path, FULL)
    alarms = load_alarm_dir(str(tmp_path))
    web, off = alarms.alarms
    assert web == AlarmDefinition(
        id="web-cpu-high", name="Web CPU high", type="prometheus", description="busy web tier",
        enabled=True, severity="critical",
        query='avg(rate(node_cpu_seconds_total{mode!="idle"}[5m]))', comparison_operator="gt",
        threshold=0.8, evaluation_periods=3, evaluation_interval=30, repeat_actions=True,
        alarm_actions=("log://", "https://hooks.example.com/alarm"), ok_actions=("log://",),
        insufficient_data_actions=("http://127.0.0.1:8080/x?timeout=2.5",))
    assert web.location == f"{path}:2" and off.location == f"{path}:17"
    assert (off.name, off.resources, off.aggregation, off.severity, off.comparison_operator,
            off.evaluation_interval, off.repeat_actions) == (
                "disabled", ("*",), "max", "low", "eq", 60, False)
    assert isinstance(off.threshold, float)
    assert alarms.by_id() == {"web-cpu-high": web, "disabled": off}
    assert alarms.by_interval() == {30: [web]}  # enabled alarms only
    assert web.actions_for("alarm") == web.alarm_actions
    assert web.actions_for("insufficient data") == web.insufficient_data_actions


def test_by_interval_groups_shortest_first(tmp_path):
    text = PROM + "    evaluation_interval: 300\n" + THRESH.replace("alarms:\n", "")
    write(tmp_path, text)
    groups = load_alarm_dir(str(tmp_path)).by_interval()
    assert [(k, [a.id for a in v]) for k, v in groups.items()] == [(60, ["t1"]), (300, ["a1"])]


def test_definitions_built_in_code_are_checked_too():
    with pytest.raises(ValueError, match="invalid 'severity'"):
        AlarmDefinition(id="x", type="prometheus", query="up", threshold=1, severity="high")
    with pytest.raises(ValueError, match="needs a non-empty 'query'"):
        AlarmDefinition(id="x", type="prometheus", threshold=1)
    with pytest.raises(ValueError, match="'resources' applies to threshold alarms only"):
        AlarmDefinition(id="x", type="prometheus", query="up", threshold=1, resources=("r",))
    with pytest.raises(ValueError, match="'query' applies to prometheus alarms only"):
        AlarmDefinition(id="x", type="threshold", meter="m", query="up", threshold=1)
    with pytest.raises(ValueError, match="unknown alarm state"):
        AlarmDefinition(id="x", type="threshold", meter="m", threshold=1).actions_for("bad")
    built = AlarmDefinition(id="x", type="threshold", meter="m", threshold=1,
                            alarm_actions=["log://"], location="here")
    assert built.name == "x" and built.alarm_actions == ("log://",)
    assert built == AlarmDefinition(id="x", type="threshold", meter="m", threshold=1.0,
                                    alarm_actions=("log://",))


def test_checks_constants_match_aodh():
    assert checks.OPERATORS == ("lt", "le", "eq", "ne", "ge", "gt")
    assert checks.SEVERITIES == ("low", "moderate", "critical")


def test_the_shipped_example_loads():
    alarms = load_alarm_dir(str(ETC_ALARMS))
    assert alarms.files == (str(ETC_ALARMS / "example.yaml"),)
    by_id = alarms.by_id()
    assert {a.type for a in alarms.alarms} == {"prometheus", "threshold"}
    assert by_id["host-memory-low"].aggregation == "min"  # the Aodh nested form
    assert not by_id["host-memory-low"].enabled
    assert all(a.alarm_actions for a in alarms.alarms)
