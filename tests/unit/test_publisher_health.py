"""Health of publishers without a spool: degraded at the first lost batch.

Real publishers (file on tmp_path, udp on 127.0.0.1, a SpooledPublisher
with its sqlite3 spool and sender thread) feed the real health logic
(:mod:`zkpoll.publisher.health`, :class:`zkpoll.polling.withdrawal.Health`)
and the endpoint's ``/healthz`` and ``/metrics`` renderers.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from zkpoll.coordination import Coordinator
from zkpoll.endpoint import metrics
from zkpoll.exceptions import PublishError
from zkpoll.ownership import Partition
from zkpoll.polling import options
from zkpoll.polling.ownership_filter import OwnershipFilter
from zkpoll.polling.runner import CycleStats
from zkpoll.polling.withdrawal import Health
from zkpoll.publisher import Publisher, load_publisher
from zkpoll.publisher.base import PublisherHealth
from zkpoll.publisher.health import (
    DEGRADED,
    FAILING,
    OK,
    degraded_reason,
    publisher_summary,
    state,
)
from zkpoll.publisher.sender import BatchSender
from zkpoll.publisher.spooled import SpooledPublisher
from zkpoll.sample import Sample
from zkpoll.testing.waiting import wait_for


def make_samples(count: int) -> list[Sample]:
    now = time.time()
    return [Sample("cpu.util", "gauge", "%", float(i), f"res-{i}", timestamp=now,
                   cycle_start=now) for i in range(count)]


def blocked_file(tmp_path: Path) -> tuple[Path, Publisher]:
    """A file publisher whose directory is a regular file (root cannot write there)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    return blocker, load_publisher(None, f"file://{blocker}/samples.jsonl")


def test_state_without_a_spool_is_degraded_at_once_with_one_degraded_after_for_the_spooled():
    failing = PublisherHealth(failing_since=100.0)
    assert not failing.spooled and state(failing, 100.0, 120.0) == DEGRADED
    spooled = PublisherHealth(failing_since=100.0, spool_bytes=0)
    assert spooled.spooled and state(spooled, 100.0, 120.0) == FAILING
    assert state(spooled, 220.0, 120.0) == DEGRADED
    assert state(PublisherHealth(), 100.0, 120.0) == OK


def test_file_publisher_degrades_at_its_first_lost_batch_and_recovers_at_the_next(tmp_path):
    blocker, publisher = blocked_file(tmp_path)
    publisher.publish_samples(make_samples(3))
    health = publisher.health
    assert state(health, time.time(), 3600.0) == DEGRADED
    assert health.drops == {"write_failed": 3} and health.lost_batches == {"write_failed": 1}
    summary = publisher_summary(health, time.time(), 3600.0)
    assert summary["spooled"] is False and summary["lost_batches"] == {"write_failed": 1}
    reason = degraded_reason(publisher.redacted_url, summary)
    assert "no spool: its failed batches are lost (1 so far)" in reason
    assert f"cannot write {publisher.path}" in reason
    blocker.unlink()  # the directory can be created now: the next batch is written
    publisher.publish_samples(make_samples(2))
    health = publisher.health
    assert state(health, time.time(), 3600.0) == OK and health.last_success is not None
    assert health.lost_batches == {"write_failed": 1}  # a counter: the loss stays counted
    assert publisher.stats == {"published": 2, "dropped": 3, "errors": 1, "queue_depth": 0}
    publisher.close()


def test_a_partly_written_file_batch_is_degraded_not_a_recovery(tmp_path):
    path = tmp_path / "s.jsonl"
    (tmp_path / "s.jsonl.1").mkdir()  # rotation cannot replace a directory
    (tmp_path / "s.jsonl.1" / "keep").write_text("")
    publisher = load_publisher(None, f"file://{path}?max_bytes=200&backup_count=1")
    publisher.publish_samples(make_samples(5))
    written = len(path.read_text().splitlines())
    assert 0 < written < 5
    health = publisher.health
    assert state(health, time.time(), 3600.0) == DEGRADED and health.last_success is None
    assert publisher.stats["published"] == written and health.drops == {
        "write_failed": 5 - written}
    publisher.close()


@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def test_a_udp_batch_that_lost_one_datagram_is_degraded(udp_receiver):
    port = udp_receiver.getsockname()[1]
    publisher = load_publisher(None, f"udp://127.0.0.1:{port}?max_datagram=512")
    publisher.publish_samples(make_samples(1))
    udp_receiver.recv(65535)
    publisher._target[0].close()  # the next datagram fails (EBADF), later ones reconnect
    publisher.publish_samples(make_samples(8))  # ~200 bytes each: several datagrams
    health = publisher.health
    assert state(health, time.time(), 3600.0) == DEGRADED
    assert health.lost_batches == {"send_failed": 1} and 0 < health.drops["send_failed"] < 8
    assert publisher.stats["published"] == 1 + 8 - health.drops["send_failed"]
    publisher.publish_samples(make_samples(1))
    assert state(publisher.health, time.time(), 3600.0) == OK
    publisher.close()


