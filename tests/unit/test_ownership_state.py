"""Each rule of the ownership state machine, one transition at a time (no I/O)."""

from __future__ import annotations

import math

import pytest

from zkpoll.ownership.events import (
    Announce,
    ClaimResult,
    ClaimsRead,
    Contact,
    CycleDone,
    CycleStarted,
    FenceChanged,
    JoinRequested,
    LeaveRequested,
    MembershipChanged,
    Poll,
    PollKind,
    ReadClaims,
    RejoinRequested,
    ReportChanged,
    SessionLost,
    SessionStarted,
    Skip,
    Tick,
    WriteClaims,
)
from zkpoll.ownership.members import MemberInfo
from zkpoll.ownership.record import claimed_cycle
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

SETTLE = 5.0
SESSION = 10.0
KEYS = tuple(f"r{i}" for i in range(60))


def at(now: float, age: float = 0.0) -> Contact:
    return Contact(now, age, SESSION)


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def joined(me: str = "a", others: tuple[str, ...] = ("b",), keep_last_ring: bool = False,
           now: float = 1000.0) -> OwnershipState:
    """A member ``me`` active since ``now`` with ``others`` active too, registered."""
    state = OwnershipState(OwnershipConfig("g", SETTLE, 0.25, keep_last_ring))
    state.handle(JoinRequested(at(now - 2 * SETTLE)))
    state.handle(SessionStarted(me, at(now - 2 * SETTLE)))
    view = [MemberInfo(me, active_at=now - SETTLE)] + [MemberInfo(o) for o in others]
    state.handle(MembershipChanged(tuple(view), at(now - SETTLE)))
    return state


def start_cycle(state: OwnershipState, index: int = 100, start: float = 1000.0,
                age: float = 0.0, keys: tuple[str, ...] = KEYS) -> list:
    return state.handle(CycleStarted("src", index, start, 10.0, keys, at(start, age)))


def test_join_announces_active_at_settle_time_ahead() -> None:
    state = OwnershipState(OwnershipConfig("g", SETTLE))
    actions = state.handle(JoinRequested(at(100.0), weight=2.0))
    assert actions == [Announce({"active_at": 105.0, "leave_at": None, "weight": 2.0},
                                cause="JoinRequested")]


def test_every_registration_announces_a_fresh_active_at() -> None:
    state = OwnershipState(OwnershipConfig("g", SETTLE))
    state.handle(JoinRequested(at(100.0)))
    assert of(state.handle(SessionStarted("a1", at(100.5))), Announce)[0].fields == {
        "active_at": 105.5}
    # a later registration (a new session) pushes active_at further
    assert of(state.handle(SessionStarted("a2", at(200.0))), Announce)[0].fields == {
        "active_at": 205.0}


def test_a_new_session_forgets_claims_skips_and_record() -> None:
    state = joined()
    start_cycle(state, age=SESSION)  # fenced: skipped
    assert state.skipped and state.record["cycles"] == {}
    state.record["cycles"]["src"] = 99
    state.handle(SessionStarted("a-new", at(1001.0)))
    assert not state.skipped and state.record["cycles"] == {} and state.member_id == "a-new"


def test_cycle_claims_before_polling_and_polls_after_confirmation() -> None:
    state = joined()
    actions = start_cycle(state)
    write = of(actions, WriteClaims)[0]
    assert write.wait and write.source == "src" and write.index == 100
    assert claimed_cycle(write.record, "src") == 100
    assert not of(actions, Poll)
    polls = state.handle(ClaimResult("src", 100, True, at(1000.01)))
    owned = state.ring_at(1000.0).owned_by("a", KEYS)
    assert polls == [Poll("src", 100, 1000.0, tuple(owned), cause=polls[0].cause)]
    assert 0 < len(owned) < len(KEYS)


def test_owning_nothing_writes_progress_without_waiting() -> None:
    state = joined()
    keys = tuple(k for k in KEYS if state.ring_at(1000.0).owner(k) == "b")
    actions = start_cycle(state, keys=keys)
    assert [type(a) for a in actions] == [WriteClaims, Poll]
    assert not actions[0].wait and actions[1].keys == ()


def test_refused_claim_skips_restores_the_record_and_resumes_once_unfenced() -> None:
    state = joined()
    start_cycle(state, index=100)
    state.handle(ClaimResult("src", 100, True, at(1000.0)))
    start_cycle(state, index=101, start=1010.0)
    skip = state.handle(ClaimResult("src", 101, False, at(1010.5), "timeout"))
    assert of(skip, Skip) and claimed_cycle(state.record, "src") == 100
    assert state.wants_ticks
    # still in flight and unfenced: claim again, then poll our own share
    resume = state.handle(Tick(at(1011.0)))
    write = of(resume, WriteClaims)[0]
    assert write.wait and write.index == 101
    polls = state.handle(ClaimResult("src", 101, True, at(1011.1)))
    assert polls[0].kind is PollKind.RESUME and polls[0].keys
    assert not state.wants_ticks


