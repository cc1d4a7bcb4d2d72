"""Alarm notifications against a real webhook receiver (zkpoll.testing.webhook):
headers and body, outages, rejections, bounds, kill -9 and restart, HTTPS."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.alarm import notify_options
from zkpoll.alarm.notify import Notification, Notifiers
from zkpoll.alarm.notify_codec import encode_row
from zkpoll.testing.tls import Certificates, make_certificates
from zkpoll.testing.waiting import wait_for
from zkpoll.testing.webhook import WebhookReceiver

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
FAST = "retry_backoff=0.02&max_backoff=0.1&timeout=5"


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    """Factory: ``webhook_receiver(**kwargs)`` starts a WebhookReceiver; all closed after."""
    receivers: list[WebhookReceiver] = []

    def start(**kwargs: Any) -> WebhookReceiver:
        receiver = WebhookReceiver(**kwargs).start()
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.close()


@pytest.fixture
def notifiers(tmp_path: Path) -> Iterator[Callable[..., Notifiers]]:
    """Factory: ``notifiers(urls, conf=None)`` over ``tmp_path/spool``; closed after."""
    made: list[Notifiers] = []

    def make(urls: list[str], conf: Any = None) -> Notifiers:
        made.append(Notifiers(conf, tmp_path / "spool", urls))
        return made[-1]

    yield make
    for item in made:
        item.close(timeout=1.0)


def body(alarm: str, seq: int, **extra: Any) -> dict[str, Any]:
    """An Aodh-style notification body."""
    return {"alarm_id": alarm, "alarm_name": alarm.upper(), "severity": "critical",
            "previous": "ok", "current": "alarm", "reason": f"transition {seq}",
            "reason_data": {"type": "threshold", "disposition": "outside", "count": 3,
                            "most_recent": 0.93},
            "idempotency_key": f"{alarm}:{seq}", **extra}


def batch(url: str, alarm: str, seqs: range) -> list[Notification]:
    return [Notification(f"{alarm}:{s}", url, body(alarm, s)) for s in seqs]


def stats_of(notifiers: Notifiers, url: str) -> dict[str, Any]:
    return notifiers.stats()[url.split("?", 1)[0]]


def alarm_conf(**overrides: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opts(notify_options.OPTS, group="alarm")
    conf([])
    for name, value in overrides.items():
        conf.set_override(name, value, group="alarm")
    return conf


# --- delivery --------------------------------------------------------------------------


def test_delivery_headers_and_body(webhook_receiver: Callable[..., WebhookReceiver],
                                   notifiers: Callable[..., Notifiers]) -> None:
    receiver = webhook_receiver()
    url = receiver.url_for("/hooks/alarm", FAST, userinfo="ops:s3cret")
    sent = body("web-cpu", 3)
    notifiers([url]).notify([Notification("web-cpu:3", url, sent)])
    [delivery] = receiver.wait_for(1)
    assert delivery.path == "/hooks/alarm"  # the query string (our options) is not sent
    assert delivery.body == sent
    assert delivery.key == "web-cpu:3"
    assert delivery.header("Content-Type") == "application/json"
    assert re.fullmatch(r"zkpoll/\d+\.\d+\.\d+\S*", delivery.header("User-Agent") or "")
    assert re.fullmatch(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        delivery.header("X-OpenStack-Request-Id") or "")
    assert delivery.header("Authorization") == "Basic b3BzOnMzY3JldA=="


def test_many_alarms_many_urls_and_log(webhook_receiver: Callable[..., WebhookReceiver],
                                       notifiers: Callable[..., Notifiers],
                                       caplog: pytest.LogCaptureFixture) -> None:
    first, second = webhook_receiver(), webhook_receiver()
    url1, url2 = first.url_for("/a", FAST), second.url_for("/b", FAST)
    group = notifiers([url1, url2, "log://"])
    with caplog.at_level(logging.WARNING, logger="zkpoll.alarm"):
        group.notify(batch(url1, "x", range(3)) + batch(url2, "y", range(2))
                     + [Notification("z:1", "log://", body("z", 1))] + batch(url1, "x",
                                                                           range(3, 5)))
    assert [d.key for d in first.wait_for(5)] == [f"x:{i}" for i in range(5)]
    assert [d.key for d in second.wait_for(2)] == ["y:0", "y:1"]
    lines = [r.getMessage() for r in caplog.records if r.name == "zkpoll.alarm.notify"]
    assert lines == ["alarm z (Z): ok -> alarm, severity critical: transition 1 [key z:1]"]
    wait_for(lambda: stats_of(group, url1)["delivered"] == 5
             and stats_of(group, url2)["delivered"] == 2, 30, "the stats")
    stats = group.stats()
    assert stats["log://"] == {"delivered": 1}
    assert stats_of(group, url2)["delivered"] == 2
    assert stats_of(group, url1)["queued"] == 0


# --- failures -----------------------------------------------------------------------------


def delivered_keys(receiver: WebhookReceiver, distinct: int,
                   timeout: float = 60.0) -> list[str | None]:
    """The keys of the 2xx deliveries, once ``distinct`` different keys arrived.

    A delivery can arrive twice (at least once): when a POST times out on a
    busy machine after the receiver read it, the sender retries it, with
    the same key.
    """
    wait_for(lambda: len({d.key for d in receiver.deliveries()}) >= distinct, timeout,
               f"{distinct} distinct keys delivered")
    return [d.key for d in receiver.deliveries()]


def first_deliveries(keys: list[str | None]) -> list[str | None]:
    """``keys`` without repeats, in order of first delivery."""
    return list(dict.fromkeys(keys))


def assert_redelivered_only_after_timeouts(keys: list[str | None],
                                           caplog: pytest.LogCaptureFixture) -> None:
    if len(keys) > len(set(keys)):
        assert any("timed out" in r.getMessage() for r in caplog.records), \
            f"a key delivered twice without a timeout: {keys}"


def test_outage_then_everything_in_order(webhook_receiver: Callable[..., WebhookReceiver],
                                         notifiers: Callable[..., Notifiers],
                                         caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/alarm", FAST)
    group = notifiers([url])
    with caplog.at_level(logging.WARNING, logger="zkpoll.alarm"):
        for start in range(0, 20, 4):  # five notify() calls: five spool rows
            group.notify(batch(url, "a", range(start, start + 4)))
        receiver.wait_for_requests(3)
        during = stats_of(group, url)
        assert during["delivered"] == 0 and during["queued"] == 20
        assert during["retried"] >= 1 and "503" in during["last_error"]
        assert group.health()[url.split("?")[0]].failing
        receiver.answer(200)
        keys = delivered_keys(receiver, 20)
    assert first_deliveries(keys) == [f"a:{i}" for i in range(20)]  # in order, none lost
    assert_redelivered_only_after_timeouts(keys, caplog)
    assert all(d.key == "a:0" for d in receiver.requests() if d.status == 503)
    wait_for(lambda: stats_of(group, url)["queued"] == 0, 30, "an empty spool")
    after = stats_of(group, url)
    assert {"delivered", "retried", "rejected", "dropped", "queued", "oldest_age_s"} <= set(after)
    assert (after["delivered"], after["dropped"], after["rejected"]) == (20, 0, 0)
    assert after["oldest_age_s"] is None
    assert not group.health()[url.split("?")[0]].failing
    assert any("retrying without limit" in r.getMessage() for r in caplog.records)


def test_stalled_receiver_times_out_and_is_retried(
        webhook_receiver: Callable[..., WebhookReceiver],
        notifiers: Callable[..., Notifiers]) -> None:
    receiver = webhook_receiver()
    receiver.stall()
    url = receiver.url_for("/alarm", "retry_backoff=0.02&max_backoff=0.1&timeout=0.3")
    group = notifiers([url])
    group.notify(batch(url, "s", range(3)))
    wait_for(lambda: stats_of(group, url)["retried"] >= 2, 60, "two timed-out attempts")
    assert "timed out" in stats_of(group, url)["last_error"]
    receiver.release()
    assert [d.key for d in receiver.wait_for(3)] == ["s:0", "s:1", "s:2"]


def test_rejections_are_dropped_and_counted(webhook_receiver: Callable[..., WebhookReceiver],
                                            notifiers: Callable[..., Notifiers],
                                            caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver()
    receiver.answer(400, count=2)
    url = receiver.url_for("/alarm", FAST)
    group = notifiers([url])
    with caplog.at_level(logging.ERROR, logger="zkpoll.alarm"):
        group.notify(batch(url, "r", range(5)))
        assert [d.key for d in receiver.wait_for(3)] == ["r:2", "r:3", "r:4"]
        wait_for(lambda: stats_of(group, url)["queued"] == 0, 30, "an empty spool")
    stats = stats_of(group, url)
    assert (stats["rejected"], stats["dropped"], stats["delivered"]) == (2, 0, 3)
    assert stats["drops"] == {"rejected": 2} and stats["retried"] == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert [m for m in errors if "rejected notification r:0" in m and "HTTP 400" in m]
    assert [m for m in errors if "rejected notification r:1" in m]


@pytest.mark.parametrize("status", [408, 429, 500])
def test_retryable_statuses_are_retried(status: int,
                                        webhook_receiver: Callable[..., WebhookReceiver],
                                        notifiers: Callable[..., Notifiers]) -> None:
    receiver = webhook_receiver()
    receiver.answer(status, count=2)
    url = receiver.url_for("/alarm", FAST)
    group = notifiers([url])
    group.notify(batch(url, "t", range(2)))
    assert [d.key for d in receiver.wait_for(2)] == ["t:0", "t:1"]
    assert [d.status for d in receiver.requests()] == [status, status, 200, 200]
    wait_for(lambda: stats_of(group, url)["delivered"] == 2, 30, "the stats")
    assert (stats_of(group, url)["retried"], stats_of(group, url)["rejected"]) == (2, 0)


def test_size_bound_drops_the_oldest(webhook_receiver: Callable[..., WebhookReceiver],
                                     notifiers: Callable[..., Notifiers],
                                     caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/alarm", FAST)
    row = len(encode_row(batch(url, "b", range(1))))  # every row of this test has this size
    group = notifiers([url], alarm_conf(notify_spool_max_bytes=row * 3))
    with caplog.at_level(logging.ERROR, logger="zkpoll.alarm"):
        for seq in range(10):
            group.notify(batch(url, "b", range(seq, seq + 1)))
        wait_for(lambda: stats_of(group, url)["queued"] == 3, 30, "the drops")
        receiver.answer(200)
        assert [d.key for d in receiver.wait_for(3)] == ["b:7", "b:8", "b:9"]
        wait_for(lambda: stats_of(group, url)["queued"] == 0, 30, "an empty spool")
    stats = stats_of(group, url)
    assert stats["drops"] == {"max_bytes": 7} and stats["dropped"] == 7
    assert any("notify_spool_max_bytes" in r.getMessage() and "DROPPED" in r.getMessage()
               for r in caplog.records)


def test_age_bound_drops_old_notifications(webhook_receiver: Callable[..., WebhookReceiver],
                                           notifiers: Callable[..., Notifiers],
                                           caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/alarm", FAST)
    group = notifiers([url], alarm_conf(notify_spool_max_age=0.2))
    with caplog.at_level(logging.ERROR, logger="zkpoll.alarm"):
        group.notify(batch(url, "old", range(3)))
        wait_for(lambda: stats_of(group, url)["drops"].get("max_age") == 3, 30,
                   "the age drop")
    assert stats_of(group, url)["queued"] == 0
    assert receiver.deliveries() == []
    assert any("notify_spool_max_age=0.2s" in r.getMessage() and "DROPPED the 3 oldest"
               in r.getMessage() for r in caplog.records)


def test_close_keeps_the_rest_on_disk(webhook_receiver: Callable[..., WebhookReceiver],
                                      tmp_path: Path) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/alarm", FAST)
    first = Notifiers(None, tmp_path, [url])
    first.notify(batch(url, "c", range(4)))
    receiver.wait_for_requests(1)
    assert first.close(timeout=0.5) == 4
    receiver.answer(200)
    with Notifiers(None, tmp_path, [url]):  # the backlog goes out at start
        assert [d.key for d in receiver.wait_for(4)] == ["c:0", "c:1", "c:2", "c:3"]


def test_orphaned_spool_is_named(webhook_receiver: Callable[..., WebhookReceiver],
                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/gone", FAST)
    first = Notifiers(None, tmp_path, [url])
    first.notify(batch(url, "o", range(2)))
    first.close(timeout=0)
    with caplog.at_level(logging.WARNING, logger="zkpoll.alarm"), \
            Notifiers(None, tmp_path, ["log://"]):
        pass
    assert any("holds 2 undelivered notifications" in r.getMessage()
               and url.split("?")[0] in r.getMessage() for r in caplog.records)


# --- kill -9 and restart ---------------------------------------------------------------------

_CHILD = """
import os, pathlib, signal, sys
from zkpoll.alarm.notify import Notification, Notifiers
from zkpoll.alarm.notify_codec import encode_row
root, url, count = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
notifiers = Notifiers(None, root, [url])
seq = 0
while seq < count:  # rows of 1, 2 and 3 notifications
    size = min(count - seq, seq % 3 + 1)
    notifiers.notify([Notification(f"k:{i}", url, {"alarm_id": "k", "seq": i,
                                                    "idempotency_key": f"k:{i}"})
                      for i in range(seq, seq + size)])
    seq += size
