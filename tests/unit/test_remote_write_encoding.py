"""Remote write: series naming rules and the hand-written protobuf (real Prometheus: functional)."""

from __future__ import annotations

import math
import urllib.parse

import cramjam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkpoll.publisher.prompb import (
    decode_write_request,
    encode_labels,
    encode_series,
    varint,
)
from zkpoll.publisher.remote_write import (
    RemoteWriteSender,
    metric_name,
    series_labels,
    unit_suffix,
)
from zkpoll.sample import Sample

VALID = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


@pytest.mark.parametrize("name, unit, kind, expected", [
    ("host.cpu.util", "%", "gauge", "host_cpu_util_percent"),
    ("host.disk.read.bytes", "B", "cumulative", "host_disk_read_bytes_total"),
    ("http.response.time", "s", "gauge", "http_response_time_seconds"),
    ("host.load.1min", "1", "gauge", "host_load_1min"),
    ("host.processes", "process", "gauge", "host_processes"),
    ("net.rate", "B/s", "delta", "net_rate_bytes_per_second"),
    ("9lives", "widget/h", "gauge", "_9lives_widget_per_h"),
    ("already_total", "", "cumulative", "already_total"),
])
def test_metric_names(name, unit, kind, expected):
    assert metric_name(name, unit, kind) == expected


@given(st.text(min_size=1, max_size=30), st.text(max_size=10),
       st.sampled_from(["gauge", "delta", "cumulative"]))
def test_every_meter_name_becomes_a_valid_metric_name(name, unit, kind):
    import re

    assert re.fullmatch(VALID, metric_name(name, unit, kind))
    assert unit_suffix(unit) == "" or re.fullmatch(r"[a-zA-Z0-9_:]+", unit_suffix(unit))


def test_labels_are_sorted_and_carry_resource_source_and_type():
    sample = Sample("host.cpu.util", "gauge", "%", 3.5, "node-1", source="hosts", member_id="a")
    assert series_labels(sample) == [("__name__", "host_cpu_util_percent"),
                                     ("resource_id", "node-1"), ("source", "hosts"),
                                     ("type", "gauge")]


@given(st.integers(0, (1 << 63) - 1))
def test_varint_round_trips(value):
    from zkpoll.publisher.prompb import _read_varint

    assert _read_varint(varint(value), 0) == (value, len(varint(value)))


def test_write_request_round_trip_with_poll_time_in_ms_and_nan_for_no_value():
    sender = RemoteWriteSender(None, urllib.parse.urlsplit(
        "prometheus+remote-write://127.0.0.1:9/api/v1/write"))
    batch = [Sample("m.x", "gauge", "B", 2.5, "r1", timestamp=1.7e9 + 3, source="s",
                    cycle_start=1.7e9),
             Sample("m.x", "cumulative", "B", None, "r2", timestamp=1.7e9 + 3, source="s",
                    cycle_start=1.7e9 + 0.0125)]
    decoded = decode_write_request(sender.encode(batch))
    assert decoded[0] == ({"__name__": "m_x_bytes", "resource_id": "r1", "source": "s",
                           "type": "gauge"}, [(2.5, 1_700_000_000_000)])
    labels, [(value, stamp)] = decoded[1]
    assert labels["__name__"] == "m_x_bytes_total" and math.isnan(value)
    assert stamp == 1_700_000_000_012 or stamp == 1_700_000_000_013
    compressed = bytes(cramjam.snappy.compress_raw(sender.encode(batch)))
    assert bytes(cramjam.snappy.decompress_raw(compressed)) == sender.encode(batch)
    assert sender.headers["Content-Encoding"] == "snappy"
    assert sender._port == 9 and sender._ssl is None


def test_series_encoding_matches_the_protobuf_wire_format():
    labels = encode_labels([("a", "b")])
    assert labels == b"\x0a\x06\x0a\x01a\x12\x01b"
    assert encode_series(labels, 1.0, 1) == (b"\x0a\x15" + labels + b"\x12\x0b\x09"
                                             + b"\x00" * 6 + b"\xf0\x3f" + b"\x10\x01")


def test_https_variant():
    sender = RemoteWriteSender(None, urllib.parse.urlsplit(
        "prometheus+remote-write+https://prom.example:443/api/v1/write?verify_ssl=false"))
    assert sender._ssl is not None and sender._path == "/api/v1/write"


def test_scraped_series_are_sent_as_scraped_with_their_labels_and_staleness_bits():
    import struct

    from zkpoll.sample import STALE_NAN
    sender = RemoteWriteSender(None, urllib.parse.urlsplit(
        "prometheus+remote-write://127.0.0.1:9/api/v1/write"))
    labels = {"job": "node", "instance": "10.0.0.1:9100", "cpu": "0", "mode": "idle"}
    batch = [Sample("node_cpu_seconds_total", "cumulative", "", 12.5, "t1", source="s",
                    member_id="m-1", cycle_start=1.7e9, labels=labels),
             Sample("node_cpu_seconds_total", "cumulative", "", STALE_NAN, "t1",
                    member_id="m-2", cycle_start=1.7e9 + 15, labels=labels)]
    (first, points), (second, [(stale, _)]) = decode_write_request(sender.encode(batch))
    assert first == second == {"__name__": "node_cpu_seconds_total", **labels}
    assert points == [(12.5, 1_700_000_000_000)]
    assert struct.pack("<d", stale) == struct.pack("<Q", 0x7FF0000000000002)
    assert batch[0].id != Sample("node_cpu_seconds_total", "cumulative", "", 1, "t1",
                                 cycle_start=1.7e9, labels={**labels, "cpu": "1"}).id