@pytest.mark.parametrize("age, reason", [(7.5, "no answer from the coordination backend"),
                                         (5.5, "membership view is 5.5s old")])
def test_stale_contact_fences(age: float, reason: str) -> None:
    state = joined()
    actions = start_cycle(state, age=age)
    assert reason in of(actions, Skip)[0].reason
    assert of(actions, FenceChanged)[0].reason and not of(actions, Poll)
    assert state.record["fenced"]


def test_not_listed_fences() -> None:
    state = joined()
    state.handle(MembershipChanged((MemberInfo("b"),), at(999.0)))
    actions = start_cycle(state)
    assert "is not (yet) listed" in of(actions, Skip)[0].reason


def test_a_member_of_the_old_protocol_fences_the_group() -> None:
    state = joined()
    state.handle(MembershipChanged((MemberInfo("a"), MemberInfo("old", protocol=1)),
                                   at(999.0)))
    assert "another zkpoll membership protocol" in of(start_cycle(state), Skip)[0].reason


def test_unfencing_is_a_transition_once() -> None:
    state = joined()
    start_cycle(state, index=100, age=8.0)
    again = start_cycle(state, index=101, start=1010.0, age=8.0)
    assert not of(again, FenceChanged)
    back = state.handle(Tick(at(1011.0)))
    assert of(back, FenceChanged)[0].reason is None


def test_keep_last_ring_polls_the_last_slice_while_fenced_and_on_refusal() -> None:
    state = joined(keep_last_ring=True)
    actions = start_cycle(state, age=8.0)
    poll = of(actions, Poll)[0]
    assert not poll.confirmed and poll.keys and not of(actions, Skip)
    start_cycle(state, index=101, start=1010.0)
    refused = state.handle(ClaimResult("src", 101, False, at(1010.9)))
    assert of(refused, Poll)[0].confirmed is False


def test_a_vanished_members_unclaimed_share_is_caught_up_by_its_successor() -> None:
    state = joined(others=("b", "c"))
    start_cycle(state)
    state.handle(ClaimResult("src", 100, True, at(1000.0)))
    before = state.ring_at(1000.0)
    read = state.handle(MembershipChanged((MemberInfo("a", active_at=995.0), MemberInfo("c")),
                                          at(1003.0)))
    assert read == [ReadClaims(("b",), cause=read[0].cause)]
    polls = state.handle(ClaimsRead({"b": {"cycles": {"src": 99}}}, ("b",), at(1003.1)))
    after = state.ring_at(1000.0)
    expected = tuple(sorted(k for k in KEYS if before.owner(k) == "b" and after.owner(k) == "a"))
    assert polls[0].kind is PollKind.CATCH_UP and polls[0].keys == expected and expected


def test_keys_caught_up_while_our_share_was_skipped_are_not_resumed_again() -> None:
    # Found by the model: our claim for cycle 100 was refused (skipped), then b
    # vanished without claiming it and we caught up its share; the resume of our
    # own share must not poll those inherited keys a second time.
    state = joined(others=("b", "c"))
    before = state.ring_at(1000.0)
    start_cycle(state)
    assert of(state.handle(ClaimResult("src", 100, False, at(1000.5), "timeout")), Skip)
    state.handle(MembershipChanged((MemberInfo("a", active_at=995.0), MemberInfo("c")),
                                   at(1003.0)))
    caught = state.handle(ClaimsRead({"b": {"cycles": {"src": 99}}}, ("b",), at(1003.1)))
    assert caught[0].kind is PollKind.CATCH_UP and caught[0].keys
    state.handle(Tick(at(1003.2)))
    resumed = state.handle(ClaimResult("src", 100, True, at(1003.3)))
    assert resumed[0].kind is PollKind.RESUME
    assert set(resumed[0].keys) == {k for k in KEYS if before.owner(k) == "a"}
    assert not set(resumed[0].keys) & set(caught[0].keys)


def test_a_vanished_member_that_claimed_the_cycle_is_not_caught_up() -> None:
    state = joined()
    start_cycle(state)
    state.handle(MembershipChanged((MemberInfo("a", active_at=995.0),), at(1003.0)))
    assert state.handle(ClaimsRead({"b": {"cycles": {"src": 100}}}, ("b",), at(1003.1))) == []
    # and a second notice of the same change finds the plan already moved on
    assert state.handle(ClaimsRead({"b": {}}, ("b",), at(1003.2))) == []


