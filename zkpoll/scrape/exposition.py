"""Parse a scrape: Prometheus text format 0.0.4 and OpenMetrics 1.0 text.

Pure: no I/O.  The fetcher sends :data:`ACCEPT`, picks the format from the
answer's ``Content-Type`` with :func:`format_for` and parses the body::

    exp = parse(body, format_for(content_type))
    for name, labels, value, timestamp_ms in exp.series:
        kind = exp.type_of(name)          # "counter", "gauge", "histogram", ...

A series is a plain tuple ``(name, labels, value, timestamp_ms)``, in
exposition order: ``labels`` is a tuple of ``(name, value)`` pairs in the
order the exposition wrote them (no sorting, no ``__name__``; an empty
value is kept here, :func:`zkpoll.scrape.targets.merge_labels` drops it), ``value`` a
float (NaN and ±Inf included), ``timestamp_ms`` an int in milliseconds or
None (OpenMetrics writes seconds: they are converted exactly, truncated to
the millisecond).  Exemplars are checked and dropped.

:attr:`Exposition.families` holds what ``# TYPE``, ``# HELP`` and ``# UNIT``
declared, by family name; :meth:`Exposition.family_of` maps a series name
to its family the way the format defines it (``foo_bucket`` to histogram
``foo``; in OpenMetrics ``foo_total`` and ``foo_created`` to counter
``foo``).  ``untyped`` (text) and ``unknown`` (OpenMetrics) mean the same.

What is checked is the syntax, as Prometheus's own parsers do (plus
duplicate label names, the OpenMetrics ``# EOF`` and the UNIT suffix); the
OpenMetrics semantic rules prometheus_client adds (bucket order, counter
signs) are not.  Names use the legacy character sets: quoted UTF-8 names
are refused.  Any error raises :class:`ExpositionError` with the line
number and the (truncated) line.

Speed: the common line shapes take a fast path of ``str`` methods with
caches of validated names and label-name sequences (shared by the process,
bounded); anything else goes to the exact slow path in ``_lines``.
"""

from __future__ import annotations

from dataclasses import dataclass

from zkpoll.exceptions import ZkpollError
from zkpoll.scrape import _lines
from zkpoll.scrape._lines import LineError

__all__ = ["ACCEPT", "OPENMETRICS", "TEXT", "Exposition", "ExpositionError", "Family",
           "Labels", "Series", "format_for", "parse"]

TEXT = "text"
OPENMETRICS = "openmetrics"

#: The ``Accept`` header Prometheus sends with a scrape.
ACCEPT = ("application/openmetrics-text;version=1.0.0,"
          "application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")

Labels = tuple[tuple[str, str], ...]
Series = tuple[str, Labels, float, "int | None"]

TEXT_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped"))
OM_TYPES = frozenset(("counter", "gauge", "histogram", "gaugehistogram", "stateset", "info",
                      "summary", "unknown"))