class Failing(BatchSender):
    """A sink that never takes a batch (the spool and its thread are real)."""

    def send(self, samples: Sequence[Sample]) -> None:
        raise PublishError("HTTP 503 Service Unavailable")


@dataclass
class View:
    """What the endpoint reads of an agent (:class:`zkpoll.endpoint.view.AgentView`)."""

    conf: Any
    health: Health
    publishers: Mapping[str, Publisher]
    coordinator: Coordinator | None = None
    partitions: Mapping[str, Partition] = field(default_factory=dict)
    ownership: OwnershipFilter = field(default_factory=OwnershipFilter)
    last_stats: Mapping[str, CycleStats] = field(default_factory=dict)
    stopping: bool = False


def test_healthz_and_metrics_degrade_at_a_lost_batch_but_wait_for_the_spooled(tmp_path):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([])
    conf.set_override("spool_dir", str(tmp_path / "spool"), "publisher")
    conf.set_override("degraded_after", 3600.0, "publisher")
    spooled = SpooledPublisher(conf, urllib.parse.urlsplit(
        "failing://sink/?retry_backoff=0.01&max_backoff=0.05"), Failing)
    blocker, unspooled = blocked_file(tmp_path)
    publishers = {"failing": spooled, "file": unspooled}
    agent = View(conf, Health(list(publishers.values()), 3), publishers)
    spooled.publish_samples(make_samples(2))
    wait_for(lambda: spooled.health.failing, 5.0, "spooled.health.failing")
    assert metrics.health_report(agent)[1]["status"] == "ok"  # failing, within 3600 s
    unspooled.publish_samples(make_samples(3))
    status, body = metrics.health_report(agent)
    assert (status, body["status"], body["problems"]) == (200, "degraded", [])
    [line] = body["degraded"]
    assert line.startswith(f"publisher {unspooled.redacted_url} failing for ")
    assert body["publishers"][spooled.redacted_url]["state"] == FAILING
    text = metrics.render(agent)[0].decode()
    url = unspooled.redacted_url
    assert (f'zkpoll_publisher_lost_batches_total{{publisher="{url}",reason="write_failed"}}'
            f' 1.0') in text
    assert f'zkpoll_publisher_degraded{{publisher="{url}"}} 1.0' in text
    assert f'zkpoll_publisher_degraded{{publisher="{spooled.redacted_url}"}} 0.0' in text
    assert "\nzkpoll_degraded 1.0" in text
    blocker.unlink()
    unspooled.publish_samples(make_samples(1))
    assert metrics.health_report(agent)[1]["status"] == "ok"
    assert "\nzkpoll_degraded 0.0" in metrics.render(agent)[0].decode()
    spooled.close(0.1)
    unspooled.close()


def test_withdrawal_keeps_its_cycle_rule_for_a_publisher_without_a_spool(tmp_path):
    _, publisher = blocked_file(tmp_path)
    health = Health([publisher], threshold=2)
    cycle = 0

    def failed_cycle() -> None:
        nonlocal cycle
        cycle += 1
        publisher.publish_samples(make_samples(1))
        health.record(CycleStats("s", cycle, float(cycle)), interval=60.0)

    failed_cycle()
    assert health.degraded(time.time(), 3600.0)  # degraded at once ...
    assert health.unhealthy() is None  # ... but withdrawn only after withdraw_after cycles
    failed_cycle()
    assert health.unhealthy() == "every publisher failing for 2 consecutive cycles"


def test_metrics_count_handoffs_out_in_and_resources_unreachable_everywhere() -> None:
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([])
    agent = View(conf, Health([], 3), {})
    agent.health.record(CycleStats("web", 1, 10.0, handed_off=3, gave_up=1), 10.0)
    agent.health.record(CycleStats("web", 1, 10.0, catch_up=True, handoff=True, handed_in=2,
                                   gave_up=2), float("inf"))
    text = metrics.render(agent)[0].decode()
    assert 'zkpoll_handoffs_out_total{source="web"} 3.0' in text
    assert 'zkpoll_handoffs_in_total{source="web"} 2.0' in text
    assert 'zkpoll_unreachable_everywhere_total{source="web"} 3.0' in text
