"""Validation and encoding of coordination records (pure: no I/O).

A record is a JSON object stored under ``(kind, key)`` in the coordination
backend with a backend-specific version (see ``Coordinator.write_records``).
Kinds and keys become ZooKeeper node names and Redis/Memcached key parts,
so both are restricted to ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``; values are
serialized as compact, key-sorted JSON of at most :data:`MAX_RECORD_BYTES`.
Every check here raises :class:`ValueError` before any backend is touched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "MAX_RECORD_BYTES",
    "NAME_PATTERN",
    "EncodedWrite",
    "check_int_version",
    "check_keys",
    "check_kind",
    "decode_value",
    "encode_value",
]

LOG = logging.getLogger(__name__)

#: What a kind or key must match (whole string).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(NAME_PATTERN)
#: Largest serialized value (compact JSON, UTF-8) a record may hold.
MAX_RECORD_BYTES = 64 * 1024


class EncodedWrite(NamedTuple):
    """One validated write, as the backends receive it."""

    key: str
    payload: bytes   #: the value as compact, key-sorted JSON
    version: Any     #: the version read, or None to create only if absent


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid record {what} {name!r}: must match {NAME_PATTERN}")
    return name


def check_kind(kind: object) -> str:
    """Return ``kind`` if valid. :raises ValueError: it is not."""
    return _check_name("kind", kind)


def check_keys(keys: Iterable[object]) -> list[str]:
    """The keys as a list, each checked, duplicates refused.

    :raises ValueError: a key is invalid or given twice.
    """
    checked: list[str] = []
    seen: set[str] = set()
    for key in keys:
        checked.append(_check_name("key", key))
        if key in seen:
            raise ValueError(f"record key {key!r} given twice in one call")
        seen.add(checked[-1])
    return checked


def encode_value(key: str, value: object) -> bytes:
    """The value as compact JSON bytes.

    :raises ValueError: not a JSON object, not serializable (NaN and
        infinities included) or larger than :data:`MAX_RECORD_BYTES`.
    """
    if not isinstance(value, Mapping):
        raise ValueError(  # noqa: TRY004 - one error type for every bad input here
            f"record {key!r}: the value must be a JSON object (a mapping), "
            f"not {type(value).__name__}")
    try:
        payload = json.dumps(dict(value), sort_keys=True, separators=(",", ":"),
                             allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record {key!r}: the value is not JSON-serializable: {exc}") \
            from exc
    if len(payload) > MAX_RECORD_BYTES:
        raise ValueError(f"record {key!r}: the value is {len(payload)} bytes as JSON; "
                         f"the limit is {MAX_RECORD_BYTES}")
    return payload


def decode_value(payload: bytes, where: str) -> dict[str, Any]:
    """The stored JSON object; ``{}`` (with a warning naming ``where``) when the
    stored bytes are not one, so that a writer can replace them by CAS."""
    try:
        value = json.loads(payload.decode("utf-8")) if payload else None
    except (UnicodeDecodeError, ValueError):
        value = None
    if not isinstance(value, dict):
        LOG.warning("record %s does not hold a JSON object; reading it as {}", where)
        return {}
    return value


def check_int_version(key: str, version: Any, backend: str) -> int | None:
    """For backends whose versions are integers: the version, None to create.

    :raises ValueError: a version this backend cannot have given.
    """
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"record {key!r}: version {version!r} was not read from {backend} "
                         "(expected a non-negative integer, or None to create)")
    return version
