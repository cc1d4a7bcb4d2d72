"""The spool's storage (sqlite3 in a temp dir), its drop plan and its codec."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkpoll.delivery.spool import Drops, Entry, Spool, plan_drops
from zkpoll.exceptions import ConfigError
from zkpoll.publisher.spool_codec import decode_batch, encode_batch
from zkpoll.sample import Sample


def samples(count: int, start: float = 1.7e9, volume: float = 1.0) -> list[Sample]:
    return [Sample("m.x", "gauge", "B", volume, f"r{i}", timestamp=start + 0.5,
                   resource_metadata={"k": i}, source="s", member_id="a", cycle_start=start)
            for i in range(count)]


# --- plan_drops (pure) --------------------------------------------------------

def test_plan_drops_by_age_then_by_size():
    entries = [Entry(1, 10, 100, 0.0), Entry(2, 10, 100, 50.0), Entry(3, 10, 100, 90.0)]
    assert plan_drops(entries, 300, 0, 0, 100.0) == Drops(0, 0)  # no bounds
    assert plan_drops(entries, 300, 1000, 60, 100.0) == Drops(1, 0)
    assert plan_drops(entries, 300, 150, 60, 100.0) == Drops(1, 1)
    assert plan_drops(entries, 300, 50, 0, 100.0) == Drops(0, 3)  # a bound is a bound


@given(st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 1000)), max_size=30),
       st.integers(0, 20000), st.floats(0, 500), st.floats(0, 2000))
def test_plan_drops_drops_a_minimal_prefix_that_honours_the_bounds(items, max_bytes, max_age,
                                                                   now):
    entries = [Entry(i, 1, size, oldest) for i, (size, oldest) in enumerate(items)]
    total = sum(e.size for e in entries)
    plan = plan_drops(entries, total, max_bytes, max_age, now)
    dropped = plan.by_age + plan.by_size
    kept = entries[dropped:]
    if max_bytes:
        assert sum(e.size for e in kept) <= max_bytes
    if plan.by_size:  # dropping one fewer would break the size bound
        assert sum(e.size for e in entries[dropped - 1:]) > max_bytes
    assert all(now - e.oldest > max_age for e in entries[:plan.by_age])
    if max_age and kept and not plan.by_size:
        assert now - kept[0].oldest <= max_age


# --- Spool (real sqlite3 files) -------------------------------------------------

def test_append_head_ack_in_order_and_survive_a_reopen(tmp_path: Path):
    spool = Spool(tmp_path / "s")
    for n in (3, 4, 5):
        spool.append(encode_batch(samples(n))[0], n, 1.7e9)
    assert (spool.depth, spool.batches) == (12, 3)
    head = spool.head(7)
    assert [e.count for e, _ in head] == [3, 4]
    spool.ack(head[-1][0].seq)
    spool.close()
    again = Spool(tmp_path / "s")
    assert (again.depth, again.batches) == (5, 1)
    [(entry, body)] = again.head(1)  # at least one batch even when it is bigger
    assert entry.count == 5 and len(decode_batch(body)) == 5
    again.close()


def test_a_second_user_of_a_spool_directory_is_refused(tmp_path: Path):
    spool = Spool(tmp_path / "s")
    with pytest.raises(ConfigError, match="in use by pid .*must not share a spool"):
        Spool(tmp_path / "s")
    spool.close()
    Spool(tmp_path / "s").close()  # free again once closed


def test_unusable_directory_is_a_config_error(tmp_path: Path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"spool_dir: cannot use .*file/s"):
        Spool(tmp_path / "file" / "s")
    with pytest.raises(ConfigError, match="spool_fsync"):
        Spool(tmp_path / "s", fsync="sometimes")


def test_bounds_drop_the_oldest_but_never_the_batch_in_flight(tmp_path: Path):
    spool = Spool(tmp_path / "s")
    body = encode_batch(samples(2))[0]
    first = spool.append(body, 2, 100.0)
    spool.append(body, 2, 200.0)
    spool.append(body, 2, 300.0)
    by_age, by_size = spool.enforce_bounds(0, 150.0, 360.0, keep_through=first.seq)
    assert [e.oldest for e in by_age] == [200.0] and by_size == []
    by_age, by_size = spool.enforce_bounds(len(body), 0, 360.0)
    assert [e.oldest for e in by_size] == [100.0]
    assert spool.depth == 2 and spool.size == len(body)
    spool.close()


def test_accepted_batches_survive_kill_9(tmp_path: Path):
    script = textwrap.dedent(f"""
        import os, signal
        from zkpoll.delivery.spool import Spool
        spool = Spool({str(tmp_path / 's')!r})
        for i in range(50):
            spool.append(b'x', 10, 1.0)
        spool.ack(20)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = subprocess.run([sys.executable, "-c", script], check=False)
    assert run.returncode == -9
    spool = Spool(tmp_path / "s")  # the dead process's lock is gone with it
    assert (spool.batches, spool.depth) == (30, 300)
    spool.close()


# --- codec ------------------------------------------------------------------

def test_codec_round_trip_keeps_every_field_and_the_deterministic_id():
    original = samples(3)
    body, count, bad = encode_batch(original)
    assert (count, bad) == (3, [])
    decoded = decode_batch(body)
    assert [s.as_dict() for s in decoded] == [s.as_dict() for s in original]
    assert [s.id for s in decoded] == [s.id for s in original]
    assert len(body) / 3 < 130  # compact: no key names
    big = samples(500)
    assert len(encode_batch(big)[0]) / 500 < 60  # shared fields stored once


def test_codec_keeps_labels_and_every_float_staleness_markers_included():
    from zkpoll.sample import STALE_NAN, is_stale
    batch = samples(5)
    for sample, volume in zip(batch, (math.nan, math.inf, -math.inf, STALE_NAN, 1.5),
                              strict=True):
        sample.volume = volume
        sample.labels = {"job": "node", "instance": f"h:{sample.resource_id}"}
    body, count, bad = encode_batch(batch)
    assert (count, bad) == (5, [])
    back = decode_batch(body)
    assert math.isnan(back[0].volume) and not is_stale(back[0].volume)
    assert [v.volume for v in back[1:3]] == [math.inf, -math.inf]
    assert is_stale(back[3].volume) and back[4].volume == 1.5
    assert [s.labels for s in back] == [s.labels for s in batch]
    assert [s.id for s in back] == [s.id for s in batch]


def test_codec_leaves_out_what_json_cannot_hold_and_says_why():
    batch = samples(3)
    batch[1].labels = {"obj": object()}  # type: ignore[dict-item]
    batch[2].resource_metadata = {"obj": object()}
    body, count, bad = encode_batch(batch)
    assert count == 1 and [s.resource_id for s, _ in bad] == ["r1", "r2"]
    assert [s.resource_id for s in decode_batch(body)] == ["r0"]
    with pytest.raises(ValueError, match="version 1"):
        decode_batch(b"[]")
    with pytest.raises(ValueError, match="wrong shape"):
        decode_batch(b'{"v":1,"t":[],"s":[[0,1,"r",1]]}')
