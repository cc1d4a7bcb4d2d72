"""The slow, exact half of the exposition parser (see :mod:`zkpoll.scrape.exposition`).

The fast path in ``exposition`` handles the common line shapes with string
methods and per-process caches; everything it does not recognise comes
here: escapes in label values, ``}`` inside a quoted value, whitespace
inside a label set (text format), ``{__name__="x"}``, exemplars, odd
numbers, and every error with its precise reason.

Every function raises :class:`LineError` (a reason, no line number); the
parser wraps it into an :class:`~zkpoll.scrape.exposition.ExpositionError`
that names the line.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "LABEL_NAME",
    "METRIC_NAME",
    "LineError",
    "label_separators",
    "label_set",
    "om_tail",
    "om_timestamp",
    "sample",
    "text_tail",
    "unescape_help",
    "unescape_value",
    "value",
]

#: A metric name and a label name as Prometheus's legacy scheme has them.
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                    r"|(?i:inf(?:inity)?|nan))")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)"
                        r"(?:[pP][+-]?[0-9]+)?")
_DECIMAL_TS = re.compile(r"(-?)([0-9]+)(?:\.([0-9]*))?")
_ESCAPE = re.compile(r'\\[\\n"]')
_HELP_ESCAPE = re.compile(r"\\[\\n]")
_ESCAPES = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_TEXT_SEP = re.compile(r"[ \t]*(,?)[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*")
_OM_SEP = re.compile(r"(,?)([a-zA-Z_][a-zA-Z0-9_]*)=")
_TEXT_END = re.compile(r"[ \t]*,?[ \t]*")


class LineError(Exception):
    """Why one line is invalid (the parser adds the line and its number)."""


def _replace(match: re.Match[str]) -> str:
    return _ESCAPES[match.group(0)]


def unescape_value(raw: str) -> str:
    r"""A label value without its escapes: ``\\``, ``\"`` and ``\n``; any other
    backslash sequence is kept as it is (as Prometheus and prometheus_client do)."""
    return _ESCAPE.sub(_replace, raw) if "\\" in raw else raw


def unescape_help(raw: str, om: bool) -> str:
    r"""HELP text without its escapes: ``\\`` and ``\n`` (text), also ``\"`` (OpenMetrics)."""
    if "\\" not in raw:
        return raw
    return (_ESCAPE if om else _HELP_ESCAPE).sub(_replace, raw)


def value(tok: str) -> float:
    """A sample value as Go's ``strconv.ParseFloat`` reads it (no ``_``, ASCII only)."""
    try:
        v = float(tok)
    except ValueError:
        return _odd_value(tok)
    if "_" in tok or not tok.isascii():
        return _odd_value(tok)
    return v


def _odd_value(tok: str) -> float:
    if _FLOAT.fullmatch(tok):
        return float(tok)
    if _HEX_FLOAT.fullmatch(tok):
        sign = -1.0 if tok[0] == "-" else 1.0
        body = tok.lstrip("+-")
        return sign * float.fromhex(body if "p" in body.lower() else body + "p0")
    raise LineError(f"invalid value {tok!r}")


def om_timestamp(tok: str) -> int:
    """An OpenMetrics timestamp (seconds, maybe fractional) in milliseconds.

    A decimal is converted exactly (the milliseconds are truncated, never
    rounded through a float); an exponent form goes through a float and is
    truncated as Prometheus does (``int64(ts * 1000)``).
    """
    m = _DECIMAL_TS.fullmatch(tok)
    if m is not None:
        ms = int(m.group(2)) * 1000 + int(((m.group(3) or "") + "000")[:3])
        return -ms if m.group(1) else ms
    if not _FLOAT.fullmatch(tok):
        raise LineError(f"invalid timestamp {tok!r}")
    f = float(tok)
    if math.isnan(f) or math.isinf(f):
        raise LineError(f"invalid timestamp {tok!r}")
    return int(f * 1000)


def text_tail(rest: str) -> tuple[float, int | None]:
    """Value and optional timestamp (integer ms) after the name or the label set."""
    toks = rest.split()
    if len(toks) == 1:
        return value(toks[0]), None
    if len(toks) == 2:
        ts = toks[1]
        digits = ts[1:] if ts[:1] == "-" else ts
        if not (digits.isascii() and digits.isdigit()):
            raise LineError(f"invalid timestamp {ts!r} (integer milliseconds)")
        return value(toks[0]), int(ts)
    if not toks:
        raise LineError("no value")
    raise LineError("text after the timestamp")