# The series names of a family: its name plus one of these suffixes.
_TEXT_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
_OM_SUFFIXES = {"counter": ("_total", "_created"),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
                "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}
_ALL_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info")
_PLAIN = ("",)

_CACHE_MAX = 50_000
_NAMES: dict[str, str] = {}  # metric-name token -> the validated name
# The even parts of a label set split on '"' -> its label names, per format.
_TEXT_SEPS: dict[tuple[str, ...], tuple[str, ...]] = {}
_OM_SEPS: dict[tuple[str, ...], tuple[str, ...]] = {}


class ExpositionError(ZkpollError):
    """The scraped body is not a valid exposition.

    ``lineno`` (1-based) and ``line`` (truncated to 200 characters) locate
    it; ``reason`` says what is wrong.
    """

    def __init__(self, reason: str, lineno: int = 0, line: str = "") -> None:
        self.reason = reason
        self.lineno = lineno
        self.line = line[:200] + ("..." if len(line) > 200 else "")
        where = f"line {lineno}: " if lineno else ""
        shown = f": {self.line!r}" if line else ""
        super().__init__(f"{where}{reason}{shown}")


@dataclass(frozen=True, slots=True)
class Family:
    """What the metadata lines declared for one metric family.

    ``type`` is ``untyped`` (text) or ``unknown`` (OpenMetrics) when only
    HELP or UNIT was given; ``help`` and ``unit`` are None when not given.
    """

    name: str
    type: str
    help: str | None = None
    unit: str | None = None


class Exposition:
    """One parsed scrape: :attr:`series` in order, :attr:`families` by name."""

    __slots__ = ("_resolved", "families", "format", "series")

    def __init__(self, fmt: str, series: list[Series], families: dict[str, Family]) -> None:
        self.format = fmt
        self.series = series
        self.families = families
        self._resolved: dict[str, Family | None] = {}

    @property
    def default_type(self) -> str:
        """The type of a series no family claims: ``untyped`` or ``unknown``."""
        return "unknown" if self.format == OPENMETRICS else "untyped"

    def family_of(self, name: str) -> Family | None:
        """The declared family the series ``name`` belongs to, or None."""
        try:
            return self._resolved[name]
        except KeyError:
            pass
        table = _OM_SUFFIXES if self.format == OPENMETRICS else _TEXT_SUFFIXES
        found = self.families.get(name)
        if found is not None and "" not in table.get(found.type, _PLAIN):
            found = None
        if found is None:
            for suffix in _ALL_SUFFIXES:
                if name.endswith(suffix):
                    fam = self.families.get(name[:-len(suffix)])
                    if fam is not None and suffix in table.get(fam.type, _PLAIN):
                        found = fam
                    break
        self._resolved[name] = found
        return found

    def type_of(self, name: str) -> str:
        """The type of the family of series ``name`` (:attr:`default_type` if none)."""
        fam = self.family_of(name)
        return self.default_type if fam is None else fam.type


def format_for(content_type: str | None) -> str:
    """:data:`OPENMETRICS` for an ``application/openmetrics-text`` answer, else :data:`TEXT`.

    Prometheus reads anything that is not OpenMetrics (a missing header,
    ``text/plain``, an unknown type) as the text format.
    """
    if content_type and content_type.split(";", 1)[0].strip().lower() \
            == "application/openmetrics-text":
        return OPENMETRICS
    return TEXT


def parse(data: str | bytes, fmt: str = TEXT) -> Exposition:
    """Parse a whole scrape body (``bytes`` must be UTF-8) in format ``fmt``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            line = bytes(data)[:exc.start].count(b"\n") + 1
            raise ExpositionError(f"invalid UTF-8 at byte {exc.start}", line) from exc
    if fmt == TEXT:
        return _parse(data.split("\n"), om=False)
    if fmt == OPENMETRICS:
        return _parse(data.split("\n"), om=True)
    raise ValueError(f"unknown exposition format {fmt!r}")


def _metric_name(tok: str) -> str:
    name = tok.rstrip(" \t")
    if not _lines.METRIC_NAME.fullmatch(name):
        raise LineError(f"invalid metric name {name!r}")
    if len(_NAMES) >= _CACHE_MAX:
        _NAMES.clear()
    _NAMES[tok] = name
    return name


def _label_names(cache: dict[tuple[str, ...], tuple[str, ...]], key: tuple[str, ...],
                 om: bool) -> tuple[str, ...] | None:
    names = _lines.label_separators(key, om)
    if names:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = names
    return names


def _parse(lines: list[str], om: bool) -> Exposition:
    series: list[Series] = []
    append = series.append
    meta: dict[str, list[str | None]] = {}
    names = _NAMES
    seps = _OM_SEPS if om else _TEXT_SEPS
    slow_sample = _lines.sample
    eof = False
    lineno = 0
    line = ""
    if om and lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    try:
        for lineno, line in enumerate(lines, 1):
            if not om:
                line = line.strip()
                if not line:
                    continue
            elif eof:
                raise LineError("text after # EOF")
            elif not line:
                raise LineError("blank line (not allowed in OpenMetrics)")
            if line[0] == "#":
                eof = _metadata(line, om, meta)
                continue
            brace = line.find("{")
            if brace == -1 or (om and -1 < line.find(" ") < brace):
                labels = ()
                if om:
                    tok, space, rest = line.partition(" ")
                    rest = space + rest
                else:
                    toks = line.split(None, 1)
                    tok, rest = toks[0], toks[1] if len(toks) == 2 else ""
            else:
                close = line.find("}", brace)
                inner = line[brace + 1:close]
                if close == -1 or brace == 0 or "\\" in inner or inner.count('"') & 1:
                    append(slow_sample(line, om))
                    continue
                parts = inner.split('"')
                key = tuple(parts[0::2])
                label_names = seps.get(key) or _label_names(seps, key, om)
                if label_names is None:
                    append(slow_sample(line, om))
                    continue
                n = len(label_names)
                if n == 2:
                    labels = ((label_names[0], parts[1]), (label_names[1], parts[3]))
                elif n == 1:
                    labels = ((label_names[0], parts[1]),)
                elif n == 3:
                    labels = ((label_names[0], parts[1]), (label_names[1], parts[3]),
                              (label_names[2], parts[5]))
                else:
                    labels = tuple(zip(label_names, parts[1::2]))
                tok, rest = line[:brace], line[close + 1:]
            if om:
                if rest[:1] == " " and "#" not in rest and " " not in (vtok := rest[1:]) \
                        and (value := _value(vtok)) is not None:
                    ts = None
                else:
                    value, ts = _lines.om_tail(rest)
            else:
                toks = rest.split()
                n = len(toks)
                if n == 1 and (value := _value(toks[0])) is not None:
                    ts = None
                elif n == 2 and (value := _value(toks[0])) is not None \
                        and (ts_tok := toks[1]).isdigit() and ts_tok.isascii():
                    ts = int(ts_tok)
                else:
                    value, ts = _lines.text_tail(rest)
            name = names.get(tok) or _metric_name(tok)
            append((name, labels, value, ts))
    except LineError as exc:
        raise ExpositionError(str(exc), lineno, line) from None
    if om and not eof:
        raise ExpositionError("missing # EOF at the end", len(lines), lines[-1] if lines else "")
    families = {n: Family(n, m[0] or ("unknown" if om else "untyped"), m[1], m[2])
                for n, m in meta.items()}
    return Exposition(OPENMETRICS if om else TEXT, series, families)


def _value(tok: str) -> float | None:
    """The value of a plain decimal token; None sends it to the exact path."""
    try:
        v = float(tok)
    except ValueError:
        return None
    if "_" in tok or not tok.isascii():
        return None
    return v


def _metadata(line: str, om: bool, meta: dict[str, list[str | None]]) -> bool:
    """Record a ``#`` line's HELP/TYPE/UNIT in ``meta``; True for ``# EOF``."""
    if om:
        if line == "# EOF":
            return True
        parts = line.split(" ", 3)
        if parts[0] != "#" or len(parts) < 4 or parts[1] not in ("HELP", "TYPE", "UNIT"):
            raise LineError("expected '# HELP', '# TYPE', '# UNIT' or '# EOF'")
        kind, name, text = parts[1], parts[2], parts[3]
    else:
        if len(line) < 2 or line[1] not in " \t":
            return False  # a comment
        parts = line[1:].split(None, 2)
        if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
            return False
        kind, name = parts[0], parts[1]
        text = parts[2] if len(parts) == 3 else ""
    if not _lines.METRIC_NAME.fullmatch(name):
        raise LineError(f"invalid metric name {name!r} in {kind}")
    entry = meta.setdefault(name, [None, None, None])
    if kind == "HELP":
        entry[1] = _lines.unescape_help(text, om)
    elif kind == "TYPE":
        if text not in (OM_TYPES if om else TEXT_TYPES):
            raise LineError(f"invalid metric type {text!r}")
        entry[0] = text
    else:
        if text and not name.endswith("_" + text):
            raise LineError(f"unit {text!r} is not a suffix of the metric name {name!r}")
        entry[2] = text
    return False
