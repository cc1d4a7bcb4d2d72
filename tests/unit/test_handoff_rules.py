"""The handoff rules of the ownership state machine, one transition at a time."""

from __future__ import annotations

from dataclasses import replace

from zkpoll.ownership.events import (
    AckHandoff,
    Contact,
    CycleStarted,
    GiveUp,
    HandoffReceived,
    HandoffSent,
    JoinRequested,
    KeysUnreachable,
    MembershipChanged,
    Poll,
    PollKind,
    SendHandoff,
    SessionStarted,
)
from zkpoll.ownership.members import MemberInfo
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

SETTLE, SESSION, NOW = 5.0, 10.0, 1000.0
KEYS = tuple(f"r{i}" for i in range(60))


def at(now: float, age: float = 0.0) -> Contact:
    return Contact(now, age, SESSION)


def member(me: str, others: tuple[str, ...] = ("b", "c"), hops: int = 1) -> OwnershipState:
    """``me`` active with ``others``, registered, cycle 100 of ``src`` started at NOW."""
    state = OwnershipState(OwnershipConfig("g", SETTLE, failover_hops=hops))
    state.handle(JoinRequested(at(NOW - 2 * SETTLE)))
    state.handle(SessionStarted(me, at(NOW - 2 * SETTLE)))
    view = [MemberInfo(me, active_at=NOW - SETTLE)] + [MemberInfo(o) for o in others]
    state.handle(MembershipChanged(tuple(view), at(NOW - SETTLE)))
    state.handle(CycleStarted("src", 100, NOW, 10.0, KEYS, at(NOW)))
    return state


def unreachable(state: OwnershipState, keys: tuple[str, ...], tried: tuple[str, ...] = (),
                now: float = NOW + 1, age: float = 0.0) -> list:
    return state.handle(KeysUnreachable("src", 100, NOW, 10.0, keys, tried, at(now, age)))


def mine(state: OwnershipState) -> tuple[str, ...]:
    return tuple(k for k in KEYS if state.plans["src"].ring.owner(k) == state.member_id)


def test_the_owner_hands_each_key_to_its_owner_in_the_ring_without_it() -> None:
    state = member("a")
    keys = mine(state)
    sends = [a for a in unreachable(state, keys) if isinstance(a, SendHandoff)]
    assert sends and {s.to for s in sends} <= {"b", "c"}
    handed = [k for s in sends for k in s.keys]
    assert sorted(handed) == sorted(keys), "every key once, to one successor"
    without_a = state._rings.get({"b": 1.0, "c": 1.0})
    assert all(without_a.owner(k) == s.to for s in sends for k in s.keys)
    assert all(s.tried == ("a",) and s.index == 100 for s in sends)
    assert not [a for a in unreachable(state, keys) if isinstance(a, GiveUp)]


def test_after_failover_hops_members_the_last_one_gives_up_once() -> None:
    state = member("b", others=("a", "c"))
    actions = unreachable(state, ("r1", "r2"), tried=("a",))
    assert actions == [GiveUp("src", 100, ("r1", "r2"), "unreachable from 2 member(s): a, b",
                              cause=actions[0].cause)]


def test_two_hops_go_one_member_further() -> None:
    state = member("b", others=("a", "c"), hops=2)
    sends = [a for a in unreachable(state, ("r1",), tried=("a",)) if isinstance(a, SendHandoff)]
    assert [(s.to, s.tried) for s in sends] == [("c", ("a", "b"))]


def test_failover_off_gives_up_at_once() -> None:
    state = member("a", hops=0)
    assert [type(a) for a in unreachable(state, mine(state))] == [GiveUp]


def test_a_fenced_member_hands_nothing_off_and_gives_up() -> None:
    state = member("a")
    actions = unreachable(state, mine(state), age=SESSION)
    assert [type(a) for a in actions] == [GiveUp] and "fenced" in actions[0].reason


def test_alone_in_the_ring_gives_up() -> None:
    state = member("a", others=())
    actions = unreachable(state, ("r1",))
    assert [type(a) for a in actions] == [GiveUp]


def test_an_unconfirmed_handoff_is_a_logged_gap_and_publishes_nothing() -> None:
    state = member("a")
    assert state.handle(HandoffSent("b", "src", 100, ("r1",), False, at(NOW + 2))) == []
    assert any("did not confirm our handoff" in text for _, _, text in state.log)


def received(state: OwnershipState, keys: tuple[str, ...], now: float = NOW + 1,
             handoff_id: str = "h-1", age: float = 0.0, index: int = 100) -> list:
    return state.handle(HandoffReceived(handoff_id, "a", "src", index, NOW + (index - 100) * 10,
                                        10.0, keys, ("a",), at(now, age)))