def om_tail(rest: str) -> tuple[float, int | None]:
    """Value, timestamp (seconds, returned in ms) and exemplar (checked, dropped)
    after the name or the label set of an OpenMetrics sample."""
    if not rest.startswith(" "):
        raise LineError("expected one space before the value")
    body = rest[1:]
    hash_at = body.find(" # ")
    if hash_at != -1:
        _exemplar(body[hash_at + 3:])
        body = body[:hash_at]
    toks = body.split(" ")
    if "" in toks:
        raise LineError("no value" if body == "" else "expected single spaces between fields")
    if len(toks) == 1:
        return value(toks[0]), None
    if len(toks) == 2:
        return value(toks[0]), om_timestamp(toks[1])
    raise LineError("text after the timestamp")


def _exemplar(text: str) -> None:
    if not text.startswith("{"):
        raise LineError("an exemplar starts with a label set")
    _, end = label_set(text, 1, om=True)
    toks = text[end:].split(" ")
    if toks[0] != "" or len(toks) not in (2, 3) or "" in toks[1:]:
        raise LineError("an exemplar is a label set, a value and an optional timestamp")
    value(toks[1])
    if len(toks) == 3:
        om_timestamp(toks[2])


def _skip(line: str, pos: int, ws: str) -> int:
    while pos < len(line) and line[pos] in ws:
        pos += 1
    return pos


def label_set(line: str, pos: int, om: bool) -> tuple[list[tuple[str, str]], int]:
    """Parse the labels from just after ``{``; return them and the index after ``}``.

    Text format: spaces and tabs may surround every token.  Both formats
    accept one trailing comma (as Prometheus does).  A repeated label name
    is an error.
    """
    ws = "" if om else " \t"
    labels: list[tuple[str, str]] = []
    seen: set[str] = set()
    while True:
        pos = _skip(line, pos, ws)
        if pos >= len(line):
            raise LineError("label set not closed with '}'")
        if line[pos] == "}":
            return labels, pos + 1
        if labels:
            if line[pos] != ",":
                raise LineError(f"expected ',' or '}}' at column {pos + 1}")
            pos = _skip(line, pos + 1, ws)
            if pos < len(line) and line[pos] == "}":
                return labels, pos + 1
        m = LABEL_NAME.match(line, pos)
        if m is None:
            raise LineError(f"expected a label name at column {pos + 1}")
        name = m.group(0)
        pos = _skip(line, m.end(), ws)
        if pos >= len(line) or line[pos] != "=":
            raise LineError(f"label {name!r}: expected '=' at column {pos + 1}")
        q = _QUOTED.match(line, _skip(line, pos + 1, ws))
        if q is None:
            raise LineError(f"label {name!r}: expected a quoted value")
        if name in seen:
            raise LineError(f"duplicate label name {name!r}")
        seen.add(name)
        labels.append((name, unescape_value(q.group(1))))
        pos = q.end()


def label_separators(parts: tuple[str, ...], om: bool) -> tuple[str, ...] | None:
    """The label names of a label set split on ``"`` (its even parts), or None
    when those parts are not a plain ``name="value",...`` sequence (the caller
    then takes the slow path, which gives the precise error)."""
    sep = _OM_SEP if om else _TEXT_SEP
    names: list[str] = []
    for i, part in enumerate(parts[:-1]):
        m = sep.fullmatch(part)
        if m is None or bool(m.group(1)) != (i > 0):
            return None
        names.append(m.group(2))
    last = parts[-1]
    if last and not (last == "," if om else _TEXT_END.fullmatch(last)):
        return None
    if len(parts) == 1 and "," in last:
        return None  # "{,}"
    if len(set(names)) != len(names) or "__name__" in names:
        return None
    return tuple(names)


def sample(line: str, om: bool) -> tuple[str, tuple[tuple[str, str], ...], float, int | None]:
    """Parse a sample line in full (the fast path's fallback)."""
    ws = "" if om else " \t"
    pos = _skip(line, 0, ws)
    m = METRIC_NAME.match(line, pos)
    name = m.group(0) if m else ""
    pos = m.end() if m else pos
    if pos < len(line) and line[pos] not in " \t{":
        raise LineError(f"invalid character {line[pos]!r} in the metric name")
    labels: list[tuple[str, str]] = []
    brace = _skip(line, pos, ws)
    if brace < len(line) and line[brace] == "{":
        labels, pos = label_set(line, brace + 1, om)
        for i, (k, v) in enumerate(labels):
            if k == "__name__":
                if name:
                    raise LineError("metric name given twice (before '{' and as __name__)")
                if not METRIC_NAME.fullmatch(v):
                    raise LineError(f"invalid metric name {v!r}")
                name = v
                del labels[i]
                break
    if not name:
        raise LineError("expected a metric name")
    val, ts = om_tail(line[pos:]) if om else text_tail(line[pos:])
    return name, tuple(labels), val, ts
