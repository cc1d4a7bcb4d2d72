"""``prometheus+remote-write://`` sender: Prometheus remote write 1.0 (protobuf + snappy).

``prometheus+remote-write://HOST:PORT/api/v1/write`` POSTs over http,
``prometheus+remote-write+https://...`` over https.  One POST per batch:
a snappy-compressed (block format, ``cramjam``) ``WriteRequest`` with one
series per sample, named by :func:`series_labels`:

* ``__name__``: the meter name with every character outside
  ``[a-zA-Z0-9_:]`` replaced by ``_`` (and ``_`` in front of a leading
  digit), then the unit suffix (:func:`unit_suffix`) unless the name already
  ends with it, then ``_total`` for a ``cumulative`` meter:
  ``host.cpu.util`` in ``%`` -> ``host_cpu_util_percent``,
  ``host.disk.read.bytes`` in ``B`` (cumulative) -> ``host_disk_read_bytes_total``;
* labels ``resource_id``, ``source`` (the polling source) and ``type``
  (``gauge``, ``cumulative`` or ``delta``); not the agent's member id, so a
  resource's series stays one series when another agent takes it over;
* a sample with labels (a scraped Prometheus series) is sent as it was
  scraped instead: ``__name__`` is its name unchanged (no unit suffix),
  its labels are its label set (``job`` and ``instance`` among them), and
  nothing else (no member id, no ``resource_id``);
* the value is the sample's volume (NaN when it has none; a staleness
  marker keeps its exact NaN bits); the timestamp is
  the start of the cycle that polled it, in ms (so a sample delivered twice,
  or polled twice by a catch-up, lands on the same point).

2xx acknowledges the batch; 5xx, 429 and connection errors are retried by
the spool.  Prometheus refuses a whole request for one sample it cannot
store (too old for its ``out_of_order_time_window``, out of bounds, a
different value at the same timestamp): answered with 400, or with 500 and
such a reason by older versions (2.42).  Then the batch is split in halves
and sent again until only the refused samples are left; those are dropped,
counted (reason ``rejected``) and logged (:class:`BatchRejected`).  Options: ``timeout`` (10.0 s),
``verify_ssl`` (true), ``ca_file``; the spool's ``batch_size`` (2000),
``retry_backoff`` and ``max_backoff``.  User info in the URL becomes Basic auth.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

import cramjam

from zkpoll.exceptions import BatchRejected, PublishError
from zkpoll.publisher.base import OptionSpec, number
from zkpoll.publisher.http import HTTPSender, post
from zkpoll.publisher.prompb import DOUBLE as _DOUBLE
from zkpoll.publisher.prompb import encode_labels, varint
from zkpoll.sample import CUMULATIVE, Sample

__all__ = ["RemoteWriteSender", "metric_name", "series_labels", "unit_suffix"]

_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_UNITS = {"%": "percent", "b": "bytes", "byte": "bytes", "bytes": "bytes", "s": "seconds",
          "sec": "seconds", "ms": "milliseconds", "us": "microseconds",
          "ns": "nanoseconds", "b/s": "bytes_per_second", "hz": "hertz",
          "mhz": "megahertz", "kb": "kilobytes", "mb": "megabytes", "gb": "gigabytes",
          "kib": "kibibytes", "mib": "mebibytes", "gib": "gibibytes"}
_NO_SUFFIX = frozenset({"", "1", "count", "process", "processes", "status"})
_CACHE_LIMIT = 100_000
#: Reasons a Prometheus answers 500 (2.42) for samples it will never take.
_REFUSED = ("too old sample", "out of bounds", "out of order sample",
            "duplicate sample for timestamp")


def unit_suffix(unit: str) -> str:
    """The name suffix of ``unit``: a known unit spelled out (``B`` -> ``bytes``,
    ``%`` -> ``percent``, ``s`` -> ``seconds``), others sanitised, ``/`` as
    ``_per_``; empty for dimensionless units (``1``, ``count``, ...)."""
    key = (unit or "").strip().lower()
    if key in _NO_SUFFIX:
        return ""
    if key in _UNITS:
        return _UNITS[key]
    parts = [_UNITS.get(p, p) for p in key.split("/")]
    return _INVALID.sub("_", "_per_".join(parts)).strip("_")


def metric_name(name: str, unit: str, sample_type: str) -> str:
    """The Prometheus metric name of a meter (see the module docstring)."""
    base = _INVALID.sub("_", name) or "_"
    if base[0].isdigit():
        base = "_" + base
    suffix = unit_suffix(unit)
    if suffix and not base.endswith("_" + suffix) and base != suffix:
        base = f"{base}_{suffix}"
    if sample_type == CUMULATIVE and not base.endswith("_total"):
        base += "_total"
    return base


def series_labels(sample: Sample) -> list[tuple[str, str]]:
    """The labels of a sample's series, sorted by name."""
    if sample.labels:
        return sorted([("__name__", sample.name), *sample.labels.items()])
    labels = [("__name__", metric_name(sample.name, sample.unit, sample.type)),
              ("resource_id", sample.resource_id)]
    if sample.source:
        labels.append(("source", sample.source))
    labels.append(("type", sample.type))
    return labels


