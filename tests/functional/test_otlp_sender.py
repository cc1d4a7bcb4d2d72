"""otlp+http:// against a local OTLP/HTTP receiver that decodes with the official schema.

The receiver (an ``http.server`` on loopback) parses every request body as
``opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest``;
the tests check each field: metric types, temporality, monotonicity,
nanosecond timestamps, typed attributes, resource attributes; and the
answers the OTLP/HTTP spec defines (2xx, partial success, 4xx, 5xx) plus a
receiver that is not there.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import logging
import shutil
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from stevedore import driver

from zkpoll.exceptions import ConfigError, PublishError
from zkpoll.publisher.notifier import NotifierSender
from zkpoll.publisher.otlp import OTLPSender
from zkpoll.sample import Sample
from zkpoll.testing._server import free_port
from zkpoll.testing.tls import make_certificates

pytestmark = [pytest.mark.functional, pytest.mark.timeout(60)]

CYCLE = 1_764_300_000.0
CYCLE_NS = 1_764_300_000_000_000_000


class Receiver:
    """An OTLP/HTTP metrics receiver on 127.0.0.1 that records and answers requests."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.answer: tuple[int, dict[str, str], bytes] = (
            200, {"Content-Type": "application/x-protobuf"},
            metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString())
        self.close_after_answer = False
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                receiver.connections += 1

            def do_POST(self) -> None:
                close = receiver.close_after_answer  # as it was when the request came
                body = self.rfile.read(int(self.headers["Content-Length"]))
                raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" \
                    else body
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(raw)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "request": request})
                status, headers, payload = receiver.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                if close:  # like an idle keep-alive timeout
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        scheme = "otlp+https" if self.tls else "otlp+http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


def sender_for(url: str, conf: Any = None) -> OTLPSender:
    return OTLPSender(conf, urllib.parse.urlsplit(url))


def batch() -> list[Sample]:
    metadata = {"flavor": {"vcpus": 2, "name": "m1"}, "tags": ["a", "b"], "up": True,
                "cores": 8, "ratio": 0.5, "zone": "az1", "gone": None, "huge": 2**70}
    return [
        Sample("cpu.util", "gauge", "%", 12.5, "host-1", timestamp=CYCLE + 0.25,
               resource_metadata=metadata, source="central", member_id="agent-1",
               cycle_start=CYCLE),
        Sample("cpu.util", "gauge", "%", 7, "host-2", timestamp=CYCLE + 0.5,
               source="central", member_id="agent-1", cycle_start=CYCLE),
        Sample("net.bytes", "cumulative", "B", 123_456_789_012, "nic-1",
               timestamp=CYCLE + 0.75, source="central", member_id="agent-1",
               cycle_start=CYCLE),
        Sample("disk.change", "delta", "B", -42.5, "disk-1", timestamp=CYCLE + 1.0,
               source="central", member_id="agent-1", cycle_start=CYCLE),
        Sample("cpu.util", "gauge", "%", None, "host-3", timestamp=CYCLE + 0.125,
               source="central", member_id="agent-2", cycle_start=CYCLE),
    ]


def attributes(key_values) -> dict[str, tuple[str, Any]]:
    """{key: (value kind, value)} of a repeated KeyValue."""
    out = {}
    for kv in key_values:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = (kind, getattr(kv.value, kind))
    return out


