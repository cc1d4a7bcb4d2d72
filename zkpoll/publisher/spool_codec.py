"""How the spool stores a batch of samples: one compact JSON document per batch.

The fields a batch's samples share (name, type, unit, source, member id,
cycle start) are stored once, as *templates*; each sample is then a short
list ``[template, volume, resource_id, timestamp]`` (plus its resource
metadata when it has any).  One ``json.dumps`` per batch, about 50 bytes per
sample, and far less to parse when the sender reads it back.  The
deterministic ``Sample.id`` is not stored: it is derived again from (name,
resource_id, cycle_start), which are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from zkpoll.sample import Sample

__all__ = ["decode_batch", "encode_batch"]

_VERSION = 1


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
        if metadata:
            append([index, sample.volume, sample.resource_id, sample.timestamp, metadata])
        else:
            append([index, sample.volume, sample.resource_id, sample.timestamp])
    return {"v": _VERSION, "t": [list(key) for key in templates], "s": rows}


def encode_batch(samples: Sequence[Sample]) -> tuple[bytes, int, list[tuple[Sample, str]]]:
    """Encode ``samples``: (body, samples encoded, [(sample, why) not encodable]).

    A sample whose volume is not finite or whose metadata is not JSON is
    left out and returned with the reason, for the caller to count.
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
            append(Sample(name, kind, unit, row[1], row[2], row[3],
                          row[4] if len(row) > 4 else None, source, member, start))
        return out
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"a spooled sample has the wrong shape: {exc!r}") from exc
