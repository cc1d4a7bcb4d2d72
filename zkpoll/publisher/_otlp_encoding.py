"""Samples to an OTLP ``ExportMetricsServiceRequest``: pure code, no I/O.

Mapping (see docs/publishers.md, "OTLP/HTTP"):

- one ``ResourceMetrics`` per agent (``sample.member_id``) with the resource
  attributes ``service.name`` = ``zkpoll``, ``service.version``,
  ``service.instance.id`` and ``zkpoll.member_id`` (the member id) and
  ``host.name``; one ``ScopeMetrics`` (scope ``zkpoll``) in it;
- one ``Metric`` per (meter name, unit, sample type), named after the meter,
  with the unit; points in the batch's order;
- ``gauge`` -> ``Gauge``; ``cumulative`` -> ``Sum`` with CUMULATIVE
  temporality and ``is_monotonic`` true; ``delta`` -> ``Sum`` with DELTA
  temporality and ``is_monotonic`` false (a delta may be negative);
- ``time_unix_nano``: the poll time (``sample.timestamp``) in nanoseconds
  (to the microsecond: see :func:`unix_nanos`);
  ``start_time_unix_nano``: unset (0, "unknown") for gauges and cumulative
  sums, whose counter started at a time zkpoll cannot know (and a start
  invented by one agent would read as a counter reset when another agent
  takes the resource over); for a delta, the start of its polling cycle
  (``sample.cycle_start``) when it is before the poll time, so the windows
  of successive cycles never overlap;
- value: ``as_int`` for an int volume that fits 64 bits, else ``as_double``;
  no volume (None): no value and the NO_RECORDED_VALUE flag;
- point attributes: ``resource_id``, ``source``, ``sample_id`` (the
  deterministic id, for de-duplication; can be turned off) and each
  ``resource_metadata`` entry as ``metadata.<key>``, typed: str, bool, int
  (64 bits), float as such; lists, tuples and dicts as compact JSON strings
  (sorted keys); None is left out; anything else as ``str(value)``;
- a sample with labels (a scraped Prometheus series) has its labels as
  point attributes and nothing else, in a ``ResourceMetrics`` without the
  member id (the series must not change when another agent scrapes it); a
  staleness marker is a point with the NO_RECORDED_VALUE flag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from zkpoll.sample import CUMULATIVE, DELTA, Sample, is_stale
from zkpoll.version import __version__

__all__ = ["attribute_value", "decode_status", "encode_request", "unix_nanos"]

_INT64 = range(-(2**63), 2**63)
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_NO_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK


def unix_nanos(seconds: float) -> int:
    """Seconds since the epoch (a float) as integer nanoseconds, to the microsecond.

    A float near today's epoch holds about a quarter of a microsecond, so the
    digits below the microsecond would be rounding noise; the whole seconds
    and the fraction are converted apart, so 0.25 s is exactly 250000000 ns.
    """
    whole = math.floor(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1_000_000) * 1000


def attribute_value(value: Any) -> common_pb2.AnyValue | None:
    """The typed OTLP value of a metadata entry (None: leave it out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        if value in _INT64:
            return common_pb2.AnyValue(int_value=value)
        return common_pb2.AnyValue(string_value=str(value))
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return common_pb2.AnyValue(string_value=text)
    return common_pb2.AnyValue(string_value=str(value))


def _key_values(pairs: Sequence[tuple[str, Any]]) -> list[common_pb2.KeyValue]:
    out = []
    for key, raw in pairs:
        value = attribute_value(raw)
        if value is not None:
            out.append(common_pb2.KeyValue(key=key, value=value))
    return out


def _point(sample: Sample, with_sample_id: bool) -> metrics_pb2.NumberDataPoint:
    pairs: list[tuple[str, Any]]
    if sample.labels:   # a scraped series: its label set, nothing else
        pairs = list(sample.labels.items())
    else:
        pairs = [("resource_id", sample.resource_id), ("source", sample.source)]
        if with_sample_id:
            pairs.append(("sample_id", sample.id))
        pairs.extend((f"metadata.{key}", value)
                     for key, value in sample.resource_metadata.items())
    point = metrics_pb2.NumberDataPoint(attributes=_key_values(pairs),
                                        time_unix_nano=unix_nanos(sample.timestamp))
    start = sample.cycle_start
    if sample.type == DELTA and start is not None and start < sample.timestamp:
        point.start_time_unix_nano = unix_nanos(start)
    volume = sample.volume
    if volume is None or is_stale(volume):
        point.flags = _NO_VALUE
    elif isinstance(volume, int) and not isinstance(volume, bool) and volume in _INT64:
        point.as_int = volume
    else:
        point.as_double = float(volume)
    return point


def _resource(host: str, member_id: str | None) -> resource_pb2.Resource:
    pairs: list[tuple[str, Any]] = [("service.name", "zkpoll"),
                                    ("service.version", __version__),
                                    ("host.name", host)]
    if member_id:
        pairs += [("service.instance.id", member_id), ("zkpoll.member_id", member_id)]
    return resource_pb2.Resource(attributes=_key_values(pairs))


def _metric(sample: Sample) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=sample.name, unit=sample.unit or "")
    if sample.type == CUMULATIVE:
        metric.sum.aggregation_temporality = _CUMULATIVE
        metric.sum.is_monotonic = True
    elif sample.type == DELTA:
        metric.sum.aggregation_temporality = _DELTA
        metric.sum.is_monotonic = False
    else:
        metric.gauge.SetInParent()
    return metric


def encode_request(samples: Sequence[Sample], host: str, *,
                   with_sample_id: bool = True) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """One ``ExportMetricsServiceRequest`` for a batch (see the module docstring)."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    scopes: dict[str | None, metrics_pb2.ScopeMetrics] = {}
    metrics: dict[tuple[str | None, str, str, str], metrics_pb2.Metric] = {}
    for sample in samples:
        member = None if sample.labels else sample.member_id  # a scraped series: no member
        scope = scopes.get(member)
        if scope is None:
            resource_metrics = request.resource_metrics.add(resource=_resource(host, member))
            scope = resource_metrics.scope_metrics.add(
                scope=common_pb2.InstrumentationScope(name="zkpoll", version=__version__))
            scopes[member] = scope
        key = (member, sample.name, sample.unit or "", sample.type)
        metric = metrics.get(key)
        if metric is None:
            metric = scope.metrics.add()
            metric.CopyFrom(_metric(sample))
            metrics[key] = metric
        points = metric.gauge.data_points if metric.HasField("gauge") else metric.sum.data_points
        points.append(_point(sample, with_sample_id))
    return request


def _status_class() -> Any:
    """``google.rpc.Status`` (code = 1, message = 2), built from its field numbers."""
    proto = descriptor_pb2.FileDescriptorProto(name="zkpoll/google_rpc_status.proto",
                                               package="zkpoll.google.rpc", syntax="proto3")
    message = proto.message_type.add(name="Status")
    field = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    message.field.add(name="message", number=2, type=field.TYPE_STRING,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zkpoll.google.rpc.Status"))


_Status = _status_class()


def decode_status(body: bytes) -> str | None:
    """The message of a protobuf ``google.rpc.Status`` body, or None if it is not one."""
    status = _Status()
    try:
        status.ParseFromString(body)
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError; any means "not one"
        return None
    return status.message or None