print("enqueued", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def run_killed_child(root: Path, url: str, count: int) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-c", _CHILD, str(root), url, str(count)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == -9, done.stderr
    assert done.stdout.strip() == "enqueued", done.stderr


def test_killed_during_outage_restart_delivers_all_in_order(
        webhook_receiver: Callable[..., WebhookReceiver], tmp_path: Path) -> None:
    receiver = webhook_receiver()
    receiver.answer(503)
    url = receiver.url_for("/alarm", FAST)
    run_killed_child(tmp_path, url, 30)
    receiver.answer(200)
    with Notifiers(None, tmp_path, [url]) as restarted:
        keys = delivered_keys(receiver, 30)
        assert first_deliveries(keys) == [f"k:{i}" for i in range(30)]
        wait_for(lambda: stats_of(restarted, url)["queued"] == 0, 30, "an empty spool")
    assert all(d.status == 503 for d in receiver.requests()[:-len(keys)])  # the child failed


def test_killed_while_delivering_restart_loses_nothing(
        webhook_receiver: Callable[..., WebhookReceiver], tmp_path: Path) -> None:
    receiver = webhook_receiver(delay=0.02)  # the child is killed in the middle
    url = receiver.url_for("/alarm", FAST)
    run_killed_child(tmp_path, url, 40)
    expected = [f"k:{i}" for i in range(40)]
    with Notifiers(None, tmp_path, [url]):
        wait_for(lambda: set(receiver.keys()) >= set(expected), 60, "every key")
    deliveries = receiver.deliveries()
    first_seen = list(dict.fromkeys(d.key for d in deliveries))
    assert first_seen == expected  # none missing, first deliveries in order
    bodies: dict[str | None, Any] = {}
    for delivery in deliveries:  # a redelivery carries the same key and the same body
        assert bodies.setdefault(delivery.key, delivery.body) == delivery.body
        assert delivery.body["idempotency_key"] == delivery.key


# --- HTTPS -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def test_https_with_ca_file(webhook_receiver: Callable[..., WebhookReceiver],
                            notifiers: Callable[..., Notifiers],
                            certificates: Certificates) -> None:
    receiver = webhook_receiver(certificates=certificates)
    url = receiver.url_for("/alarm", f"{FAST}&ca_file={certificates.ca}")
    notifiers([url]).notify(batch(url, "tls", range(2)))
    assert [d.key for d in receiver.wait_for(2)] == ["tls:0", "tls:1"]


