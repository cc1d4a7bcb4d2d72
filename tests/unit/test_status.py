"""zkpoll-status's report logic, from hand-built membership snapshots."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zkpoll.cmd import status as cli
from zkpoll.coordination import HashRing, Member, Membership
from zkpoll.ownership import ring_epoch
from zkpoll.service.cycles import cycle_start, source_offset
from zkpoll.status import Severity, build_report, find_owner, member_state

INTERVAL = 10
OFFSET = source_offset("s", INTERVAL)
CYCLE = 100_000                                    # the cycle in flight at NOW
NOW = cycle_start(CYCLE, INTERVAL, OFFSET) + 5.0   # mid-cycle
DONE = CYCLE - 1                                   # the last cycle due complete


def member(mid: str, *, last: int | None = DONE, owned: int | None = 10,
           active_at: float = NOW - 1000, leave_at: float | None = None,
           fenced: str | None = None, meters: tuple[str, ...] = ("m.a",),
           namespace: str = "central", weight: float = 1, layout: int = 1,
           interval: int = INTERVAL) -> Member:
    data: dict[str, Any] = {
        "host": f"host-{mid}", "pid": 100, "version": "0.1.0", "weight": weight,
        "layout": layout, "namespace": namespace, "meters": {"s": list(meters)},
        "intervals": {"s": interval}, "active_at": active_at, "leave_at": leave_at,
        "fenced": fenced, "last_completed_cycle": {} if last is None else {"s": last},
        "owned": {} if owned is None else {"s": owned}}
    return Member(mid, data)


def group(*members: Member, name: str = "central") -> Membership:
    return Membership(name, members)


def problems(report: Any, severity: Severity) -> list[str]:
    return [p.message for p in report.problems if p.severity is severity]


def test_a_healthy_group_is_ok_with_its_ring_and_balance() -> None:
    g = group(member("a", owned=10), member("b", owned=10, last=CYCLE), member("c", owned=10))
    report = build_report([g], NOW)
    assert report.severity is Severity.OK and report.problems == []
    [gr] = report.groups
    assert gr.ring_epoch == ring_epoch(g, NOW)
    assert gr.ring_members == ["a", "b", "c"] and gr.namespaces == ["central"]
    [src] = gr.sources
    assert (src.name, src.current_cycle, src.total, src.balance) == ("s", CYCLE, 30, 1.0)
    assert [m.state for m in gr.members] == ["active"] * 3
    assert {m.sources["s"].behind for m in gr.members} == {0}


def test_balance_is_max_over_mean_of_load_per_weight() -> None:
    skewed = build_report([group(member("a", owned=5), member("b", owned=10),
                                 member("c", owned=15))], NOW)
    assert skewed.groups[0].sources[0].balance == 1.5
    weighted = build_report([group(member("a", owned=20, weight=2),
                                   member("b", owned=10))], NOW)
    assert weighted.groups[0].sources[0].balance == 1.0


def test_states_joining_leaving_fenced() -> None:
    assert member_state(member("j", active_at=NOW + 3), NOW) == ("joining", "active in 3.0s")
    assert member_state(member("l", leave_at=NOW + 2), NOW)[0] == "leaving"
    assert member_state(member("f", fenced="lease ran out", leave_at=NOW), NOW) == \
        ("fenced", "lease ran out")
    assert member_state(member("a"), NOW) == ("active", "")
    report = build_report([group(member("a"), member("j", active_at=NOW + 3, last=None),
                                 member("l", leave_at=NOW + 2), member("f", fenced="x"))], NOW)
    assert report.severity is Severity.WARNING
    assert problems(report, Severity.WARNING) == ["fenced: x"]
    states = {m.member_id: (m.state, m.session) for m in report.groups[0].members}
    assert states == {"a": ("active", "live"), "j": ("joining", "live"),
                      "l": ("leaving", "live"), "f": ("fenced", "live, fenced")}
    assert report.groups[0].ring_members == ["a", "f", "l"]


def test_a_health_withdrawal_is_reported_as_a_warning() -> None:
    sick = Member("w", dict(member("w", leave_at=NOW - 30).data,
                            withdrawn="every publisher failing for 3 consecutive cycles"))
    assert member_state(sick, NOW) == (
        "withdrawn", "health withdrawal: every publisher failing for 3 consecutive cycles")
    report = build_report([group(member("a"), sick)], NOW)
    assert report.severity is Severity.WARNING
    assert problems(report, Severity.WARNING) == [
        "withdrawn: health withdrawal: every publisher failing for 3 consecutive cycles"]


@pytest.mark.parametrize(("last", "behind", "stale"), [
    (CYCLE, 0, False), (DONE, 0, False), (DONE - 1, 1, False),
    (DONE - 2, 2, True), (DONE - 50, 50, True)])
def test_stale_means_no_cycle_completed_for_two_intervals(last: int, behind: int,
                                                          stale: bool) -> None:
    report = build_report([group(member("a", last=last), member("b"))], NOW)
    progress = report.groups[0].members[0].sources["s"]
    assert (progress.behind, progress.stale) == (behind, stale)
    assert report.severity is (Severity.CRITICAL if stale else Severity.OK)
    if stale:
        [problem] = report.problems
        assert (problem.member, problem.source) == ("a", "s")
        assert problem.message.startswith(f"stale: no cycle completed for {behind} intervals")
        assert report.groups[0].members[0].session == "live, silent"


def test_a_member_that_never_completed_a_cycle_is_stale_only_after_two_intervals() -> None:
    fresh = member("a", last=None, active_at=NOW - 5)
    old = member("b", last=None, active_at=NOW - 3 * INTERVAL)
    report = build_report([group(fresh, old, member("c"))], NOW)
    assert [p.member for p in report.problems] == ["b"]
    assert report.groups[0].members[0].sources["s"].last_cycle is None


def test_a_leaver_is_judged_up_to_its_leave_time() -> None:
    left = member("a", last=DONE - 5, leave_at=cycle_start(DONE - 4, INTERVAL, OFFSET) - 1)
    report = build_report([group(left, member("b"))], NOW)
    assert report.severity is Severity.OK
    assert report.groups[0].members[0].detail.startswith("left the ring")
    assert report.groups[0].ring_members == ["b"]


def test_empty_groups_and_empty_rings() -> None:
    assert problems(build_report([group()], NOW), Severity.CRITICAL) == \
        ["empty group: no agent is a member, nothing is polled"]
    joining = build_report([group(member("a", active_at=NOW + 1, last=None))], NOW)
    assert joining.severity is Severity.WARNING
    gone = build_report([group(member("a", leave_at=NOW - 1))], NOW)
    assert problems(gone, Severity.CRITICAL) == ["nobody in the ring: nothing is polled"]
    assert build_report([], NOW).severity is Severity.CRITICAL
    missing = build_report([group(member("a"))], NOW, groups=["compute"])
    assert [(p.group, p.severity) for p in missing.problems] == [("compute", Severity.CRITICAL)]
    assert missing.groups == []


def test_meter_overlap_between_sub_groups_of_a_namespace_is_critical() -> None:
    blue = group(member("b1", meters=("m.a", "m.b")), name="blue-central")
    green = group(member("g1", meters=("m.b", "m.c")), name="green-central")
    other = group(member("c1", meters=("m.b",), namespace="compute"), name="compute")
    report = build_report([green, blue, other], NOW)
    [overlap] = report.overlaps
    assert (overlap.groups, overlap.namespace, overlap.meters) == \
        (("blue-central", "green-central"), "central", ["m.b"])
    assert report.severity is Severity.CRITICAL
    assert problems(report, Severity.CRITICAL) == [
        "meter overlap with group green-central (namespace central): m.b polled twice"]
    assert build_report([green, blue, other], NOW, groups=["green-central"]).overlaps
    assert not build_report([green, blue, other], NOW, groups=["compute"]).overlaps
    disjoint = group(member("g1", meters=("m.c",)), name="green-central")
    assert build_report([blue, disjoint], NOW).severity is Severity.OK


def test_members_that_disagree_on_layout_or_interval() -> None:
    report = build_report([group(member("a"), member("b", layout=2))], NOW)
    assert "different ring layouts [1, 2]" in problems(report, Severity.CRITICAL)[0]
    report = build_report([group(member("a"), member("b"),
                                 member("c", interval=30, last=None, active_at=NOW))], NOW)
    assert problems(report, Severity.WARNING) == [
        "members disagree on the interval [10.0, 30.0]: cycles do not line up"]


def test_report_serialises_to_json_with_named_severities() -> None:
    report = build_report([group(member("a", last=DONE - 9), member("b"))], NOW)
    doc = json.loads(json.dumps(report.to_dict()))
    assert (doc["status"], doc["exit_code"]) == ("critical", 2)
    assert doc["groups"][0]["severity"] == "critical"
    assert doc["problems"][0]["severity"] == "critical"
    assert doc["groups"][0]["members"][0]["sources"]["s"]["stale"] is True


def test_owner_now_next_and_successor() -> None:
    start = cycle_start(CYCLE, INTERVAL, OFFSET)
    late = member("d", active_at=start + 1, last=None)   # joins for the next cycle
    g = group(member("a"), member("b"), member("c"), late)
    now_ring, next_ring = HashRing(["a", "b", "c"]), HashRing(["a", "b", "c", "d"])
    found = {}
    for key in (f"r-{i}" for i in range(24)):   # deterministic: some move to d
        owner = find_owner(g, key, "s", INTERVAL, NOW)
        assert (owner.cycle, owner.cycle_start) == (CYCLE, start)
        assert owner.owner == now_ring.owner(key)
        assert owner.next_owner == next_ring.owner(key)
        assert owner.successor == HashRing({"a", "b", "c"} - {owner.owner}).owner(key)
        found[key] = owner
    assert any(o.next_owner == "d" for o in found.values())
    assert found["r-1"].ring_epoch != found["r-1"].next_ring_epoch
    nobody = find_owner(group(member("a", active_at=NOW + 100)), "r-1", "s", INTERVAL, NOW)
    assert (nobody.owner, nobody.successor) == (None, None)


def _with_handoffs(m: Member, handoffs: dict[str, Any]) -> Member:
    return Member(m.member_id, {**m.data, "handoffs": {"s": handoffs}})


def test_owner_says_who_polled_the_last_cycle_and_whether_by_a_handoff() -> None:
    ring = HashRing(["a", "b", "c"])
    key = "r-3"
    owner = ring.owner(key)
    successor = HashRing({"a", "b", "c"} - {owner}).owner(key)
    plain = find_owner(group(member("a"), member("b"), member("c")), key, "s", INTERVAL, NOW)
    assert (plain.last_cycle, plain.last_polled_by, plain.last_how) == (CYCLE - 1, owner,
                                                                       "owner")
    members = {m: member(m) for m in "abc"}
    members[owner] = _with_handoffs(members[owner], {"cycle": CYCLE - 1,
                                                     "out": {key: successor}})
    handed = find_owner(group(*members.values()), key, "s", INTERVAL, NOW)
    assert handed.last_polled_by == successor
    assert handed.last_how == f"handoff from {owner} (it could not reach it)"
    members[successor] = _with_handoffs(members[successor], {
        "cycle": CYCLE - 1, "in": {key: owner}, "gave_up": {key: "unreachable from 2"}})
    gave_up = find_owner(group(*members.values()), key, "s", INTERVAL, NOW)
    assert gave_up.last_polled_by == successor and "unreachable from every member" in \
        gave_up.last_how
    stale = _with_handoffs(member(owner), {"cycle": CYCLE - 5, "out": {key: successor}})
    old = find_owner(group(stale, *(members[m] for m in "abc" if m != owner)), key, "s",
                     INTERVAL, NOW)
    assert old.last_polled_by == owner, "a record of an older cycle says nothing of the last"


def test_table_aligns_columns() -> None:
    lines = cli.table(("A", "LONGER"), [("wide-cell", None), ("x", 3)])
    assert lines == ["  A          LONGER", "  wide-cell  -", "  x          3"]


def test_cli_without_backend_says_standalone_and_warns(tmp_path: Any, capsys: Any) -> None:
    conf = tmp_path / "zkpoll.conf"
    conf.write_text("[polling]\ncfg_file = polling.yaml\n")
    assert cli.main(["--config-file", str(conf)]) == 1
    assert "standalone" in capsys.readouterr().out
    assert cli.main(["--config-file", str(conf), "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "warning"


@pytest.mark.parametrize("argv", [["owner"], ["stray"], ["--format", "xml"],
                                  ["--timeout", "-1"], ["--config-file", "/nonexistent"]])
def test_cli_operator_errors_exit_2_without_traceback(argv: list[str], capsys: Any) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_a_degraded_publisher_reported_in_the_claims_record_is_a_warning() -> None:
    from zkpoll.status import Severity, build_report, with_claims

    member = Member("m1", {"active_at": 0.0, "namespace": "central", "weight": 1})
    claims = {"m1": {"report": {"publishers": {"http://sink": {
        "state": "degraded", "failing_for_s": 400, "backlog_samples": 1200}}}}}
    report = build_report([with_claims(Membership("central", (member,)), claims)], 100.0)
    warnings = [p for p in report.problems if p.severity is Severity.WARNING]
    assert any("publisher http://sink degraded for 400s, 1200 samples waiting" in p.message
               and p.member == "m1" for p in warnings)


def _clocked(mid: str, offset: float, error: float = 0.001, bound: float = 2.0) -> Member:
    plain = member(mid)
    return Member(mid, {**plain.data, "clock": {"offset": offset, "error": error,
                                                "bound": bound, "watch_delay": 1.0}})


def test_each_members_clock_offset_is_shown_and_warned_above_half_the_bound() -> None:
    report = build_report([group(_clocked("a", 0.2), _clocked("b", -1.3),
                                 _clocked("c", 2.5))], NOW)
    members = {m.member_id: m for m in report.groups[0].members}
    assert members["a"].clock is not None and members["a"].clock.offset == 0.2
    warnings = problems(report, Severity.WARNING)
    assert [w for w in warnings if "above half the bound" in w] == [
        ("clock offset -1.300s +/-0.001s (bound 2.00s) is above half the bound: fix its "
        "time synchronisation")]
    assert any("+2.500s" in w and "beyond the bound" in w for w in warnings)
    assert not any("+0.200s" in w for w in warnings)
    text = "\n".join(cli._render_report(report, None))
    assert "CLOCK" in text and "-1.300s" in text and "+0.200s" in text


def test_a_member_without_clock_fields_shows_none() -> None:
    report = build_report([group(member("a"))], NOW)
    assert report.groups[0].members[0].clock is None
    assert not problems(report, Severity.WARNING)
