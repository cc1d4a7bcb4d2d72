"""Ceilometer's sample payload and its signature: pure code, no I/O.

A ceilometer-notification agent consumes ``telemetry.polling``
notifications whose payload is ``{"samples": [meter message, ...]}``; each
meter message has the fields of Ceilometer's
``publisher.utils.meter_message_from_counter`` (see :func:`meter_message`)
and a ``message_signature``: the HMAC-SHA256, keyed with
``[publisher] telemetry_secret``, of every (name, value) pair of the message
as Ceilometer's ``utils.recursive_keypairs`` walks it (sorted keys, nested
dicts flattened to ``outer:inner``, lists with their strings as bytes), each
name and value as ``str(...)`` in UTF-8.  An empty secret gives an empty
signature, as in Ceilometer.

The message is normalised through JSON before it is signed, so the consumer,
which sees it after a JSON round trip (tuples become lists, keys strings),
computes the same signature.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from typing import Any

from zkpoll.sample import Sample

__all__ = ["compute_signature", "meter_message", "recursive_keypairs", "verify_signature"]

#: Fields of a meter message, as Ceilometer's consumer reads them.
FIELDS = ("source", "counter_name", "counter_type", "counter_unit", "counter_volume",
          "user_id", "project_id", "resource_id", "timestamp", "resource_metadata",
          "message_id", "monotonic_time", "message_signature")


def _decode_unicode(value: Any) -> Any:
    """Ceilometer's ``utils.decode_unicode``: str -> UTF-8 bytes, recursively."""
    if isinstance(value, dict):
        return {_decode_unicode(k): _decode_unicode(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return [_decode_unicode(element) for element in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def recursive_keypairs(d: Mapping[str, Any], separator: str = ":") -> Iterator[tuple[str, Any]]:
    """Ceilometer's ``utils.recursive_keypairs``: (name, value) pairs in signing order."""
    for name, value in sorted(d.items()):
        if isinstance(value, dict):
            for subname, subvalue in recursive_keypairs(value, separator):
                yield f"{name}{separator}{subname}", subvalue
        elif isinstance(value, (tuple, list)):
            yield name, _decode_unicode(value)
        else:
            yield name, value


def compute_signature(message: Mapping[str, Any], secret: str | bytes | None) -> str:
    """The ``message_signature`` of ``message`` (its own signature left out)."""
    if not secret:
        return ""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, b"", hashlib.sha256)
    for name, value in recursive_keypairs(message):
        if name == "message_signature":
            continue
        digest.update(str(name).encode("utf-8"))
        digest.update(str(value).encode("utf-8"))
    return digest.hexdigest()


def verify_signature(message: Mapping[str, Any], secret: str | bytes | None) -> bool:
    """Whether ``message_signature`` matches, as Ceilometer's ``verify_signature``."""
    if not secret:
        return True
    old = message.get("message_signature", "")
    if isinstance(old, str):
        try:
            old = old.encode("ascii")
        except UnicodeEncodeError:
            return False
    return hmac.compare_digest(compute_signature(message, secret).encode("ascii"), old)


def _plain(value: Any) -> Any:
    """``value`` with every mapping key a string, so JSON can carry it."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _iso(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp, _dt.UTC).isoformat()


def meter_message(sample: Sample, secret: str | bytes | None) -> dict[str, Any]:
    """The signed Ceilometer meter message of ``sample``.

    ``counter_type`` is zkpoll's sample type (gauge, delta, cumulative: the
    same names as Ceilometer's); ``user_id`` and ``project_id`` come from the
    ``resource_metadata`` keys of the same names (else null);
    ``message_id`` is the sample's deterministic id; ``timestamp`` the poll
    time in ISO 8601 UTC; ``monotonic_time`` is null: a monotonic clock
    reading means nothing on another host, and a zkpoll resource moves
    between agents, so consumers fall back to ``timestamp`` (as they do for
    Ceilometer samples without one).
    """
    metadata = sample.resource_metadata
    message = {
        "source": sample.source,
        "counter_name": sample.name,
        "counter_type": sample.type,
        "counter_unit": sample.unit,
        "counter_volume": sample.volume,
        "user_id": metadata.get("user_id"),
        "project_id": metadata.get("project_id"),
        "resource_id": sample.resource_id,
        "timestamp": _iso(sample.timestamp),
        "resource_metadata": dict(metadata),
        "message_id": sample.id,
        "monotonic_time": None,
    }
    message = json.loads(json.dumps(_plain(message), default=str))
    message["message_signature"] = compute_signature(message, secret)
    return message
