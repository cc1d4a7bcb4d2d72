"""Fuzz: member names and data written by a foreign client (issue 12).

Whatever another client writes into a group (a znode name, a member's
JSON, a claims record), parsing it and feeding it to the ownership rules
gives a member view or a fence, never an exception.
"""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from zkpoll.coordination.base import Member
from zkpoll.coordination.kv._heartbeat import _members
from zkpoll.coordination.member_data import MemberData, decode_member_data
from zkpoll.coordination.zookeeper._names import member_name, parse_member_name
from zkpoll.ownership.events import ClaimsRead, Contact, CycleStarted, MembershipChanged
from zkpoll.ownership.members import MemberInfo, member_info
from zkpoll.ownership.state import OwnershipConfig, OwnershipState

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "active_at": JSON, "leave_at": JSON, "weight": JSON, "protocol": JSON})
NAMES = st.text(alphabet=st.characters(blacklist_characters="/\x00"), max_size=60) | \
    st.builds(lambda parts: "!".join(parts), st.lists(st.text(max_size=12), max_size=7))
FUZZ = settings(max_examples=300, derandomize=True, deadline=None)


@FUZZ
@given(NAMES)
def test_any_znode_name_parses_or_is_foreign(name: str) -> None:
    parsed = parse_member_name(name)
    if parsed is not None:
        member_id, rev, fields = parsed
        assert member_id and rev >= 0 and fields["weight"] > 0
        assert math.isfinite(fields["active_at"])


@FUZZ
@given(st.text(min_size=1, max_size=30), st.integers(0, 10**6), FIELDS)
def test_our_names_round_trip(member_id: str, rev: int, data: dict) -> None:
    parsed = parse_member_name(member_name(member_id, rev, data))
    assert parsed is not None and parsed[0] == member_id and parsed[1] == rev


@FUZZ
@given(st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_payload_decodes_to_a_dict(payload: bytes) -> None:
    assert isinstance(decode_member_data(payload, "m"), dict)
    (member,) = _members({"m": payload})
    info = member_info(member)
    assert info.weight > 0 and math.isfinite(info.weight) and math.isfinite(info.active_at)
    assert isinstance(info.protocol, int) and not math.isnan(info.leave_at)


@FUZZ
@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), FIELDS), max_size=6),
       st.dictionaries(st.text(max_size=8), JSON, max_size=4))
def test_foreign_members_and_claims_never_break_the_rules(members: list, claims: dict) -> None:
    state = OwnershipState(OwnershipConfig("g", 3.0))
    infos = tuple(member_info(Member(mid, data)) for mid, data in members)
    assert all(isinstance(i, MemberInfo) and i.weight > 0 for i in infos)
    contact = Contact(1000.0, 0.0, 10.0)
    state.handle(MembershipChanged(infos, contact))
    state.handle(CycleStarted("s", 100, 1000.0, 10.0, ("a", "b", "c"), contact))
    state.handle(MembershipChanged((), contact))
    state.handle(ClaimsRead(claims, tuple(claims), contact))


KNOWN = st.fixed_dictionaries({}, optional={key: JSON for key in MemberData.CHECKS})


@FUZZ
@given(KNOWN, st.dictionaries(st.text(max_size=10), JSON, max_size=3))
def test_decoded_member_data_keeps_only_valid_known_fields(known: dict, other: dict) -> None:
    data = {**other, **known}
    decoded = decode_member_data(json.dumps(data).encode(), "m")
    for key, value in data.items():
        if MemberData.valid(key, value):
            assert json.dumps(decoded[key]) == json.dumps(value)  # (NaN != NaN)
        else:
            assert key in MemberData.CHECKS and key not in decoded
    assert MemberData.parse(decoded) == MemberData.parse(data)  # validation loses nothing


@FUZZ
@given(KNOWN)
def test_the_typed_view_of_any_data_is_well_typed(data: dict) -> None:
    fields = MemberData.parse(data)
    assert math.isfinite(fields.weight) and fields.weight > 0
    assert isinstance(fields.protocol, int) and not isinstance(fields.protocol, bool)
    for when in (fields.active_at, fields.leave_at):
        assert when is None or (isinstance(when, float) and math.isfinite(when))
    for text in (fields.host, fields.version, fields.namespace, fields.role,
                 fields.withdrawn, fields.fenced):
        assert text is None or isinstance(text, str)
    for number in (fields.pid, fields.layout):
        assert number is None or (isinstance(number, int) and not isinstance(number, bool))
    assert all(isinstance(s, str) and all(isinstance(n, str) for n in names)
               for s, names in fields.meters.items())
    assert all(math.isfinite(v) for v in fields.intervals.values())
    assert Member("m", data).weight == fields.weight


def test_the_typed_view_reads_what_agents_publish() -> None:
    data = {MemberData.HOST: "h1", MemberData.PID: 42, MemberData.VERSION: "1.0",
            MemberData.LAYOUT: 1, MemberData.PROTOCOL: 2, MemberData.WEIGHT: 2.5,
            MemberData.ACTIVE_AT: 10, MemberData.LEAVE_AT: None,
            MemberData.NAMESPACE: "central", MemberData.METERS: {"s": ["cpu", 3]},
            MemberData.INTERVALS: {"s": 60, "bad": "x"}, MemberData.WITHDRAWN: ""}
    fields = MemberData.parse(data)
    assert (fields.host, fields.pid, fields.version, fields.layout, fields.protocol) == \
        ("h1", 42, "1.0", 1, 2)
    assert (fields.weight, fields.active_at, fields.leave_at, fields.withdrawn) == \
        (2.5, 10.0, None, None)
    assert dict(fields.meters) == {"s": ("cpu",)} and dict(fields.intervals) == {"s": 60.0}
    assert MemberData.parse({}).protocol == 1  # a member without it is of protocol 1
