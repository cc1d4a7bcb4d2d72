"""The analysis of the alarm bench (``benchmarks._alarm_analysis``): schedule, metrics.

Pure functions on hand-made evaluation records (the bench itself runs in
``tests/functional/test_alarm_analysis.py``).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from benchmarks import _alarm_analysis as analysis
from benchmarks._alarm_analysis import Evaluation
from benchmarks._bench_util import percentile
from zkpoll.alarm.definitions import load_alarm_dir


def ev(agent: str, alarm: str, cycle: int, t: float, *, start: float | None = None,
       result: str = "written", transition: bool = False, seq: int = 1,
       kind: str = "cycle") -> object:
    start = cycle * 10.0 if start is None else start
    return Evaluation(agent, alarm, cycle, start, f"{agent}-member", kind, result, "ok", seq,
                      transition, t)


@given(index=st.integers(0, 10**6), interval=st.integers(1, 600), flip=st.integers(1, 20),
       cycle=st.integers(1, 10**7), phase=st.floats(0, 0.999))
def test_flip_schedule_changes_value_exactly_in_the_documented_cycles(
        index: int, interval: int, flip: int, cycle: int, phase: float) -> None:
    offset = phase * interval  # the source offset is below one interval
    before = analysis.flip_value(index, (cycle - 1) * interval + offset, interval, flip)
    now = analysis.flip_value(index, cycle * interval + offset, interval, flip)
    assert (before != now) == ((cycle + index) % flip == 0)


def test_one_alarm_in_flip_every_changes_state_per_cycle() -> None:
    interval, flip, alarms = 60, 10, 1000
    changed = [sum(1 for i in range(alarms)
                   if analysis.flip_value(i, (c - 1) * interval + 3.2, interval, flip)
                   != analysis.flip_value(i, c * interval + 3.2, interval, flip))
               for c in range(100, 120)]
    assert changed == [alarms // flip] * 20


def test_flip_alarms_yaml_is_a_valid_alarm_directory(tmp_path: Path) -> None:
    ids = [f"alarm-{i:05d}" for i in range(7)]
    (tmp_path / "part000.yaml").write_text(
        analysis.flip_alarms_yaml(ids, 60, 10, "http://127.0.0.1:9/alarm"))
    alarms = load_alarm_dir(str(tmp_path)).by_id()
    assert sorted(alarms) == ids
    a3 = alarms["alarm-00003"]
    assert a3.type == "prometheus" and a3.evaluation_interval == 60
    assert a3.query == "floor((vector(time()) + 180) / 600) % 2"
    assert (a3.comparison_operator, a3.threshold) == ("gt", 0.5)
    assert a3.alarm_actions == a3.ok_actions == ("http://127.0.0.1:9/alarm",)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 99) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_eval_metrics_lag_throughput_gaps_duplicates() -> None:
    ids = {"a", "b", "c", "d"}
    evals = [
        # cycle 1 (start 10): e0 wrote a, b at 12; e1 wrote c at 14, d at 15
        ev("e0", "a", 1, 12.0), ev("e0", "b", 1, 12.0),
        ev("e1", "c", 1, 14.0, transition=True), ev("e1", "d", 1, 15.0),
        # cycle 2 (start 20): d missing, a written twice, one lost attempt
        ev("e0", "a", 2, 21.0), ev("e1", "a", 2, 22.0), ev("e0", "b", 2, 21.0),
        ev("e1", "c", 2, 22.0), ev("e0", "c", 2, 22.5, result="lost"),
        # cycle 3 is not measured
        ev("e0", "a", 3, 99.0),
    ]
    m = analysis.eval_metrics(evals, [1, 2], ids)
    assert m["evaluations"] == 8
    # lags of the written ones: 2, 2, 4, 5 | 1, 2, 1, 2
    assert m["lag_p50_s"] == 2.0 and m["lag_p99_s"] == 5.0 and m["lag_max_s"] == 5.0
    # batches: e0/1: 2 in 2 s; e1/1: 2 in 5 s; e0/2: 2 in 1 s; e1/2: 2 in 2 s
    assert m["evaluations_per_s_per_evaluator"] == round((1 + 0.4 + 2 + 1) / 4, 1)
    assert m["gaps"] == 1 and m["duplicates"] == 1 and m["transitions"] == 1


def test_failover_metrics_orphans_delays_missed_and_duplicates() -> None:
    ids = {"a", "b", "c", "d"}
    t_kill, c1_start = 19.0, 20.0  # cycle c starts at 10 c
    evals = [
        ev("victim", "c", 1, 11.0), ev("victim", "d", 1, 11.0),   # the cycle before
        ev("s", "a", 1, 11.0), ev("s", "b", 1, 11.0),
        ev("s", "a", 2, 21.0), ev("s", "b", 2, 21.0),
        ev("s", "c", 2, 23.5, kind="catch_up"),                    # c caught up in C1
        ev("s2", "c", 2, 23.6, result="lost"),
        ev("s", "a", 3, 31.0), ev("s", "b", 3, 31.0), ev("s", "c", 3, 31.0),
        ev("s", "d", 3, 32.0), ev("s2", "d", 3, 32.1),             # d: next cycle, twice
    ]
    m = analysis.failover_metrics(evals, "victim", {"c", "d"}, t_kill, 2, c1_start, ids)
    assert m["orphans"] == 2 and m["recovered"] == 2 and m["same_cycle"] == 1
    assert m["max_s"] == 12.0 and m["p50_s"] == 3.5
    assert m["missed_evaluations"] == 1          # (d, C1)
    assert m["duplicate_evaluations"] == 1       # (d, C2)
    assert m["lost_writes"] == 1 and m["gaps"] == 1


def test_failover_max_is_null_until_every_orphan_was_evaluated() -> None:
    evals = [ev("victim", "c", 1, 11.0), ev("victim", "d", 1, 11.0),
             ev("s", "c", 2, 21.0)]
    m = analysis.failover_metrics(evals, "victim", {"c", "d"}, 19.0, 2, 20.0, {"c", "d"})
    assert m["recovered"] == 1 and m["max_s"] is None and m["p50_s"] == 1.0
    assert m["missed_evaluations"] == 3


def test_duplicate_deliveries_count_every_repeat_of_a_key() -> None:
    assert analysis.duplicate_deliveries(["a:1", "b:1", "a:1", None, None, "a:1"]) == 2
    assert analysis.duplicate_deliveries([]) == 0


def test_written_in_complete_and_undelivered_read_only_written_evaluations() -> None:
    evals = [ev("e0", "a", 1, 11.0, transition=True, seq=2),
             ev("e1", "b", 1, 12.0), ev("e1", "c", 1, 12.5, result="lost", transition=True),
             ev("e0", "c", 2, 21.0)]
    assert analysis.written_in(evals, 1) == {"e0": {"a"}, "e1": {"b"}}
    assert analysis.complete(evals, 1, {"a", "b"}, agents=2)
    assert not analysis.complete(evals, 1, {"a", "b"}, agents=3)
    assert not analysis.complete(evals, 1, {"a", "b", "c"})      # c's write was lost
    assert analysis.complete(evals, 2, {"c"}) and not analysis.complete(evals, 3, set(), 1)
    # only the written transition is owed a delivery, under its <alarm>:<seq> key
    assert analysis.undelivered(evals, []) == {"a:2"}
    assert analysis.undelivered(evals, ["a:2", None]) == set()
