"""Checks of single alarm definition fields: each returns the value or raises.

Every check raises TypeError (wrong kind of value) or ValueError (right
kind, bad value) with a message that completes "invalid '<key>': ...";
the loader adds the file, line and alarm id.  :class:`FieldError` is the
ValueError of a check that involves several fields, naming the field to
blame so its line can be reported.
"""

from __future__ import annotations

import math
import re

from zkpoll.alarm.action_url import parse_action_url
from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import redact_url
from zkpoll.yaml_lines import describe

__all__ = [
    "AGGREGATIONS", "ALARM_ID", "MAX_EVALUATION_PERIODS",
    "MAX_INTERVAL", "OPERATORS", "SEVERITIES", "TYPES", "FieldError",
    "check_actions", "check_alarm_id", "check_bool", "check_choice", "check_count",
    "check_name", "check_resources", "check_text", "check_threshold",
]

#: An alarm id: used in coordination keys and paths, so a safe charset.
ALARM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TYPES = ("prometheus", "threshold")
SEVERITIES = ("low", "moderate", "critical")
OPERATORS = ("lt", "le", "eq", "ne", "ge", "gt")
#: How a threshold alarm reduces its resources' latest samples (``avg`` reads as ``mean``).
AGGREGATIONS = ("last", "each", "mean", "max", "min", "sum", "count")
#: Longest evaluation interval: 31 days, as for polling sources.
MAX_INTERVAL = 31 * 86400
#: Most consecutive evaluations an alarm may wait for before changing state.
MAX_EVALUATION_PERIODS = 10_000
MAX_NAME = 255
MAX_URL = 2048


class FieldError(ValueError):
    """A value refused because of another field; ``key`` names the field to blame."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {describe(value)}")
    return value


def check_alarm_id(value: object) -> str:
    """An alarm id: 1 to 128 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    text = _string(value)
    if not ALARM_ID.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid alarm id: use 1 to 128 letters, digits, "
                         "'.', '_' or '-', starting with a letter or a digit")
    return text


def check_name(value: object) -> str:
    """A display name: a non-blank string of at most 255 characters."""
    text = _string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    if len(text) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters, got {len(text)}")
    return text


def check_text(value: object) -> str:
    """Any string (may be empty)."""
    return _string(value)


def check_bool(value: object) -> bool:
    """``true`` or ``false`` (not a string, not a number)."""
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {describe(value)}")
    return value


def check_choice(value: object, choices: tuple[str, ...],
                 aliases: dict[str, str] | None = None) -> str:
    """One of ``choices`` (an alias is replaced by what it stands for)."""
    text = _string(value)
    text = (aliases or {}).get(text, text)
    if text not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return text


def check_threshold(value: object) -> float:
    """A finite number (an integer is turned into a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        quoted = isinstance(value, str) and _is_number(value)
        hint = " (write it without quotes)" if quoted else ""
        raise TypeError(f"must be a number, got {describe(value)}{hint}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise ValueError("is too large") from exc
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {number}")
    return number


def check_count(value: object, low: int, high: int, unit: str = "") -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        quoted = isinstance(value, str) and value.strip().isdigit()
        hint = " (write it without quotes)" if quoted else ""
        raise TypeError(f"must be a whole number{unit and ' of ' + unit}, "
                        f"got {describe(value)}{hint}")
    if not low <= value <= high:
        shown = str(value) if abs(value) < 10**20 else "a number of 20 digits or more"
        raise ValueError(f"must be from {low} to {high}, got {shown}")
    return value


def check_actions(value: object) -> tuple[str, ...]:
    """A list of notification URLs (``log://``, ``http://host...``, ``https://host...``).

    Each is checked as the notifier will read it
    (:func:`zkpoll.alarm.action_url.parse_action_url`: scheme, host, port,
    options); messages show it with its password redacted.  Returns them as
    a tuple, a URL listed twice kept once.
    """
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"must be a list of URLs, got {describe(value)}")
    urls = []
    for number, item in enumerate(value, 1):
        try:
            urls.append(_check_url(item))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"action #{number}: {exc}") from exc
    return tuple(dict.fromkeys(urls))


def _check_url(value: object) -> str:
    """One action URL, checked by the notifier's own parser (options included)."""
    url = _string(value)
    if not url.strip():
        raise ValueError("is empty")
    if len(url) > MAX_URL:
        raise ValueError(f"is longer than {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError(f"{redact_url(url)!r} contains spaces or control characters")
    if "://" not in url:
        raise ValueError(f"{redact_url(url)!r} is not a log://, http:// or https:// URL")
    try:
        parse_action_url(url)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc
    return url


def check_resources(value: object) -> tuple[str, ...]:
    """Resource ids of a threshold alarm: a non-empty list, ``["*"]`` for every resource."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"must be a list of resource ids, got {describe(value)}")
    if not value:
        raise ValueError("must not be empty (use ['*'] for every resource)")
    for number, item in enumerate(value, 1):
        if not isinstance(item, str):
            raise TypeError(f"resource #{number} must be a string, got {describe(item)}")
        if not item.strip():
            raise ValueError(f"resource #{number} is empty")
    if "*" in value and len(value) > 1:
        raise ValueError("'*' (every resource) cannot be listed with other resources")
    return tuple(dict.fromkeys(value))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
