"""The Sample record and its serialisation.

A pollster builds samples with the measured fields; the agent stamps the
cycle fields (``source``, ``member_id``, ``cycle_start``) before handing
them to publishers.  Every sample has a deterministic :attr:`Sample.id`
derived from (meter name, resource id, cycle start), so a consumer can drop
the rare duplicate that a crash-time catch-up may produce.
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
import time
from collections.abc import Mapping
from typing import Any

import mmh3

__all__ = ["CUMULATIVE", "DELTA", "GAUGE", "HASH_SEED", "STALE_NAN", "TYPES", "Sample",
           "is_stale", "sample_id"]

GAUGE = "gauge"
DELTA = "delta"
CUMULATIVE = "cumulative"
TYPES = frozenset((GAUGE, DELTA, CUMULATIVE))

#: Fixed seed shared by every zkpoll hash that two processes must agree on.
HASH_SEED = 0x7A6B706F  # "zkpo"


#: Prometheus's staleness marker: a NaN with this exact bit pattern ends a
#: series at once (value.StaleNaN in Prometheus).
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
_STALE_BITS = 0x7FF0000000000002


def is_stale(volume: object) -> bool:
    """Whether ``volume`` is :data:`STALE_NAN` (bit for bit, not any NaN)."""
    return isinstance(volume, float) and math.isnan(volume) \
        and struct.unpack("<Q", struct.pack("<d", volume))[0] == _STALE_BITS


def sample_id(name: str, resource_id: str, cycle_start: float,
              labels: Mapping[str, str] | None = None) -> str:
    """Return the deterministic id of (meter, resource, cycle start[, labels]).

    The cycle start is taken to the millisecond; labels (sorted) count only
    when there are some, so a sample without labels keeps the id it always
    had.  The result is a UUID-shaped hex string from a 128-bit mmh3 hash
    with zkpoll's fixed seed.
    """
    key = f"{name}\x1f{resource_id}\x1f{round(cycle_start * 1000)}"
    if labels:
        key += "\x1f" + "\x1e".join(f"{k}={v}" for k, v in sorted(labels.items()))
    h = format(mmh3.hash128(key, HASH_SEED, signed=False), "032x")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat()


class Sample:
    """One measurement of one meter on one resource."""

    __slots__ = (
        "cycle_start",
        "labels",
        "member_id",
        "name",
        "resource_id",
        "resource_metadata",
        "source",
        "timestamp",
        "type",
        "unit",
        "volume",
    )

    def __init__(self, name: str, type: str, unit: str, volume: float | None,
                 resource_id: str, timestamp: float | None = None,
                 resource_metadata: Mapping[str, Any] | None = None,
                 source: str | None = None, member_id: str | None = None,
                 cycle_start: float | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.type = type
        self.unit = unit
        self.volume = volume
        self.resource_id = resource_id
        self.timestamp = time.time() if timestamp is None else timestamp
        self.resource_metadata = resource_metadata if resource_metadata is not None else {}
        self.source = source
        self.member_id = member_id
        self.cycle_start = cycle_start
        #: The series' label set (a scraped Prometheus series): sent as labels by
        #: remote write and as attributes by OTLP; empty for Ceilometer-style meters.
        self.labels: Mapping[str, str] = labels if labels is not None else {}

    @property
    def id(self) -> str:
        """Deterministic id from (name, resource_id, cycle_start)."""
        start = self.cycle_start if self.cycle_start is not None else self.timestamp
        return sample_id(self.name, self.resource_id, start, self.labels)

    def validate(self) -> None:
        """Raise ``ValueError`` if the sample breaks the contract."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"sample name must be a non-empty string, not {self.name!r}")
        if self.type not in TYPES:
            raise ValueError(f"sample {self.name}: type {self.type!r} is not one of {sorted(TYPES)}")
        if not isinstance(self.resource_id, str) or not self.resource_id:
            raise ValueError(f"sample {self.name}: resource_id must be a non-empty string")
        if self.volume is not None and (isinstance(self.volume, bool)
                                        or not isinstance(self.volume, (int, float))):
            raise ValueError(f"sample {self.name}: volume must be a number, not {self.volume!r}")
        if not isinstance(self.resource_metadata, Mapping):
            raise TypeError(f"sample {self.name}: resource_metadata must be a mapping")
        if not isinstance(self.labels, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.labels.items()):
            raise TypeError(f"sample {self.name}: labels must map strings to strings")

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (timestamps as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "volume": self.volume,
            "resource_id": self.resource_id,
            "timestamp": _iso(self.timestamp),
            "resource_metadata": dict(self.resource_metadata),
            "source": self.source,
            "member_id": self.member_id,
            "cycle_start": None if self.cycle_start is None else _iso(self.cycle_start),
            **({"labels": dict(self.labels)} if self.labels else {}),
        }

    def __repr__(self) -> str:
        return (f"Sample(name={self.name!r}, resource_id={self.resource_id!r}, "
                f"volume={self.volume!r}, unit={self.unit!r})")