def test_https_unverifiable_certificate_is_retried(
        webhook_receiver: Callable[..., WebhookReceiver],
        notifiers: Callable[..., Notifiers], certificates: Certificates,
        caplog: pytest.LogCaptureFixture) -> None:
    receiver = webhook_receiver(certificates=certificates)
    url = receiver.url_for("/alarm", FAST)  # the system CAs do not know the test CA
    group = notifiers([url])
    group.notify(batch(url, "v", range(1)))
    wait_for(lambda: stats_of(group, url)["retried"] >= 2, 60, "two failed handshakes")
    assert "CERTIFICATE_VERIFY_FAILED" in stats_of(group, url)["last_error"]
    assert receiver.requests() == [] and receiver.tls_failures >= 1
    insecure = receiver.url_for("/insecure", f"{FAST}&verify=false")
    with caplog.at_level(logging.WARNING, logger="zkpoll.alarm"):
        group.ensure([insecure])
    assert any("verification is disabled" in r.getMessage() for r in caplog.records)
    group.notify(batch(insecure, "i", range(1)))
    assert [d.path for d in receiver.wait_for(1)] == ["/insecure"]


def test_https_client_certificate(webhook_receiver: Callable[..., WebhookReceiver],
                                  notifiers: Callable[..., Notifiers],
                                  certificates: Certificates) -> None:
    receiver = webhook_receiver(certificates=certificates, require_client_cert=True)
    url = receiver.url_for("/alarm", f"{FAST}&ca_file={certificates.ca}"
                                     f"&cert_file={certificates.client_cert}"
                                     f"&key_file={certificates.client_key}")
    notifiers([url]).notify(batch(url, "m", range(1)))
    assert [d.key for d in receiver.wait_for(1)] == ["m:0"]
    anonymous = receiver.url_for("/anon", f"{FAST}&ca_file={certificates.ca}")
    group = notifiers([anonymous])
    group.notify(batch(anonymous, "n", range(1)))
    wait_for(lambda: stats_of(group, anonymous)["retried"] >= 1, 60, "a refused handshake")
    assert [d.path for d in receiver.requests()] == ["/alarm"]