def test_the_successor_polls_a_handoff_once_in_the_same_cycle() -> None:
    state = member("b", others=("a", "c"))
    actions = received(state, ("r1", "r2"))
    assert actions[0] == AckHandoff(("h-1",), cause=actions[0].cause)
    poll = actions[1]
    assert isinstance(poll, Poll) and poll.kind is PollKind.HANDOFF
    assert (poll.keys, poll.index, poll.tried) == (("r1", "r2"), 100, ("a",))
    again = received(state, ("r1", "r2"), handoff_id="h-1")
    assert [type(a) for a in again] == [AckHandoff], "a redelivery is not polled again"


def test_a_handoff_that_arrives_after_its_cycle_ended_is_a_logged_gap() -> None:
    state = member("b", others=("a", "c"))
    actions = received(state, ("r1",), now=NOW + 10.0)
    assert [type(a) for a in actions] == [AckHandoff]
    assert any("ended before it arrived" in text for _, _, text in state.log)


def test_a_fenced_successor_polls_nothing() -> None:
    state = member("b", others=("a", "c"))
    actions = received(state, ("r1",), age=SESSION)
    assert [type(a) for a in actions] == [AckHandoff]


def test_a_handoff_for_a_cycle_we_have_not_started_yet_is_polled() -> None:
    """Our clock may be a little behind the owner's (within the clock bound)."""
    state = member("b", others=("a", "c"))
    actions = received(state, ("r1",), now=NOW + 9.8, index=101)
    assert [type(a) for a in actions] == [AckHandoff, Poll]


def test_handed_in_keys_are_forgotten_after_a_few_cycles() -> None:
    state = member("b", others=("a", "c"))
    received(state, ("r1",))
    received(state, ("r1",), index=104, now=NOW + 41)
    assert ("src", 100) not in state.handed_in and ("src", 104) in state.handed_in


def test_the_config_default_keeps_failover_off() -> None:
    assert OwnershipConfig("g", SETTLE).failover_hops == 0
    assert replace(OwnershipConfig("g", SETTLE), failover_hops=2).failover_hops == 2


def test_the_claims_record_names_the_newest_cycles_handoffs() -> None:
    owner = member("a")
    keys = mine(owner)[:3]
    sends = [x for x in unreachable(owner, keys) if isinstance(x, SendHandoff)]
    out = owner.record["handoffs"]["src"]
    assert out["cycle"] == 100 and out["out"] == {k: s.to for s in sends for k in s.keys}
    successor = member("b", others=("a", "c"))
    received(successor, ("r1",))
    successor.handle(KeysUnreachable("src", 100, NOW, 10.0, ("r1",), ("a",), at(NOW + 2)))
    record = successor.record["handoffs"]["src"]
    assert record["in"] == {"r1": "a"} and list(record["gave_up"]) == ["r1"]
    received(successor, ("r2",), index=101, now=NOW + 11)
    assert successor.record["handoffs"]["src"]["cycle"] == 101, "the newest cycle only"


def test_failover_hops_default_depends_on_the_backend_and_is_refused_where_unsupported(
        ) -> None:
    import pytest
    from oslo_config import cfg

    from zkpoll.coordination.standalone import StandaloneCoordinator
    from zkpoll.exceptions import ConfigError
    from zkpoll.polling import options

    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], default_config_files=[])
    standalone = StandaloneCoordinator("me")
    assert not standalone.supports_handoffs
    assert options.failover_hops(conf, standalone) == 0, "unset: off without inboxes"
    conf.set_override("failover_hops", 2, "polling")
    with pytest.raises(ConfigError, match=r"failover_hops = 2: .* no handoff inboxes"):
        options.failover_hops(conf, standalone)
    conf.set_override("failover_hops", 0, "polling")
    assert options.failover_hops(conf, standalone) == 0


def test_a_long_list_of_keys_goes_in_several_handoffs() -> None:
    from zkpoll.ownership.handoff_rules import KEYS_PER_HANDOFF

    state = member("a", others=("b",))
    keys = tuple(f"k{i}" for i in range(2 * KEYS_PER_HANDOFF + 5))
    sends = [x for x in unreachable(state, keys) if isinstance(x, SendHandoff)]
    assert [len(s.keys) for s in sends] == [KEYS_PER_HANDOFF, KEYS_PER_HANDOFF, 5]
    assert sorted(k for s in sends for k in s.keys) == sorted(keys)