def test_unreadable_claims_give_a_gap_never_a_duplicate() -> None:
    state = joined()
    start_cycle(state)
    state.handle(MembershipChanged((MemberInfo("a", active_at=995.0),), at(1003.0)))
    assert state.handle(ClaimsRead(None, ("b",), at(1003.1), "timeout")) == []
    assert "a gap, never a duplicate" in state.log[-1][2]


def test_no_claims_read_when_no_cycle_is_in_flight() -> None:
    state = joined()
    start_cycle(state)
    assert state.handle(MembershipChanged((MemberInfo("a", active_at=995.0),),
                                          at(1012.0))) == []


def test_leave_is_announced_ahead_and_never_moved_later() -> None:
    state = joined()
    first = state.handle(LeaveRequested(at(1000.0)))[0].fields
    assert first == {"leave_at": 1005.0}
    later = state.handle(LeaveRequested(at(1003.0), reason="publishers failing"))[0].fields
    assert later == {"leave_at": 1005.0, "withdrawn": "publishers failing"}
    assert state.ring_at(1004.9).owned_by("a", KEYS) and "a" not in state.ring_at(1005.0)


def test_rejoin_undoes_a_leave() -> None:
    state = joined()
    state.handle(LeaveRequested(at(1000.0), "x"))
    fields = state.handle(RejoinRequested(at(1010.0)))[0].fields
    assert fields == {"active_at": 1015.0, "leave_at": None, "withdrawn": None}
    assert state.own is not None and state.own.leave_at == math.inf


def test_the_ring_of_a_cycle_holds_exactly_the_members_active_then() -> None:
    state = joined(others=())
    state.handle(MembershipChanged((MemberInfo("a"), MemberInfo("b", active_at=1005.0),
                                    MemberInfo("c", leave_at=1005.0)), at(1000.0)))
    assert set(state.ring_at(1004.0).members) == {"a", "c"}
    assert set(state.ring_at(1005.0).members) == {"a", "b"}


def test_resume_only_in_the_same_session_and_while_in_flight() -> None:
    state = joined()
    start_cycle(state, age=8.0)
    state.handle(SessionStarted("a2", at(1001.0)))  # new session: nothing to resume
    assert not state.wants_ticks
    state = joined()
    start_cycle(state, age=8.0)
    late = state.handle(Tick(at(1010.5)))  # unfenced, but the cycle is over
    assert not [w for w in of(late, WriteClaims) if w.wait] and not of(late, Poll)
    assert not state.wants_ticks


def test_session_lost_forgets_confirmations() -> None:
    state = joined()
    start_cycle(state)
    state.handle(ClaimResult("src", 100, True, at(1000.0)))
    assert state.confirmed == {"src": 100}
    state.handle(SessionLost(at(1001.0)))
    assert state.confirmed == {}


def test_cycle_done_is_published_with_the_next_record() -> None:
    state = joined()
    start_cycle(state)
    state.handle(CycleDone("src", 100, 30))
    write = of(start_cycle(state, index=101, start=1010.0), WriteClaims)[0]
    assert write.record["completed"] == {"src": 100} and write.record["owned"] == {"src": 30}


def test_every_transition_names_its_cause() -> None:
    state = joined()
    actions = start_cycle(state, age=8.0)
    assert {a.cause for a in actions} == {"CycleStarted(src#100)"}
    assert state.drain_log() and all(cause for _, cause, _ in state.log)


def test_a_report_travels_in_the_claims_record_not_in_member_data() -> None:
    state = joined()
    actions = state.handle(ReportChanged({"publishers": {"http://x": {"state": "ok"}}}))
    assert not of(actions, Announce)
    assert of(actions, WriteClaims)[0].record["report"] == {
        "publishers": {"http://x": {"state": "ok"}}}
    state.handle(SessionStarted("a-new", at(1001.0)))  # kept across sessions
    assert state.record["report"] and state.record["cycles"] == {}


def test_a_join_storm_notes_a_bounded_line() -> None:
    state = joined()
    others = tuple(MemberInfo(f"m{i:03d}") for i in range(200))
    state.drain_log()
    state.handle(MembershipChanged((MemberInfo("a"), MemberInfo("b"), *others), at(1000.0)))
    (note,) = [text for _, _, text in state.drain_log()]
    assert note == ("group g: 202 member(s); joined: m000, m001, m002, m003, m004 and 195 "
                    "more; gone: -")
