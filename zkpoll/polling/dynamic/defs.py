"""Dynamic pollster definitions: Ceilometer's YAML format, checked.

:func:`parse_definition` turns one YAML mapping into a :class:`Definition`
or raises :class:`~zkpoll.exceptions.ConfigError` naming the file, the
pollster and the reason.  The keys and what zkpoll does with them are
listed in ``docs/plugins.md``; :data:`UNSUPPORTED` holds the OpenStack-only
(and code-loading) keys, refused with the reason and what to use instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from zkpoll.exceptions import ConfigError
from zkpoll.polling.dynamic.expr import Expression, ExpressionError
from zkpoll.sample import TYPES

__all__ = ["HANDLERS", "UNSUPPORTED", "Definition", "MultiMetric", "parse_definition"]

#: Response handlers, as in Ceilometer's ``response_handlers``.
HANDLERS = ("json", "xml", "text")

_INSTEAD = ("give url_path as an absolute URL, or as a path joined to each of the "
            "source's resources")
#: Keys zkpoll refuses, with the reason.
UNSUPPORTED: Mapping[str, str] = {
    "endpoint_type": "it looks the base URL up in the OpenStack Keystone catalog, which "
                     f"zkpoll does not use; {_INSTEAD}",
    "barbican_secret_id": "it reads credentials from OpenStack Barbican; put them in headers",
    "module": "it imports a Python module to authenticate; put credentials in headers",
    "authentication_object": "it instantiates a Python class to authenticate; put "
                             "credentials in headers",
    "authentication_parameters": "it feeds a Python authentication class; put credentials "
                                 "in headers",
    "extra_metadata_fields": "it enriches samples from other OpenStack APIs through "
                             "Keystone, which zkpoll does not use",
    "extra_metadata_fields_cache_seconds": "it belongs to extra_metadata_fields (OpenStack only)",
    "extra_metadata_fields_skip": "it belongs to extra_metadata_fields (OpenStack only)",
}
_KEYS = frozenset({
    "name", "sample_type", "unit", "value_attribute", "url_path", "host_command",
    "response_entries_key", "metadata_fields", "metadata_mapping", "preserve_mapped_metadata",
    "skip_sample_values", "value_mapping", "default_value", "headers", "timeout",
    "resource_id_attribute", "user_id_attribute", "project_id_attribute",
    "next_sample_url_attribute", "response_handlers", "namespaces"})
_NAME = re.compile(r"^[\w-]+(\.[\w-]+)*(\.\{[\w-]+\})?$")
_MULTI_NAME = re.compile(r"\.\{([\w-]+)\}$")
_MULTI_VALUE = re.compile(r"^\[(\w+)\]((?:\.\w+)+)$")


@dataclass(frozen=True)
class MultiMetric:
    """``name: x.{attr}`` with ``value_attribute: [list_key].path``."""

    list_key: str
    name_attribute: str
    value_path: str


@dataclass(frozen=True)
class Definition:
    """One checked dynamic pollster definition."""

    path: str
    name: str
    sample_type: str
    unit: str
    value: Expression | None
    multi: MultiMetric | None
    url_path: str | None = None
    host_command: str | None = None
    response_entries_key: Expression | None = None
    metadata_fields: tuple[Expression, ...] = ()
    metadata_mapping: Mapping[str, str] = field(default_factory=dict)
    preserve_mapped_metadata: bool = True
    skip_sample_values: tuple[Any, ...] = ()
    value_mapping: Mapping[Any, Any] = field(default_factory=dict)
    default_value: Any = -1
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = 30.0
    resource_id_attribute: Expression = field(default_factory=lambda: Expression("id"))
    user_id_attribute: Expression = field(default_factory=lambda: Expression("user_id"))
    project_id_attribute: Expression = field(default_factory=lambda: Expression("project_id"))
    next_sample_url_attribute: Expression | None = None
    response_handlers: tuple[str, ...] = ("json",)
    namespaces: tuple[str, ...] = ("central",)

    @property
    def absolute_url(self) -> bool:
        """Whether ``url_path`` is a full URL (else it is joined to each resource)."""
        return self.url_path is not None and bool(urlsplit(self.url_path).scheme)


class _Refused(Exception):
    """One problem with one key (internal: becomes a ConfigError)."""


def _str(raw: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise _Refused(f"{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _Refused(f"{key} must be a non-empty string, not {value!r}")
    return value


def _expr(raw: Mapping[str, Any], key: str, default: str | None = None) -> Expression | None:
    text = raw.get(key, default)
    if text is None:
        return None
    try:
        return Expression(text)
    except ExpressionError as exc:
        raise _Refused(f"{key}: {exc}") from None


def _mapping(raw: Mapping[str, Any], key: str) -> dict[Any, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise _Refused(f"{key} must be a mapping, not {type(value).__name__}")
    return dict(value)


def _list(raw: Mapping[str, Any], key: str, default: Any = ()) -> list[Any]:
    value = raw.get(key, default)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise _Refused(f"{key} must be a list, not {type(value).__name__}")
    return list(value)


def _timeout(raw: Mapping[str, Any]) -> float | None:
    if "timeout" in raw and raw["timeout"] is None:
        return None  # Ceilometer: no client-side timeout (zkpoll: the polling timeout)
    value = raw.get("timeout", 30)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _Refused(f"timeout must be a number of seconds > 0, not {value!r}")
    return float(value)


def _target(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    url_path, command = _str(raw, "url_path"), _str(raw, "host_command")
    if url_path and command:
        raise _Refused("give url_path (an HTTP API) or host_command (a local command), "
                       "not both")
    if not url_path and not command:
        raise _Refused("url_path (an HTTP API) or host_command (a local command) is "
                       "required")
    if url_path and urlsplit(url_path).scheme not in ("", "http", "https"):
        raise _Refused(f"url_path {url_path!r} must be an http(s) URL or a relative path")
    if command and "next_sample_url_attribute" in raw:
        raise _Refused("next_sample_url_attribute is not supported with host_command "
                       "(it would build a shell command from the command's output)")
    return url_path, command


def _value(raw: Mapping[str, Any], name: str) -> tuple[Expression | None, MultiMetric | None]:
    text = _str(raw, "value_attribute", required=True)
    assert text is not None
    multi_name = _MULTI_NAME.search(name)
    if multi_name is None:
        return _expr(raw, "value_attribute"), None
    match = _MULTI_VALUE.match(text.strip())
    if match is None:
        raise _Refused(f"a multi-metric pollster ({name}) needs value_attribute like "
                       f"'[list_key].attribute', not {text!r}")
    return None, MultiMetric(match.group(1), multi_name.group(1), match.group(2)[1:])


def _fields(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of a Definition except path and name."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _Refused(f"unknown key(s) {', '.join(unknown)}")
    name = raw["name"]
    if raw.get("sample_type") not in TYPES:
        raise _Refused(f"sample_type must be one of {', '.join(sorted(TYPES))}, not "
                       f"{raw.get('sample_type')!r}")
    url_path, command = _target(raw)
    value, multi = _value(raw, name)
    handlers = tuple(_list(raw, "response_handlers", ["json"])) or ("json",)
    bad = [h for h in handlers if h not in HANDLERS]
    if bad:
        raise _Refused(f"response_handlers {bad} not in {list(HANDLERS)}")
    headers = {str(k): str(v) for k, v in _mapping(raw, "headers").items()}
    fields = [f for f in _list(raw, "metadata_fields") if f is not None]
    try:
        metadata_fields = tuple(Expression(f) for f in fields)
    except ExpressionError as exc:
        raise _Refused(f"metadata_fields: {exc}") from None
    namespaces = tuple(_list(raw, "namespaces")) or (("compute",) if command else ("central",))
    if not all(isinstance(ns, str) and ns for ns in namespaces):
        raise _Refused(f"namespaces must be names, not {list(namespaces)!r}")
    preserve = raw.get("preserve_mapped_metadata", True)
    if not isinstance(preserve, bool):
        raise _Refused(f"preserve_mapped_metadata must be true or false, not {preserve!r}")
    return {
        "sample_type": raw["sample_type"], "unit": _str(raw, "unit", required=True),
        "value": value, "multi": multi, "url_path": url_path, "host_command": command,
        "response_entries_key": _expr(raw, "response_entries_key"),
        "metadata_fields": metadata_fields,
        "metadata_mapping": {str(k): str(v) for k, v in _mapping(raw, "metadata_mapping").items()},
        "preserve_mapped_metadata": preserve,
        "skip_sample_values": tuple(_list(raw, "skip_sample_values")),
        "value_mapping": _mapping(raw, "value_mapping"),
        "default_value": raw.get("default_value", -1), "headers": headers,
        "timeout": _timeout(raw),
        "resource_id_attribute": _expr(raw, "resource_id_attribute", "id"),
        "user_id_attribute": _expr(raw, "user_id_attribute", "user_id"),
        "project_id_attribute": _expr(raw, "project_id_attribute", "project_id"),
        "next_sample_url_attribute": _expr(raw, "next_sample_url_attribute"),
        "response_handlers": handlers, "namespaces": namespaces,
    }


def parse_definition(raw: Any, path: str, index: int = 0) -> Definition:
    """Check one definition of the file ``path`` (entry ``index``, from 0).

    :raises ConfigError: ``<path>: pollster '<name>': <reason>``; an
        OpenStack-only key gives ``key 'endpoint_type' is not supported: ...``.
    """
    where = f"{path}: pollster #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a definition must be a mapping, not "
                          f"{type(raw).__name__}")
    name = raw.get("name")
    if isinstance(name, str) and name:
        where = f"{path}: pollster {name!r}"
    unsupported = [key for key in raw if key in UNSUPPORTED]
    if unsupported:
        raise ConfigError(f"{where}: " + "; ".join(
            f"key {key!r} is not supported: {UNSUPPORTED[key]}" for key in unsupported))
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: name must look like 'a.b.c' or 'a.b.{{attribute}}', "
                          f"not {name!r}")
    try:
        return Definition(path=path, name=name, **_fields(raw))
    except _Refused as exc:
        raise ConfigError(f"{where}: {exc}") from None
