"""Alarm notifications as values, as spool rows and as log lines (pure).

A :class:`Notification` is what the evaluator hands to
:meth:`zkpoll.alarm.notify.Notifiers.notify`.  The notifications of one
``notify`` call for one URL are stored as ONE spool row (one commit, one
fsync)::

    {"v": 1, "n": [{"k": "<idempotency key>", "b": {<Aodh-style body>}}, ...]}

Bodies are made JSON-safe on the way in: a float that is not finite (a
Prometheus ``NaN``) becomes its string (``"NaN"``, ``"+Inf"``, ``"-Inf"``,
as Prometheus writes them) and anything else JSON cannot hold becomes
``str(value)``, so every enqueued notification can be sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Notification", "decode_row", "encode_body", "encode_row", "json_safe",
           "log_line"]

_VERSION = 1


@dataclass(frozen=True)
class Notification:
    """One notification of one alarm to one action URL.

    ``key`` is the idempotency key (``"<alarm id>:<seq>"`` or
    ``"<alarm id>:<seq>:r<cycle>"``), sent as ``Idempotency-Key``; ``body``
    is the Aodh-compatible JSON object built by the caller (``alarm_id``,
    ``alarm_name``, ``severity``, ``previous``, ``current``, ``reason``,
    ``reason_data``, ``idempotency_key``...).
    """

    key: str
    url: str
    body: Mapping[str, Any]


def _finite(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as strings and non-JSON objects as ``str``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return str(value)


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode()


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The HTTP request body of a notification (compact JSON, UTF-8)."""
    try:
        return _dumps(body)
    except (TypeError, ValueError):
        return _dumps(json_safe(body))


def encode_row(notifications: Sequence[Notification]) -> bytes:
    """One spool row holding ``notifications`` (keys and JSON-safe bodies)."""
    items = [{"k": n.key, "b": json_safe(n.body)} for n in notifications]
    return _dumps({"v": _VERSION, "n": items})


def decode_row(row: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(key, body) of each notification of a row :func:`encode_row` wrote.

    :raises ValueError: the row is not one
    """
    try:
        document = json.loads(row)
        if not isinstance(document, dict) or document.get("v") != _VERSION:
            raise ValueError("not a notification row (version 1)")
        out = []
        for item in document["n"]:
            key, body = item["k"], item["b"]
            if not isinstance(key, str) or not isinstance(body, dict):
                raise ValueError("a notification has the wrong shape")  # noqa: TRY004
            out.append((key, body))
        return out
    except (KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"a notification row has the wrong shape: {exc!r}") from exc


def log_line(notification: Notification) -> str:
    """The WARNING line of a ``log://`` action: alarm id and name, previous ->
    current, severity, reason and key."""
    body = notification.body

    def field(name: str) -> str:
        value = body.get(name)
        return "?" if value is None else str(value)

    return (f"alarm {field('alarm_id')} ({field('alarm_name')}): {field('previous')} -> "
            f"{field('current')}, severity {field('severity')}: {field('reason')} "
            f"[key {notification.key}]")
