"""How the spool stores a batch of samples: one compact JSON document per batch.

The fields a batch's samples share (name, type, unit, source, member id,
cycle start) are stored once, as *templates*; each sample is then a short
list ``[template, volume, resource_id, timestamp]`` (plus its resource
metadata when it has any, and then its labels when it has some).  A volume
that JSON cannot hold is a string: ``"NaN"``, ``"+Inf"``, ``"-Inf"`` or
``"stale"`` (Prometheus's staleness marker, kept bit for bit).  One ``json.dumps`` per batch, about 50 bytes per
sample, and far less to parse when the sender reads it back.  The
deterministic ``Sample.id`` is not stored: it is derived again from (name,
resource_id, cycle_start), which are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from zkpoll.sample import STALE_NAN, Sample, is_stale

__all__ = ["decode_batch", "encode_batch"]

_VERSION = 1
_TOKENS = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf, "stale": STALE_NAN}


def _token(volume: float) -> str:
    """The string a non-finite volume is stored as."""
    if is_stale(volume):
        return "stale"
    if math.isnan(volume):
        return "NaN"
    return "+Inf" if volume > 0 else "-Inf"


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode()


def _document(samples: Sequence[Sample]) -> dict[str, Any]:
    templates: dict[tuple[Any, ...], int] = {}
    rows = []
    append = rows.append
    for sample in samples:
        key = (sample.name, sample.type, sample.unit, sample.source, sample.member_id,
               sample.cycle_start)
        index = templates.get(key)
        if index is None:
            index = templates[key] = len(templates)
        metadata = sample.resource_metadata
        volume = sample.volume
        if type(volume) is float and not math.isfinite(volume):
            volume = _token(volume)
        if sample.labels:
            append([index, volume, sample.resource_id, sample.timestamp, metadata or {},
                    sample.labels])
        elif metadata:
            append([index, volume, sample.resource_id, sample.timestamp, metadata])
        else:
            append([index, volume, sample.resource_id, sample.timestamp])
    return {"v": _VERSION, "t": [list(key) for key in templates], "s": rows}


def encode_batch(samples: Sequence[Sample]) -> tuple[bytes, int, list[tuple[Sample, str]]]:
    """Encode ``samples``: (body, samples encoded, [(sample, why) not encodable]).

    A sample whose metadata or labels are not JSON is left out and returned
    with the reason, for the caller to count.
    """
    try:
        return _dumps(_document(samples)), len(samples), []
    except (TypeError, ValueError):
        pass
    good: list[Sample] = []
    bad: list[tuple[Sample, str]] = []
    for sample in samples:
        try:
            _dumps(_document([sample]))
        except (TypeError, ValueError) as exc:
            bad.append((sample, str(exc)))
        else:
            good.append(sample)
    return _dumps(_document(good)), len(good), bad


def decode_batch(body: bytes) -> list[Sample]:
    """The samples of one stored batch.

    :raises ValueError: the body is not a batch this module wrote
    """
    document = json.loads(body)
    if not isinstance(document, dict) or document.get("v") != _VERSION:
        raise ValueError("not a spooled batch (version 1)")
    try:
        templates = document["t"]
        out = []
        append = out.append
        for row in document["s"]:
            name, kind, unit, source, member, start = templates[row[0]]
            volume = row[1]
            if isinstance(volume, str):
                volume = _TOKENS[volume]
            append(Sample(name, kind, unit, volume, row[2], row[3],
                          row[4] if len(row) > 4 else None, source, member, start,
                          row[5] if len(row) > 5 else None))
        return out
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"a spooled sample has the wrong shape: {exc!r}") from exc
