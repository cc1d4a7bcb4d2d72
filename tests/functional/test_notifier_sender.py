"""notifier:// against a real RabbitMQ, read back by an oslo.messaging notification listener.

The listener is what a ceilometer-notification agent runs for
``telemetry.polling``: a batch notification listener on topic
``notifications``, exchange ``ceilometer``, priority ``sample``.  Every
field of every sample is checked, and its signature with a transcription of
Ceilometer's ``verify_signature`` written here, independent of zkpoll's.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import urllib.parse
import uuid
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.exceptions import PublishError
from zkpoll.publisher.notifier import NotifierSender, register_opts
from zkpoll.sample import Sample
from zkpoll.testing.rabbitmq import ManagedRabbitMQ
from zkpoll.testing.waiting import wait_for

oslo_messaging = pytest.importorskip("oslo_messaging")

pytestmark = [pytest.mark.functional, pytest.mark.timeout(180)]

SECRET = "zkpoll-test-secret"
CYCLE = 1_764_300_000.0


# -- Ceilometer's signature, transcribed from ceilometer/publisher/utils.py and utils.py --

def _ceilometer_decode_unicode(value: Any) -> Any:
    if isinstance(value, dict):
        return {_ceilometer_decode_unicode(k): _ceilometer_decode_unicode(v)
                for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return [_ceilometer_decode_unicode(e) for e in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _ceilometer_keypairs(d: dict, separator: str = ":"):
    for name, value in sorted(d.items()):
        if isinstance(value, dict):
            for subname, subvalue in _ceilometer_keypairs(value, separator):
                yield "%s%s%s" % (name, separator, subname), subvalue  # noqa: UP031
        elif isinstance(value, (tuple, list)):
            yield name, _ceilometer_decode_unicode(value)
        else:
            yield name, value


def ceilometer_verify_signature(message: dict, secret: str) -> bool:
    if not secret:
        return True
    digest = hmac.new(secret.encode("utf-8"), b"", hashlib.sha256)
    for name, value in _ceilometer_keypairs(message):
        if name == "message_signature":
            continue
        digest.update(str(name).encode("utf-8"))
        digest.update(str(value).encode("utf-8"))
    old = message.get("message_signature", "").encode("ascii")
    return hmac.compare_digest(digest.hexdigest().encode("ascii"), old)


# -- a ceilometer-notification-agent-like listener ---------------------------

class SampleEndpoint:
    """Collects ``telemetry.polling`` notifications, as Ceilometer's TelemetryIpc."""

    filter_rule = oslo_messaging.NotificationFilter(event_type="^telemetry\\.polling$")

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self._lock = threading.Lock()

    def sample(self, notifications: list[dict]) -> None:
        self._collect("sample", notifications)

    def info(self, notifications: list[dict]) -> None:  # Ceilometer listens here too
        self._collect("info", notifications)

    def _collect(self, priority: str, notifications: list[dict]) -> None:
        with self._lock:
            self.notifications.extend(dict(n, priority=priority) for n in notifications)

    def received(self) -> list[dict]:
        """Every notification so far (a copy)."""
        with self._lock:
            return list(self.notifications)


@pytest.fixture
def listener(rabbitmq_server: ManagedRabbitMQ):
    conf = cfg.ConfigOpts()
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq_server.url)
    endpoint = SampleEndpoint()
    server = oslo_messaging.get_batch_notification_listener(
        transport, [oslo_messaging.Target(topic="notifications", exchange="ceilometer")],
        [endpoint], executor="threading", batch_size=10, batch_timeout=0.2)
    server.start()
    yield endpoint
    server.stop()
    server.wait()
    transport.cleanup()


def make_conf(secret: str = SECRET) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="zkpoll-test")
    conf.set_override("telemetry_secret", secret, group="publisher")
    return conf


def make_sender(conf: cfg.ConfigOpts, url: str) -> NotifierSender:
    return NotifierSender(conf, urllib.parse.urlsplit(url))


def notifier_url(server: ManagedRabbitMQ, query: str = "") -> str:
    return f"notifier://guest:guest@{server.address}/{query}"


def samples_of_every_type(run: str) -> list[Sample]:
    common = {"source": "central", "member_id": "agent-1", "cycle_start": CYCLE}
    return [
        Sample("cpu.util", "gauge", "%", 12.5, f"{run}-host-1", timestamp=CYCLE + 0.25,
               resource_metadata={"user_id": "u-1", "project_id": "p-1",
                                  "flavor": {"vcpus": 2, "name": "m1.small"},
                                  "tags": ["a", "ü"], "up": True, "note": None},
               **common),
        Sample("network.incoming.bytes", "cumulative", "B", 123_456_789_012, f"{run}-nic-1",
               timestamp=CYCLE + 0.5, resource_metadata={"mac": "fa:16:3e:00:00:01"},
               **common),
        Sample("disk.delta", "delta", "B", -42.0, f"{run}-disk-ö", timestamp=CYCLE + 0.75,
               **common),
    ]


def expected_message(sample: Sample) -> dict:
    meta = sample.resource_metadata
    return {
        "source": sample.source, "counter_name": sample.name, "counter_type": sample.type,
        "counter_unit": sample.unit, "counter_volume": sample.volume,
        "user_id": meta.get("user_id"), "project_id": meta.get("project_id"),
        "resource_id": sample.resource_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sample.timestamp))
        + f".{round(sample.timestamp % 1 * 1e6):06d}+00:00",
        "resource_metadata": dict(meta), "message_id": sample.id, "monotonic_time": None,
    }


