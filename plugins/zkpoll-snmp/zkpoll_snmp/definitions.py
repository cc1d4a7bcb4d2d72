"""Generic SNMP meters defined in YAML, no MIB files and no code needed.

Files ``*.yaml``/``*.yml`` in ``[snmp] definitions_dirs`` each hold a list
of meters (README.md, "Generic meters")::

    - name: ups.battery.charge        # the meter
      type: gauge                     # gauge, delta or cumulative
      unit: "%"
      oid: 1.3.6.1.2.1.33.1.2.4.0     # a scalar instance ...
    - name: interface.hc.in.bytes
      type: cumulative
      unit: B
      oid: 1.3.6.1.2.1.31.1.1.1.6     # ... or, with table: true, a column
      table: true
      metadata: {name: 1.3.6.1.2.1.31.1.1.1.1}
      resource_id_suffix: name        # host.<name>; default the row index

:func:`load_snmp_pollsters` is the ``zkpoll.pollster_sets`` entry point: an
invalid meter is logged with its file, line and reason and counted as a
load failure; the others load.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from zkpoll.exceptions import ConfigError
from zkpoll.plugin import PollsterSet
from zkpoll.sample import TYPES
from zkpoll.yaml_lines import node_line, read_yaml, yaml_files
from zkpoll_snmp.meters import CONVERTERS, Field, MeterDef
from zkpoll_snmp.options import snmp_options

__all__ = ["load_definitions", "load_snmp_pollsters", "parse_meter"]

LOG = logging.getLogger(__name__)

_OID = re.compile(r"^\.?\d+(\.\d+)+$")
_NAME = re.compile(r"^[\w-]+(\.[\w-]+)*$")
_KEYS = frozenset({"name", "type", "sample_type", "unit", "oid", "table", "value_type",
                   "scale", "metadata", "resource_id_suffix"})
_VALUE_TYPES = ("int", "float", "number")


def _oid(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _OID.match(value):
        raise ConfigError(f"{what} must be a numeric OID like 1.3.6.1.2.1.1.3.0, not "
                          f"{value!r}")
    return value.lstrip(".")


def parse_meter(raw: Any) -> MeterDef:
    """One meter from its YAML mapping; ConfigError naming the key at fault."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping, not {type(raw).__name__}")
    unknown = sorted(map(str, set(raw) - _KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; expected "
                          f"{', '.join(sorted(_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name must be a dotted meter name, not {name!r}")
    kind = raw.get("type", raw.get("sample_type"))
    if kind not in TYPES:
        raise ConfigError(f"type must be one of {', '.join(sorted(TYPES))}, not {kind!r}")
    unit = raw.get("unit")
    if not isinstance(unit, str) or not unit:
        raise ConfigError("unit is required (a string)")
    table = raw.get("table", False)
    if not isinstance(table, bool):
        raise ConfigError(f"table must be true or false, not {table!r}")
    value_type = raw.get("value_type", "number")
    if value_type not in _VALUE_TYPES:
        raise ConfigError(f"value_type must be one of {', '.join(_VALUE_TYPES)}, not "
                          f"{value_type!r}")
    scale = raw.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise ConfigError(f"scale must be a number, not {scale!r}")
    fields = _metadata(raw.get("metadata") or {})
    suffix = raw.get("resource_id_suffix", "index" if table else None)
    if suffix is not None:
        if not table:
            raise ConfigError("resource_id_suffix needs table: true")
        if suffix != "index" and suffix not in {f.name for f in fields}:
            raise ConfigError(f"resource_id_suffix must be 'index' or a metadata key, not "
                              f"{suffix!r}")
    return MeterDef(name, kind, unit, _oid(raw.get("oid"), "oid"), table=table,
                    convert=value_type, metadata=fields, suffix=suffix,
                    scale=float(scale) if scale is not None else None)


def _metadata(raw: Any) -> tuple[Field, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"metadata must be a mapping of name to OID, not "
                          f"{type(raw).__name__}")
    fields = []
    for key, value in raw.items():
        if isinstance(value, Mapping):
            convert = value.get("type", "str")
            if convert not in CONVERTERS:
                raise ConfigError(f"metadata {key}: type must be one of "
                                  f"{', '.join(sorted(CONVERTERS))}, not {convert!r}")
            fields.append(Field(str(key), _oid(value.get("oid"), f"metadata {key}: oid"),
                                convert))
        else:
            fields.append(Field(str(key), _oid(value, f"metadata {key}")))
    return tuple(fields)


def load_definitions(dirs: Sequence[str]) -> tuple[list[MeterDef], dict[str, str]]:
    """Every valid meter of ``dirs``, and failures by ``snmp:<file>[:<name>]``."""
    meters: list[MeterDef] = []
    failures: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in yaml_files(dirs, "SNMP definitions"):
        try:
            root, data = read_yaml(path, lambda reason, line, p=path: ConfigError(
                f"{p}{f':{line}' if line else ''}: {reason}"))
            if data is not None and not isinstance(data, list):
                raise ConfigError(f"{path}: expected a list of meters, not "
                                  f"{type(data).__name__}")
        except ConfigError as exc:
            failures[f"snmp:{path}"] = str(exc)
            LOG.error("SNMP meter definitions of %s are DISABLED: %s", path, exc)
            continue
        for index, raw in enumerate(data or []):
            node = root.value[index] if root is not None else None
            line = node_line(node)
            label = raw.get("name") if isinstance(raw, Mapping) else None
            where = f"{path}:{line}: meter {label or f'#{index + 1}'!s}"
            try:
                meter = parse_meter(raw)
                if meter.name in seen:
                    raise ConfigError(f"already defined in {seen[meter.name]}")
            except ConfigError as exc:
                failures[f"snmp:{path}:{label or index + 1}"] = f"{where}: {exc}"
                LOG.error("SNMP meter DISABLED: %s: %s", where, exc)
                continue
            seen[meter.name] = f"{path}:{line}"
            meters.append(meter)
    return meters, failures


def load_snmp_pollsters(conf: Any, namespaces: Sequence[str]) -> PollsterSet:
    """The ``zkpoll.pollster_sets`` entry point: generic meters, in ``central``."""
    from zkpoll_snmp.pollster import (
        SnmpPollster,  # the client needs ezsnmp; load lazily
    )

    if "central" not in namespaces:
        return PollsterSet()
    meters, failures = load_definitions(snmp_options(conf).definitions_dirs or [])
    built = PollsterSet(failures=failures)
    for meter in meters:
        built.pollsters.append(("central", meter.name, SnmpPollster(conf, meter)))
    if meters:
        LOG.info("loaded %d generic SNMP meter(s): %s", len(meters),
                 ", ".join(m.name for m in meters))
    return built
