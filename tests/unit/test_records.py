"""Coordination records without a server: validation, encoding, and the base-class
contract on the in-memory (standalone) coordinator."""

from __future__ import annotations

import json
import logging
import math
import re
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkpoll.coordination._records import (
    MAX_RECORD_BYTES,
    NAME_PATTERN,
    check_int_version,
    check_keys,
    check_kind,
    decode_value,
    encode_value,
)
from zkpoll.coordination.base import Coordinator, Record, RecordWrite
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import CoordinationError

VALID = st.from_regex(re.compile(rf"\A{NAME_PATTERN}\Z"))


@given(VALID)
def test_every_name_of_the_pattern_is_accepted(name: str) -> None:
    assert check_kind(name) == name
    assert check_keys([name]) == [name]


@given(st.text(max_size=140))
def test_a_name_is_accepted_exactly_when_it_matches(name: str) -> None:
    ok = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name) is not None
    try:
        check_keys([name])
    except ValueError as exc:
        assert not ok, name
        assert NAME_PATTERN in str(exc)
    else:
        assert ok, name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "_x", "a/b", "a b", "a\n", "x" * 129,
                                  "é", None, 7])
def test_invalid_names_are_refused(name: object) -> None:
    with pytest.raises(ValueError, match="invalid record key"):
        check_keys(["fine", name])
    with pytest.raises(ValueError, match="invalid record kind"):
        check_kind(name)


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="record key 'a' given twice in one call"):
        check_keys(["a", "b", "a"])


@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=10)))
def test_values_round_trip(value: dict) -> None:
    assert decode_value(encode_value("k", value), "kind/k") == value


def test_encoding_is_compact_and_sorted() -> None:
    assert encode_value("k", {"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}'


def test_the_size_limit_is_on_the_serialized_value() -> None:
    overhead = len(encode_value("k", {"x": ""}))
    assert len(encode_value("k", {"x": "y" * (MAX_RECORD_BYTES - overhead)})) \
        == MAX_RECORD_BYTES
    with pytest.raises(ValueError, match=f"record 'k': the value is {MAX_RECORD_BYTES + 1} "
                       f"bytes as JSON; the limit is {MAX_RECORD_BYTES}"):
        encode_value("k", {"x": "y" * (MAX_RECORD_BYTES - overhead + 1)})


@pytest.mark.parametrize("value, fragment", [
    ([1, 2], "must be a JSON object (a mapping), not list"),
    ("text", "must be a JSON object (a mapping), not str"),
    ({"x": math.nan}, "not JSON-serializable"),
    ({"x": math.inf}, "not JSON-serializable"),
    ({"x": object()}, "not JSON-serializable"),
    ({"x": {1, 2}}, "not JSON-serializable"),
])
def test_values_that_are_not_json_objects_are_refused(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        encode_value("k", value)


@pytest.mark.parametrize("raw", [b"", b"\xff", b"not json", b"[1]", b"3"])
def test_undecodable_stored_bytes_read_as_empty(raw: bytes,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert decode_value(raw, "alarm/k") == {}
    assert "record alarm/k does not hold a JSON object" in caplog.text


@pytest.mark.parametrize("version", [-1, True, 1.0, "3", b"3", [3]])
def test_integer_versions_refuse_what_no_backend_gave(version: object) -> None:
    with pytest.raises(ValueError, match="version .* was not read from Redis"):
        check_int_version("k", version, "Redis")
    assert check_int_version("k", None, "Redis") is None
    assert check_int_version("k", 0, "Redis") == 0


# --- the base class, on the in-memory coordinator ---------------------------------------
@pytest.fixture
def coordinator() -> StandaloneCoordinator:
    c = StandaloneCoordinator("me.1.a")
    c.start()
    c.join("g")
    return c


def test_results_cover_every_key_and_are_copies(coordinator: StandaloneCoordinator) -> None:
    value = {"nested": {"n": 1}}
    result = coordinator.write_records("k", [RecordWrite("a", value), RecordWrite("b", {})], "g")
    assert result == {"a": Record({"nested": {"n": 1}}, 1), "b": Record({}, 1)}
    result["a"].value["nested"]["n"] = 2
    value["nested"]["n"] = 3
    assert coordinator.read_records("k", ["a"])["a"].value == {"nested": {"n": 1}}
    assert coordinator.write_records("k", [], "g") == {}


@pytest.mark.parametrize("group", ["", "a/b", None])
def test_the_fence_group_is_checked(coordinator: StandaloneCoordinator, group: object) -> None:
    with pytest.raises(ValueError, match="invalid fence group"):
        coordinator.write_records("k", [RecordWrite("a", {})], group)  # type: ignore[arg-type]


def test_a_refused_batch_writes_nothing(coordinator: StandaloneCoordinator) -> None:
    for writes in ([RecordWrite("a", {}), RecordWrite("b/c", {})],
                   [RecordWrite("a", {}), RecordWrite("b", {"x": math.nan})],
                   [RecordWrite("a", {}), RecordWrite("b", {}, "v1")]):
        with pytest.raises(ValueError):
            coordinator.write_records("k", writes, "g")
    assert coordinator.list_records("k") == []


def test_concurrent_writers_in_memory_one_wins(coordinator: StandaloneCoordinator) -> None:
    base = coordinator.write_records("k", [RecordWrite(str(i), {}) for i in range(100)], "g")
    wins: list[dict[str, Record | None]] = []
    barrier = threading.Barrier(4)

    def write(n: int) -> None:
        barrier.wait(5)
        wins.append(coordinator.write_records(
            "k", [RecordWrite(str(i), {"by": n}, base[str(i)].version) for i in range(100)],
            "g"))
    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(wins) == 4
    for i in range(100):
        assert sum(w[str(i)] is not None for w in wins) == 1


def test_a_backend_without_records_says_so() -> None:
    class Bare(StandaloneCoordinator):
        _read_records = Coordinator._read_records  # the base class's default

    with pytest.raises(CoordinationError, match="the Bare backend stores no records"):
        Bare("m").read_records("k", ["a"])


def test_the_json_stored_is_what_the_backends_receive(coordinator: StandaloneCoordinator) -> None:
    coordinator.write_records("k", [RecordWrite("a", {"z": 1, "a": 2})], "g")
    stored = coordinator._records["k"]["a"][0]
    assert json.loads(stored) == {"a": 2, "z": 1} and stored == b'{"a":2,"z":1}'