def test_a_batch_is_one_spec_correct_export_request(receiver):
    sender = sender_for(receiver.url, None)
    samples = batch()
    sender.send(samples)
    sender.close()

    assert len(receiver.requests) == 1, "one request per batch"
    seen = receiver.requests[0]
    assert seen["path"] == "/v1/metrics"
    assert seen["headers"]["Content-Type"] == "application/x-protobuf"
    assert "Content-Encoding" not in seen["headers"]
    request = seen["request"]
    assert [len(rm.scope_metrics) for rm in request.resource_metrics] == [1, 1]

    agent1, agent2 = request.resource_metrics
    resource = attributes(agent1.resource.attributes)
    assert resource["service.name"] == ("string_value", "zkpoll")
    assert resource["zkpoll.member_id"] == ("string_value", "agent-1")
    assert resource["service.instance.id"] == ("string_value", "agent-1")
    assert resource["host.name"] == ("string_value", socket.gethostname())
    assert resource["service.version"][0] == "string_value"
    assert attributes(agent2.resource.attributes)["zkpoll.member_id"] == ("string_value",
                                                                           "agent-2")
    scope = agent1.scope_metrics[0]
    assert scope.scope.name == "zkpoll"
    metrics = {m.name: m for m in scope.metrics}
    assert list(metrics) == ["cpu.util", "net.bytes", "disk.change"], "one metric per meter"

    gauge = metrics["cpu.util"]
    assert gauge.WhichOneof("data") == "gauge" and gauge.unit == "%"
    first, second = gauge.gauge.data_points
    assert first.time_unix_nano == CYCLE_NS + 250_000_000
    assert first.start_time_unix_nano == 0
    assert (first.WhichOneof("value"), first.as_double) == ("as_double", 12.5)
    assert (second.WhichOneof("value"), second.as_int) == ("as_int", 7)
    assert second.time_unix_nano == CYCLE_NS + 500_000_000
    point_attrs = attributes(first.attributes)
    assert point_attrs == {
        "resource_id": ("string_value", "host-1"),
        "source": ("string_value", "central"),
        "sample_id": ("string_value", samples[0].id),
        "metadata.flavor": ("string_value", '{"name":"m1","vcpus":2}'),
        "metadata.tags": ("string_value", '["a","b"]'),
        "metadata.up": ("bool_value", True),
        "metadata.cores": ("int_value", 8),
        "metadata.ratio": ("double_value", 0.5),
        "metadata.zone": ("string_value", "az1"),
        "metadata.huge": ("string_value", str(2**70)),
    }
    assert attributes(second.attributes)["sample_id"] == ("string_value", samples[1].id)

    cumulative = metrics["net.bytes"]
    assert cumulative.WhichOneof("data") == "sum" and cumulative.unit == "B"
    assert cumulative.sum.aggregation_temporality == \
        metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert cumulative.sum.is_monotonic is True
    (point,) = cumulative.sum.data_points
    assert (point.as_int, point.time_unix_nano, point.start_time_unix_nano) == \
        (123_456_789_012, CYCLE_NS + 750_000_000, 0)

    delta = metrics["disk.change"]
    assert delta.WhichOneof("data") == "sum"
    assert delta.sum.aggregation_temporality == metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
    assert delta.sum.is_monotonic is False
    (point,) = delta.sum.data_points
    assert (point.as_double, point.time_unix_nano, point.start_time_unix_nano) == \
        (-42.5, CYCLE_NS + 1_000_000_000, CYCLE_NS)

    (no_value,) = agent2.scope_metrics[0].metrics[0].gauge.data_points
    assert no_value.WhichOneof("value") is None
    assert no_value.flags == metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    assert no_value.time_unix_nano == CYCLE_NS + 125_000_000


def test_options_gzip_basic_auth_path_and_no_sample_id(receiver):
    url = receiver.url.replace("//", "//ann:s%3Acret@") + "/otlp/v1/metrics?compression=gzip" \
        "&sample_id=false&timeout=2"
    sender = sender_for(url)
    sender.send(batch()[:1])
    sender.close()
    (seen,) = receiver.requests
    assert seen["path"] == "/otlp/v1/metrics"
    assert seen["headers"]["Content-Encoding"] == "gzip"
    assert seen["headers"]["Authorization"] == "Basic " + base64.b64encode(
        b"ann:s:cret").decode()
    point = seen["request"].resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert "sample_id" not in attributes(point.attributes)


