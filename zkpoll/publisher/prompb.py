"""The Prometheus remote-write 1.0 protobuf messages, encoded by hand.

Only what a ``WriteRequest`` of float samples needs (``prompb/remote.proto``
and ``types.proto`` of Prometheus)::

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // ms since the epoch

Hand-encoding these four messages is a few lines, needs no generated code
and lets the label part of a series be encoded once and reused.
:func:`decode_write_request` reads them back (tests, debugging).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["DOUBLE", "decode_write_request", "encode_labels", "encode_series", "varint"]

#: The little-endian IEEE 754 double of a Sample value.
DOUBLE = struct.Struct("<d")


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative ``value``
    (negative int64 values take ten bytes, two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def encode_labels(labels: Iterable[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of a TimeSeries; ``labels`` must be sorted by name."""
    return b"".join(_field(0x0A, _field(0x0A, name.encode()) + _field(0x12, value.encode()))
                    for name, value in labels)


def encode_series(labels: bytes, value: float, timestamp_ms: int) -> bytes:
    """One ``timeseries`` field of a WriteRequest: encoded ``labels`` and one sample."""
    sample = b"\x09" + DOUBLE.pack(value) + b"\x10" + varint(timestamp_ms)
    series = labels + b"\x12" + bytes([len(sample)]) + sample
    return b"\x0a" + varint(len(series)) + series


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire == 1:
            yield number, data[pos:pos + 8]
            pos += 8
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            yield number, data[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"unexpected wire type {wire}")


def decode_write_request(data: bytes) -> list[tuple[dict[str, str], list[tuple[float, int]]]]:
    """(labels, [(value, timestamp ms)]) of each series of a WriteRequest."""
    result: list[tuple[dict[str, str], list[tuple[float, int]]]] = []
    for number, series in _fields(data):
        if number != 1 or not isinstance(series, bytes):
            continue
        labels: dict[str, str] = {}
        samples: list[tuple[float, int]] = []
        for inner, payload in _fields(series):
            assert isinstance(payload, bytes)
            parts = dict(_fields(payload))
            if inner == 1:
                labels[bytes(parts.get(1, b"")).decode()] = bytes(parts.get(2, b"")).decode()
            elif inner == 2:
                raw = parts.get(1, b"\0" * 8)
                timestamp = int(parts.get(2, 0))
                if timestamp >= 1 << 63:
                    timestamp -= 1 << 64
                samples.append((DOUBLE.unpack(bytes(raw))[0], timestamp))
        result.append((labels, samples))
    return result

