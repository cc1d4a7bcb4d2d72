"""How the spool stores a batch of samples: one compact JSON array per batch.

Each sample becomes a positional list of its fields (no key names, numbers
as JSON numbers), so a batch costs one ``json.dumps`` call and about a
hundred bytes per sample.  The deterministic ``Sample.id`` is not stored: it
is derived again from (name, resource_id, cycle_start), which are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from zkpoll.sample import Sample

__all__ = ["decode_batch", "encode_batch"]

_FIELDS = ("name", "type", "unit", "volume", "resource_id", "timestamp",
           "resource_metadata", "source", "member_id", "cycle_start")


def _row(sample: Sample) -> list[object]:
    return [sample.name, sample.type, sample.unit, sample.volume, sample.resource_id,
            sample.timestamp, sample.resource_metadata or None, sample.source,
            sample.member_id, sample.cycle_start]


def _dumps(rows: object) -> bytes:
    return json.dumps(rows, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode()


def encode_batch(samples: Sequence[Sample]) -> tuple[bytes, int, list[tuple[Sample, str]]]:
    """Encode ``samples``: (body, samples encoded, [(sample, why) not encodable]).

    A sample whose volume is not finite or whose metadata is not JSON is
    left out and returned with the reason, for the caller to count.
    """
    rows = [_row(s) for s in samples]
    try:
        return _dumps(rows), len(rows), []
    except (TypeError, ValueError):
        pass
    good: list[list[object]] = []
    bad: list[tuple[Sample, str]] = []
    for sample, row in zip(samples, rows):
        try:
            _dumps(row)
        except (TypeError, ValueError) as exc:
            bad.append((sample, str(exc)))
        else:
            good.append(row)
    return _dumps(good), len(good), bad


def decode_batch(body: bytes) -> list[Sample]:
    """The samples of one stored batch.

    :raises ValueError: the body is not a batch this module wrote
    """
    rows = json.loads(body)
    if not isinstance(rows, list):
        raise ValueError("a spooled batch must be a JSON array")  # noqa: TRY004 - one error type for callers
    try:
        return [Sample(*row) for row in rows]
    except TypeError as exc:
        raise ValueError(f"a spooled sample has the wrong shape: {exc}") from exc
