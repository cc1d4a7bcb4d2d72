"""Alarm definitions: the YAML files of an alarm directory, checked.

Every ``*.yaml`` / ``*.yml`` file directly in the directory is read, in
sorted order (names starting with ``.`` and anything that is not a regular
file are skipped; other names are ignored)::

    alarms:
      - id: web-cpu-high                    # required, [A-Za-z0-9][A-Za-z0-9._-]{0,127}
        type: prometheus                    # required: prometheus | threshold
        query: 'avg(rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
        comparison_operator: gt             # lt le eq ne ge gt (default eq)
        threshold: 0.8                      # required, a finite number
        evaluation_periods: 3               # consecutive evaluations (default 1)
        evaluation_interval: 60             # seconds (default 60)
        alarm_actions: ["log://", "https://hooks.example.com/alarm"]

Aodh's nested forms are accepted too: ``prometheus_rule: {query,
comparison_operator, threshold}`` and ``threshold_rule: {meter_name,
comparison_operator, threshold, evaluation_periods, resources,
aggregation_method}`` are merged into the flat fields (a field given both
ways is an error).  Anything invalid raises
:class:`~zkpoll.exceptions.AlarmConfigError` naming the file, the line and
the alarm: unknown keys (with the list of known ones), a key given twice
in one mapping, a bad value, an alarm id used twice (naming both places).
An empty file, or ``alarms: []``, defines no alarm.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, NoReturn

import yaml

from zkpoll.alarm.checks import (
    AGGREGATIONS,
    MAX_EVALUATION_PERIODS,
    MAX_INTERVAL,
    OPERATORS,
    SEVERITIES,
    TYPES,
    FieldError,
    check_actions,
    check_alarm_id,
    check_bool,
    check_choice,
    check_count,
    check_name,
    check_resources,
    check_text,
    check_threshold,
)
from zkpoll.exceptions import AlarmConfigError
from zkpoll.yaml_lines import (
    describe,
    duplicate_key,
    key_lines,
    node_line,
    read_yaml,
    value_node,
)

__all__ = ["AlarmDefinition", "AlarmSet", "load_alarm_dir", "load_alarm_file"]

YAML_SUFFIXES = (".yaml", ".yml")


def _check_meter(value: object) -> str:
    text = check_text(value)
    if any(ch.isspace() for ch in text):
        raise ValueError(f"{text!r} contains spaces")
    return text


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "id": check_alarm_id,
    "name": check_name,
    "type": lambda v: check_choice(v, TYPES),
    "description": check_text,
    "enabled": check_bool,
    "severity": lambda v: check_choice(v, SEVERITIES),
    "comparison_operator": lambda v: check_choice(v, OPERATORS),
    "threshold": check_threshold,
    "evaluation_periods": lambda v: check_count(v, 1, MAX_EVALUATION_PERIODS),
    "evaluation_interval": lambda v: check_count(v, 1, MAX_INTERVAL, "seconds"),
    "repeat_actions": check_bool,
    "alarm_actions": check_actions,
    "ok_actions": check_actions,
    "insufficient_data_actions": check_actions,
    "query": check_text,
    "meter": _check_meter,
    "resources": check_resources,
    "aggregation": lambda v: check_choice(v, AGGREGATIONS, {"avg": "mean"}),
}
_THRESHOLD_ONLY = ("meter", "resources", "aggregation")
_PROMETHEUS_ONLY = ("query",)
#: Aodh's nested rule forms: nested key -> flat field.
_RULES = {
    "prometheus_rule": {"query": "query", "comparison_operator": "comparison_operator",
                        "threshold": "threshold"},
    "threshold_rule": {"meter_name": "meter", "comparison_operator": "comparison_operator",
                       "threshold": "threshold", "evaluation_periods": "evaluation_periods",
                       "resources": "resources", "aggregation_method": "aggregation"},
}
_KNOWN_KEYS = ", ".join(sorted([*_CHECKS, *_RULES]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class AlarmDefinition:
    """One alarm: what to evaluate, when it breaches, whom to tell.

    Built by :func:`load_alarm_dir`, or in code (checked the same way:
    ValueError on a bad field).  ``name`` defaults to ``id``; ``location``
    (``file:line``) is not compared.
    """

    id: str
    type: str
    threshold: float
    name: str = ""
    description: str = ""
    enabled: bool = True
    severity: str = "low"
    comparison_operator: str = "eq"
    evaluation_periods: int = 1
    evaluation_interval: int = 60
    repeat_actions: bool = False
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    query: str = ""
    meter: str = ""
    resources: tuple[str, ...] = ("*",)
    aggregation: str = "last"
    location: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.name == "":
            object.__setattr__(self, "name", self.id)
        for key, check in _CHECKS.items():
            try:
                value = check(getattr(self, key))
            except (TypeError, ValueError) as exc:
                raise FieldError(key, f"invalid '{key}': {exc}") from exc
            object.__setattr__(self, key, value)  # frozen: normalise once, here
        if self.type == "prometheus":
            if not self.query.strip():
                raise FieldError("query", "a prometheus alarm needs a non-empty 'query' "
                                          "(PromQL)")
            for key in _THRESHOLD_ONLY:
                if getattr(self, key) != _DEFAULTS[key]:
                    raise FieldError(key, f"'{key}' applies to threshold alarms only")
        else:
            if not self.meter:
                raise FieldError("meter", "a threshold alarm needs a 'meter'")
            if self.query:
                raise FieldError("query", "'query' applies to prometheus alarms only")

    def actions_for(self, state: str) -> tuple[str, ...]:
        """The action URLs of ``state`` ("ok", "alarm" or "insufficient data")."""
        if state == "alarm":
            return self.alarm_actions
        if state == "ok":
            return self.ok_actions
        if state == "insufficient data":
            return self.insufficient_data_actions
        raise ValueError(f"unknown alarm state {state!r}")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AlarmDefinition)}


@dataclasses.dataclass(frozen=True)
class AlarmSet:
    """The alarms of a directory, in file order then entry order."""

    directory: str
    files: tuple[str, ...]
    alarms: tuple[AlarmDefinition, ...]

    def by_id(self) -> dict[str, AlarmDefinition]:
        """Every alarm (enabled or not) by id."""
        return {alarm.id: alarm for alarm in self.alarms}

    def by_interval(self) -> dict[int, list[AlarmDefinition]]:
        """The enabled alarms grouped by evaluation interval (shortest first)."""
        groups: dict[int, list[AlarmDefinition]] = {}
        for alarm in self.alarms:
            if alarm.enabled:
                groups.setdefault(alarm.evaluation_interval, []).append(alarm)
        return dict(sorted(groups.items()))


def load_alarm_dir(path: str) -> AlarmSet:
    """Read and check every alarm file of the directory ``path``.

    :raises AlarmConfigError: the directory is missing or unreadable, a file
        is unreadable or not YAML, an alarm is invalid, or an id is used twice.
    """
    if not os.path.isdir(path):
        reason = "not a directory" if os.path.exists(path) else "directory not found"
        raise AlarmConfigError(path, reason)
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise AlarmConfigError(path, f"cannot read directory: {exc.strerror or exc}") from exc
    files = tuple(os.path.join(path, name) for name in names
                  if name.endswith(YAML_SUFFIXES) and not name.startswith(".")
                  and os.path.isfile(os.path.join(path, name)))
    alarms: list[AlarmDefinition] = []
    seen: dict[str, AlarmDefinition] = {}
    for file in files:
        for alarm in load_alarm_file(file):
            if alarm.id in seen:
                file_path, _, line = alarm.location.rpartition(":")
                raise AlarmConfigError(
                    file_path, f"duplicate alarm id (also defined at {seen[alarm.id].location})",
                    alarm=alarm.id, line=int(line))
            seen[alarm.id] = alarm
            alarms.append(alarm)
    return AlarmSet(directory=path, files=files, alarms=tuple(alarms))


def load_alarm_file(path: str) -> tuple[AlarmDefinition, ...]:
    """Read and check one alarm file (duplicate ids within it included).

    :raises AlarmConfigError: as :func:`load_alarm_dir`.
    """
    root, data = read_yaml(path, lambda reason, line: AlarmConfigError(path, reason, line=line),
                           warn_duplicates=False)
    if data is None:
        return ()
    twice = duplicate_key(root)
    if twice is not None:
        raise AlarmConfigError(path, _twice(twice), line=twice[2])
    if not isinstance(data, dict):
        raise AlarmConfigError(
            path, f"expected a mapping with an 'alarms' list, got {describe(data)}",
            line=node_line(root))
    keys = key_lines(root)
    for key in data:
        if key != "alarms":
            raise AlarmConfigError(path, f"unknown top-level key {key!r}; known keys: alarms",
                                   line=keys.get(str(key), node_line(root)))
    if "alarms" not in data:
        raise AlarmConfigError(path, "no 'alarms' list", line=node_line(root))
    node = value_node(root, "alarms")
    items = data["alarms"]
    if items is None:
        return ()
    if not isinstance(items, list):
        raise AlarmConfigError(path, f"'alarms' must be a list, got {describe(items)}",
                               line=node_line(node))
    nodes = node.value if isinstance(node, yaml.SequenceNode) else [node] * len(items)
    alarms: dict[str, AlarmDefinition] = {}
    for number, (raw, item_node) in enumerate(zip(items, nodes), 1):
        alarm = _Entry(path, number, raw, item_node).build()
        if alarm.id in alarms:
            raise AlarmConfigError(
                path, f"duplicate alarm id (also defined at {alarms[alarm.id].location})",
                alarm=alarm.id, line=node_line(item_node))
        alarms[alarm.id] = alarm
    return tuple(alarms.values())


def _twice(duplicate: tuple[str, int, int]) -> str:
    key, first, _ = duplicate
    return f"key {key!r} given twice in one mapping (first at line {first})"


class _Entry:
    """One raw entry of an ``alarms`` list, with the lines of its keys."""

    def __init__(self, path: str, number: int, raw: Any, node: yaml.Node | None) -> None:
        self.path = path
        self.line = node_line(node)
        self.alarm: str | None = None
        if not isinstance(raw, dict):
            self.fail(f"alarm #{number} must be a mapping, got {describe(raw)}")
        if "id" not in raw:
            self.fail(f"alarm #{number} has no 'id'")
        self.raw: dict[Any, Any] = raw
        self.node = node
        self.keys = key_lines(node)
        self.fields: dict[str, Any] = {}
        self.lines: dict[str, int | None] = {}
        self.names: dict[str, str] = {}  # field -> key as written (e.g. threshold_rule.x)

    def fail(self, reason: str, key: str | None = None, line: int | None = None) -> NoReturn:
        """Raise the error of this entry, at ``line``, else at ``key``'s line, else its own."""
        if line is None:
            line = self.lines.get(key, self.line) if key is not None else self.line
        raise AlarmConfigError(self.path, reason, alarm=self.alarm, line=line)

    def build(self) -> AlarmDefinition:
        self.add("id", "id", self.raw["id"], self.keys.get("id", self.line))
        self.alarm = self.check("id", "id", self.raw["id"])  # valid from here on
        twice = duplicate_key(self.node)
        if twice is not None:
            self.fail(_twice(twice), line=twice[2])
        for key, value in self.raw.items():
            if key in _RULES or key == "id":
                continue
            if not isinstance(key, str) or key not in _CHECKS:
                self.fail(f"unknown key {key!r}; known keys: {_KNOWN_KEYS}",
                          line=self.keys.get(str(key)))
            self.add(key, key, value, self.keys.get(key, self.line))
        rules = [key for key in _RULES if key in self.raw]
        if len(rules) > 1:
            self.fail("give either 'prometheus_rule' or 'threshold_rule', not both",
                      line=self.keys.get(rules[1]))
        for rule in rules:
            self.merge_rule(rule)
        for key in ("type", "threshold"):
            if key not in self.fields:
                self.fail(f"'{key}' is required")
        kind = self.check("type", "type", self.fields["type"])
        if rules and rules[0] != f"{kind}_rule":
            self.fail(f"'{rules[0]}' given for a {kind} alarm", line=self.keys.get(rules[0]))
        self.check_kind(kind)
        values = {key: self.check(key, self.names[key], value)
                  for key, value in self.fields.items()}
        try:
            return AlarmDefinition(**values, location=f"{self.path}:{self.line}")
        except FieldError as exc:  # a rule involving several fields
            self.fail(str(exc), exc.key)

    def add(self, field: str, name: str, value: Any, line: int | None) -> None:
        if field in self.fields:
            self.fail(f"'{name}' sets '{field}', already given as '{self.names[field]}' "
                      f"at line {self.lines[field]}", line=line)
        self.fields[field] = value
        self.lines[field] = line
        self.names[field] = name

    def merge_rule(self, rule: str) -> None:
        nested = self.raw[rule]
        node = value_node(self.node, rule)
        if not isinstance(nested, dict):
            self.fail(f"'{rule}' must be a mapping, got {describe(nested)}",
                      line=self.keys.get(rule))
        twice = duplicate_key(node)
        if twice is not None:
            self.fail(_twice(twice), line=twice[2])
        lines = key_lines(node)
        for key, value in nested.items():
            field = _RULES[rule].get(key) if isinstance(key, str) else None
            line = lines.get(str(key), node_line(node))
            if field is None:
                known = ", ".join(sorted(_RULES[rule]))
                self.fail(f"unknown key {key!r} in '{rule}'; known keys: {known}", line=line)
            self.add(field, f"{rule}.{key}", value, line)

    def check_kind(self, kind: str) -> None:
        needed = "query" if kind == "prometheus" else "meter"
        if needed not in self.fields:
            self.fail(f"'{needed}' is required for a {kind} alarm")
        other_kind = "threshold" if kind == "prometheus" else "prometheus"
        for key in _THRESHOLD_ONLY if kind == "prometheus" else _PROMETHEUS_ONLY:
            if key in self.fields:
                self.fail(f"'{self.names[key]}' applies to {other_kind} alarms only", key)

    def check(self, key: str, name: str, value: Any) -> Any:
        try:
            return _CHECKS[key](value)
        except (TypeError, ValueError) as exc:
            self.fail(f"invalid '{name}': {exc}", key)
