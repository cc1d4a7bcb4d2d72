"""SpooledPublisher: the spool's sender thread, retries, drops and restarts.

The sink here is an in-process BatchSender that records or fails on demand
(the thread, the sqlite3 spool and the timing are real); real sinks are
tested in tests/functional (test_http_publisher, test_remote_write).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import pytest
from oslo_config import cfg

from zkpoll.delivery import backoff_delay
from zkpoll.exceptions import BatchRejected, ConfigError, PublishError
from zkpoll.polling import options
from zkpoll.publisher.sender import BatchSender
from zkpoll.publisher.spool_options import spool_name
from zkpoll.publisher.spooled import SpooledPublisher
from zkpoll.sample import Sample
from zkpoll.testing.waiting import wait_for

FAST = "retry_backoff=0.01&max_backoff=0.05"


class Recorder(BatchSender):
    """Records batches; ``fail`` (a PublishError or BatchRejected) makes send raise."""

    sink = "recorder"
    batches: list[list[str]]
    fail: Exception | None = None
    urls: list[str]

    def __init__(self, conf, url):
        super().__init__(conf, url)
        self.urls.append(url.geturl())

    def send(self, samples: Sequence[Sample]) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append([s.resource_id for s in samples])


@pytest.fixture
def recorder() -> type[Recorder]:
    return type("Rec", (Recorder,), {"batches": [], "fail": None, "urls": []})


def make_conf(tmp_path: Path, **overrides: object) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([])
    conf.set_override("spool_dir", str(tmp_path / "spool"), "publisher")
    for name, value in overrides.items():
        conf.set_override(name, value, "publisher")
    return conf


def samples(count: int, start: int = 0, when: float | None = None) -> list[Sample]:
    when = time.time() if when is None else when
    return [Sample("m", "gauge", "B", 1.0, f"r{i:04d}", timestamp=when, cycle_start=when)
            for i in range(start, start + count)]


def publisher(conf, recorder, query: str = FAST) -> SpooledPublisher:
    return SpooledPublisher(conf, urllib.parse.urlsplit(f"rec://sink/?{query}"), recorder)


def delivered(recorder: type[Recorder]) -> list[str]:
    return [r for batch in recorder.batches for r in batch]


def test_delivers_in_order_in_batches_of_batch_size(tmp_path, recorder):
    pub = publisher(make_conf(tmp_path), recorder, f"batch_size=10&{FAST}")
    for i in range(5):
        pub.publish_samples(samples(4, start=i * 4))
    wait_for(lambda: pub.stats["published"] == 20, 5.0, 'pub.stats["published"] == 20')
    assert delivered(recorder) == [f"r{i:04d}" for i in range(20)]
    assert all(len(b) <= 10 for b in recorder.batches)
    assert recorder.urls == ["rec://sink/"]  # the spool's options are not the sender's
    health = pub.health
    assert health.depth == 0 and not health.failing and health.last_success
    pub.close()


def test_failures_are_retried_without_limit_and_nothing_is_lost(tmp_path, recorder, caplog):
    recorder.fail = PublishError("HTTP 503 Service Unavailable")
    pub = publisher(make_conf(tmp_path), recorder)
    with caplog.at_level(logging.WARNING):
        pub.publish_samples(samples(3))
        wait_for(lambda: pub.stats["errors"] >= 5, 5.0, 'pub.stats["errors"] >= 5')
    health = pub.health
    assert health.failing and health.depth == 3 and health.oldest is not None
    assert "503" in (health.last_error or "") and "retrying without limit" in caplog.text
    assert pub.probe() is False
    recorder.fail = None
    wait_for(lambda: pub.stats["published"] == 3, 5.0, 'pub.stats["published"] == 3')
    assert delivered(recorder) == ["r0000", "r0001", "r0002"]
    assert pub.stats["dropped"] == 0 and not pub.health.failing and pub.probe() is True
    pub.close()


def test_a_rejected_batch_is_dropped_counted_and_logged(tmp_path, recorder, caplog):
    recorder.fail = BatchRejected("HTTP 400 Bad Request: 'out of bounds'")
    pub = publisher(make_conf(tmp_path), recorder)
    with caplog.at_level(logging.ERROR):
        pub.publish_samples(samples(4))
        wait_for(lambda: pub.stats["dropped"] == 4, 5.0, 'pub.stats["dropped"] == 4')
    assert pub.health.drops == {"rejected": 4} and pub.health.depth == 0
    assert "rejected 4 of 4 samples for good" in caplog.text and "out of bounds" in caplog.text
    pub.close()


def test_size_bound_drops_the_oldest_loudly_with_counts(tmp_path, recorder, caplog):
    recorder.fail = PublishError("down")
    one_batch = len(__import__("zkpoll.publisher.spool_codec", fromlist=["x"])
                    .encode_batch(samples(10))[0])
    # batch_size=10: the sender takes one batch per attempt, so the batches the
    # bound may not drop (the send in flight) are at most one; with the default
    # (500) a sender that starts late on a busy machine holds all of them
    pub = publisher(make_conf(tmp_path, spool_max_bytes=3 * one_batch), recorder,
                    "retry_backoff=10&max_backoff=10&batch_size=10")
    with caplog.at_level(logging.ERROR):
        for i in range(6):
            pub.publish_samples(samples(10, start=i * 10))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # how many go at once depends on whether the sender holds the head batch then
    # (the bound never drops the batch being sent): 10 or 20, never silently
    assert any(re.search(r"DROPPED the (10|20) oldest undelivered samples", m)
               and "spool_max_bytes" in m for m in errors), errors
    health = pub.health
    kept = health.depth
    assert health.drops["max_bytes"] + kept == 60 and pub.stats["dropped"] == 60 - kept
    assert kept >= 20 and health.spool_bytes is not None
    # the bound never drops the send in flight (one batch here): at most one over it
    assert health.spool_bytes <= 4 * one_batch
    pub.close(timeout=0)


def test_age_bound_drops_samples_older_than_max_age(tmp_path, recorder, caplog):
    recorder.fail = PublishError("down")
    pub = publisher(make_conf(tmp_path, spool_max_age=60), recorder,
                    "retry_backoff=10&max_backoff=10")
    with caplog.at_level(logging.ERROR):
        pub.publish_samples(samples(5, when=time.time() - 3600))
        pub.publish_samples(samples(5, start=5))
    assert pub.health.drops == {"max_age": 5} and pub.health.depth == 5
    assert "spool_max_age=60s" in caplog.text
    pub.close(timeout=0)


def test_a_restart_resumes_from_the_last_acknowledged_batch(tmp_path, recorder):
    conf = make_conf(tmp_path)
    recorder.fail = PublishError("down")
    first = publisher(conf, recorder)
    first.publish_samples(samples(5))
    first.publish_samples(samples(5, start=5))
    first.close(timeout=0.1)
    assert first.health.depth == 10
    recorder.fail = None
    second = publisher(conf, recorder)
    assert second.health.depth == 10  # found on disk before anything new arrives
    second.publish_samples(samples(5, start=10))
    wait_for(lambda: second.stats["published"] == 15, 5.0, 'second.stats["published"] == 15')
    assert delivered(recorder) == [f"r{i:04d}" for i in range(15)]
    second.close()


def test_one_spool_per_url_and_never_shared(tmp_path, recorder):
    conf = make_conf(tmp_path)
    pub = publisher(conf, recorder)
    assert pub.spool.directory == tmp_path / "spool" / spool_name("rec://sink/?" + FAST)
    assert (pub.spool.directory / "url").read_text().strip() == "rec://sink/?" + FAST
    with pytest.raises(ConfigError, match="must not share a spool"):
        publisher(conf, recorder)
    assert spool_name("http://u:secret@h/") == spool_name("http://u:other@h/")
    assert spool_name("http://h/a?batch_size=5") == spool_name("http://h/a?timeout=3")
    assert spool_name("http://h/a").startswith("http-") and \
        spool_name("http://h/a") != spool_name("http://h/b")
    pub.close()


@pytest.mark.parametrize("param", ["max_retries", "max_queue"])
def test_removed_options_are_refused_with_the_reason(tmp_path, recorder, param):
    with pytest.raises(ConfigError, match=f"parameter '{param}' was removed: .*spool"):
        publisher(make_conf(tmp_path), recorder, f"{param}=3")


def test_close_keeps_what_the_sink_did_not_take_and_refuses_new_samples(tmp_path, recorder,
                                                                        caplog):
    recorder.fail = PublishError("down")
    pub = publisher(make_conf(tmp_path), recorder)
    pub.publish_samples(samples(3))
    with caplog.at_level(logging.WARNING):
        pub.close(timeout=0.2)
        pub.publish_samples(samples(2))
    assert "3 undelivered samples stay in the spool" in caplog.text
    assert pub.health.drops == {"closed": 2}


def test_publish_is_thread_safe(tmp_path, recorder):
    pub = publisher(make_conf(tmp_path), recorder)
    threads = [threading.Thread(target=lambda i=i: [pub.publish_samples(samples(5, i * 100 + j * 5))
                                                    for j in range(20)]) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: pub.stats["published"] == 400, 5.0, 'pub.stats["published"] == 400')
    assert sorted(delivered(recorder)) == sorted(f"r{i:04d}" for i in range(400))
    pub.close()


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_delay(n, 1.0, 30.0, 1.0) for n in (1, 2, 3, 5, 6, 100)] == [
        1.0, 2.0, 4.0, 16.0, 30.0, 30.0]
    assert backoff_delay(3, 1.0, 30.0, 0.5) == 2.0


def test_default_spool_dir_follows_systemd_state_directory(tmp_path, monkeypatch):
    from zkpoll.publisher.spool_options import spool_settings

    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/central:{tmp_path}/other")
    assert spool_settings(None).directory == tmp_path / "central" / "spool"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert spool_settings(make_conf(tmp_path)).directory == tmp_path / "spool"


def test_a_spool_nobody_sends_any_more_is_named_at_start(tmp_path, recorder, caplog,
                                                         monkeypatch):
    from zkpoll.publisher import spooled

    conf = make_conf(tmp_path)
    recorder.fail = PublishError("down")
    old = SpooledPublisher(conf, urllib.parse.urlsplit(f"old://gone/?{FAST}"), recorder)
    old.publish_samples(samples(4))
    old.close(timeout=0)
    recorder.fail = None
    monkeypatch.setattr(spooled, "_ORPHANS_CHECKED", set())  # as in a new agent process
    with caplog.at_level(logging.WARNING):
        pub = publisher(conf, recorder)
        pub.publish_samples(samples(1))
    assert f"(publisher old://gone/?{FAST}) holds 4 undelivered samples" in caplog.text
    pub.close()