def test_otlp_https_verifies_the_receiver_against_ca_file(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    certificates = make_certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.server_pem)
    receiver = Receiver(tls=context)
    receiver.start()
    try:
        trusted = sender_for(f"{receiver.url}/v1/metrics?ca_file={certificates.ca}")
        trusted.send(batch())
        trusted.close()
        assert len(receiver.requests) == 1
        untrusted = sender_for(receiver.url)  # the system CAs do not know the test CA
        with pytest.raises(PublishError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.send(batch())
        untrusted.close()
    finally:
        receiver.stop()


def test_connection_is_kept_open_and_renewed_when_the_receiver_closed_it(receiver, caplog):
    sender = sender_for(receiver.url)
    sender.send(batch())
    sender.send(batch())
    assert (len(receiver.requests), receiver.connections) == (2, 1)
    receiver.close_after_answer = True  # closes without "Connection: close"
    sender.send(batch())
    with caplog.at_level(logging.DEBUG, logger="zkpoll.publisher.otlp"):
        sender.send(batch())  # the closed connection is noticed and replaced
    sender.close()
    assert "kept-open connection was closed; reconnecting" in caplog.text
    assert (len(receiver.requests), receiver.connections) == (4, 2)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_raise_publish_error(receiver, status):
    receiver.answer = (status, {"Retry-After": "7", "Content-Type": "text/plain"},
                       b"busy, come back later")
    sender = sender_for(receiver.url)
    with pytest.raises(PublishError) as failure:
        sender.send(batch())
    sender.close()
    text = str(failure.value)
    assert f"HTTP {status}" in text and "(retryable)" in text
    assert "busy, come back later" in text and "Retry-After: 7" in text
    assert len(receiver.requests) == 1, "the sender itself never retries"


def test_400_raises_with_the_google_rpc_status_message(receiver):
    status_body = b"\x08\x03\x12\x1ametric name must not be ''"  # code 3, message
    receiver.answer = (400, {"Content-Type": "application/x-protobuf"}, status_body)
    sender = sender_for(receiver.url)
    with pytest.raises(PublishError) as failure:
        sender.send(batch())
    sender.close()
    assert "HTTP 400" in str(failure.value) and "(rejected)" in str(failure.value)
    assert "metric name must not be ''" in str(failure.value)


def test_partial_success_is_acknowledged_and_logged(receiver, caplog):
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    response.partial_success.rejected_data_points = 2
    response.partial_success.error_message = "2 points too old"
    receiver.answer = (200, {"Content-Type": "application/x-protobuf"},
                       response.SerializeToString())
    sender = sender_for(receiver.url)
    with caplog.at_level(logging.WARNING, logger="zkpoll.publisher.otlp"):
        sender.send(batch())  # no exception: resending cannot help
    sender.close()
    assert "rejected 2 of 5 data points" in caplog.text and "2 points too old" in caplog.text


def test_connection_refused_raises_publish_error_at_once():
    port = free_port()  # nothing listens there
    sender = sender_for(f"otlp+http://user:hunter2@127.0.0.1:{port}?timeout=5")
    started = time.monotonic()
    with pytest.raises(PublishError) as failure:
        sender.send(batch())
    assert time.monotonic() - started < 5
    sender.close()
    text = str(failure.value)
    assert "no answer" in text and "ConnectionRefusedError" in text
    assert "hunter2" not in text


@pytest.mark.parametrize("url, needle", [
    ("otlp+http://127.0.0.1:4318?timeout=0", "timeout"),
    ("otlp+http://127.0.0.1:4318?compression=zstd", "compression"),
    ("otlp+http://127.0.0.1:4318?verbose=1", "verbose"),
    ("otlp+http:///v1/metrics", "names no host"),
    ("otlp+https://127.0.0.1:4318?ca_file=/nonexistent/ca.pem", "ca_file"),
])
def test_bad_urls_are_config_errors(url, needle):
    with pytest.raises(ConfigError, match=needle):
        sender_for(url)


def test_senders_are_registered_by_scheme():
    for scheme, cls in [("otlp+http", OTLPSender), ("otlp+https", OTLPSender),
                        ("notifier", NotifierSender)]:
        assert driver.DriverManager("zkpoll.sender", scheme).driver is cls