class RemoteWriteSender(HTTPSender):
    """POST batches as remote-write requests (see the module docstring)."""

    sink = "prometheus"
    batch_size = 2000
    OPTIONS: ClassVar[OptionSpec] = dict(HTTPSender.OPTIONS, timeout=(number(0.01), 10.0))

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        scheme = "https" if url.scheme.endswith("+https") else "http"
        super().__init__(conf, url._replace(scheme=scheme))
        self.url = url
        self.headers.update({"Content-Type": "application/x-protobuf",
                             "Content-Encoding": "snappy",
                             "X-Prometheus-Remote-Write-Version": "0.1.0"})
        self._labels: dict[tuple[Any, ...], bytes] = {}

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """The uncompressed WriteRequest of ``samples`` (the hot path: labels are
        encoded once per series, timestamps once per cycle)."""
        cache = self._labels
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        stamps: dict[float, bytes] = {}
        pack = _DOUBLE.pack
        parts = []
        append = parts.append
        for sample in samples:
            if sample.labels:
                key: tuple[Any, ...] = (sample.name, *sample.labels.items())
            else:
                key = (sample.name, sample.unit, sample.type, sample.resource_id, sample.source)
            labels = cache.get(key)
            if labels is None:
                labels = cache[key] = encode_labels(series_labels(sample))
            start = sample.cycle_start if sample.cycle_start is not None else sample.timestamp
            stamp = stamps.get(start)
            if stamp is None:
                stamp = stamps[start] = b"\x10" + varint(round(start * 1000))
            volume = sample.volume
            point = b"\x09" + pack(math.nan if volume is None else float(volume)) + stamp
            series = labels + b"\x12" + bytes((len(point),)) + point
            append(b"\x0a" + varint(len(series)) + series)
        return b"".join(parts)

    def send(self, samples: Sequence[Sample]) -> None:
        """POST one snappy-compressed WriteRequest (split when Prometheus refuses samples)."""
        rejected, reason = self._send_split(samples)
        if rejected:
            raise BatchRejected(f"Prometheus refused {rejected} of {len(samples)} samples: "
                                f"{reason}", rejected=rejected)

    def _send_split(self, samples: Sequence[Sample]) -> tuple[int, str]:
        """(samples refused, the first reason); PublishError when to retry it all."""
        try:
            self._post(samples)
            return 0, ""
        except BatchRejected as exc:
            if len(samples) == 1:
                return 1, str(exc)
            half = len(samples) // 2
            first, why = self._send_split(samples[:half])
            second, other = self._send_split(samples[half:])
            return first + second, why or other

    def _post(self, samples: Sequence[Sample]) -> None:
        body = bytes(cramjam.snappy.compress_raw(self.encode(samples)))
        try:
            post(self.connection(), self._path, body, self.headers)
        except BatchRejected:
            raise
        except PublishError as exc:
            if any(marker in str(exc) for marker in _REFUSED):
                raise BatchRejected(str(exc)) from exc
            raise
