"""zkpoll-status's view of publishing, from member data (pure)."""

from __future__ import annotations

from zkpoll.publisher.base import PublisherHealth
from zkpoll.publisher.health import publisher_summary
from zkpoll.status.publishers import PublisherFinding, publisher_findings


def test_degraded_is_a_warning_failing_is_not_and_ok_is_silent():
    now = 1000.0
    summaries = {
        "ok://": publisher_summary(PublisherHealth(last_success=990.0), now, 60),
        "prometheus+remote-write://p:9090/api/v1/write": publisher_summary(
            PublisherHealth(failing_since=800.0, last_success=790.0,
                            last_error="ConnectionRefusedError", depth=1200, oldest=795.0,
                            spool_bytes=120000, drops={"max_age": 3}), now, 60),
        "http://c/": publisher_summary(PublisherHealth(failing_since=990.0, spool_bytes=0),
                                       now, 60),
        "file:///full/disk.jsonl": publisher_summary(
            PublisherHealth(failing_since=999.0, last_error="No space left on device",
                            drops={"write_failed": 5}, lost_batches={"write_failed": 1}),
            now, 60),
    }
    assert summaries["prometheus+remote-write://p:9090/api/v1/write"] == {
        "state": "degraded", "failing_for_s": 200.0, "last_success": 790.0,
        "last_error": "ConnectionRefusedError", "backlog_samples": 1200,
        "oldest_undelivered_age_s": 205.0, "spool_bytes": 120000, "dropped": {"max_age": 3},
        "spooled": True, "lost_batches": {}}
    assert publisher_findings([("agent-1", {"publishers": summaries})]) == [
        PublisherFinding("agent-1", "file:///full/disk.jsonl", "degraded", True,
                         "publisher file:///full/disk.jsonl degraded for 1s (no spool: its "
                         "failed batches are lost), dropped 5 write_failed: No space left "
                         "on device"),
        PublisherFinding("agent-1", "http://c/", "failing", False,
                         "publisher http://c/ failing for 10s"),
        PublisherFinding("agent-1", "prometheus+remote-write://p:9090/api/v1/write", "degraded",
                         True, "publisher prometheus+remote-write://p:9090/api/v1/write "
                         "degraded for 200s, 1200 samples waiting in its spool (oldest 205s), "
                         "dropped 3 max_age: ConnectionRefusedError")]


def test_foreign_or_old_member_data_yields_nothing():
    assert publisher_findings([("a", {}), ("b", {"publishers": "x"}),
                               ("c", {"publishers": {"u": "bad"}}), ("d", "not a dict"),
                               ("e", {"publishers": {"u": {"state": "degraded",
                                                           "failing_for_s": "x"}}})]) == [
        PublisherFinding("e", "u", "degraded", True, "publisher u degraded")]


def test_state_boundaries():
    from zkpoll.publisher.health import state

    spooled = {"spool_bytes": 0}
    assert state(PublisherHealth(**spooled), 100.0, 10) == "ok"
    assert state(PublisherHealth(failing_since=91.0, **spooled), 100.0, 10) == "failing"
    assert state(PublisherHealth(failing_since=90.0, **spooled), 100.0, 10) == "degraded"
    assert state(PublisherHealth(failing_since=100.0, **spooled), 100.0, 0) == "degraded"