def test_every_sample_arrives_as_a_signed_ceilometer_telemetry_polling_notification(
        rabbitmq_server, listener):
    run = uuid.uuid4().hex[:8]
    batches = [samples_of_every_type(run), samples_of_every_type(run + "b")[:2]]
    sender = make_sender(make_conf(), notifier_url(rabbitmq_server))
    try:
        for batch in batches:
            sender.send(batch)  # returns once the broker confirmed the notification
    finally:
        sender.close()

    wait_for(lambda: len(listener.received()) >= len(batches), 30,
             f"{len(batches)} notifications at the listener")
    notifications = listener.received()
    assert len(notifications) == len(batches), "one notification per batch"
    by_id = {}
    for note in notifications:
        assert note["event_type"] == "telemetry.polling"
        assert note["priority"] == "sample"  # set by SampleEndpoint: the method it came to
        assert note["publisher_id"] == "zkpoll.polling"
        assert set(note["ctxt"]) <= {"client_timeout"}  # {} plus what the driver adds
        assert uuid.UUID(note["metadata"]["message_id"])
        assert note["metadata"]["timestamp"]
        assert list(note["payload"]) == ["samples"]
        for message in note["payload"]["samples"]:
            assert message["message_id"] not in by_id, "a sample sent twice"
            by_id[message["message_id"]] = message
    # batch order kept inside each notification
    assert [[m["message_id"] for m in n["payload"]["samples"]] for n in notifications] \
        == [[s.id for s in batch] for batch in batches]

    sent = [s for batch in batches for s in batch]
    assert set(by_id) == {s.id for s in sent}
    for sample in sent:
        message = by_id[sample.id]
        assert set(message) == set(expected_message(sample)) | {"message_signature"}
        signature = message["message_signature"]
        assert len(signature) == 64 and int(signature, 16) >= 0
        assert {k: v for k, v in message.items() if k != "message_signature"} \
            == expected_message(sample)
        assert type(message["counter_volume"]) is type(sample.volume)
        assert ceilometer_verify_signature(message, SECRET)
        assert not ceilometer_verify_signature(message, SECRET + "x")
        tampered = dict(message, counter_volume=(sample.volume or 0) + 1)
        assert not ceilometer_verify_signature(tampered, SECRET)


def test_send_fails_fast_while_rabbitmq_is_stopped_and_works_after_restart(rabbitmq_server):
    topic = f"zkpoll-down-{uuid.uuid4().hex[:8]}"
    sender = make_sender(make_conf(), notifier_url(rabbitmq_server, f"?topic={topic}"))
    run = uuid.uuid4().hex[:8]
    try:
        sender.send(samples_of_every_type(run))  # a live, pooled connection
        rabbitmq_server.stop()
        try:
            for attempt in range(2):  # the pooled connection, then a new one
                started = time.monotonic()
                with pytest.raises(PublishError) as failure:
                    sender.send(samples_of_every_type(f"{run}-{attempt}"))
                took = time.monotonic() - started
                # a refused connection: kombu's connect, oslo's reconnect delay, no retry
                assert took < 20, f"send blocked {took:.1f}s with RabbitMQ stopped"
                text = str(failure.value)
                assert f"***@{rabbitmq_server.address}" in text
                assert "guest" not in text, "the password (guest) leaked into the error"
                assert topic in text and "did not take 3 samples" in text
        finally:
            rabbitmq_server.start()
        sender.send(samples_of_every_type(f"{run}-again"))
    finally:
        sender.close()
    # oslo.messaging's default queues are not durable: the restart emptied the
    # queue, so it holds just the batch sent after it
    assert count_queued(rabbitmq_server, f"{topic}.sample") == 1


def test_send_gives_up_on_a_frozen_rabbitmq_within_the_heartbeat_timeout(rabbitmq_server):
    topic = f"zkpoll-frozen-{uuid.uuid4().hex[:8]}"
    conf = make_conf()
    sender = make_sender(conf, notifier_url(rabbitmq_server, f"?topic={topic}"))
    threshold = 2
    conf.set_override("heartbeat_timeout_threshold", threshold, group="oslo_messaging_rabbit")
    run = uuid.uuid4().hex[:8]
    try:
        sender.send(samples_of_every_type(run))
        rabbitmq_server.pause()  # TCP stays up, nothing answers: no error, only silence
        try:
            for attempt in range(2):  # waits on the pooled connection, then on a new one
                started = time.monotonic()
                with pytest.raises(PublishError, match="timed out"):
                    sender.send(samples_of_every_type(f"{run}-{attempt}"))
                took = time.monotonic() - started
                # the confirm wait is bounded by the threshold, a new connection's
                # handshake by kombu's connect timeout; generous for a busy machine
                assert took < 10 * threshold, f"send blocked {took:.1f}s on a frozen broker"
        finally:
            rabbitmq_server.resume()
        sender.send(samples_of_every_type(f"{run}-again"))
    finally:
        sender.close()


def count_queued(server: ManagedRabbitMQ, queue: str) -> int:
    result = server.ctl("list_queues", "name", "messages", "--quiet", "--no-table-headers")
    for line in result.stdout.splitlines():
        name, _, count = line.strip().partition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"queue {queue} not found: {result.stdout!r} {result.stderr!r}")
