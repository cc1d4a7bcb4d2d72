"""The hash ring: golden placements, balance, minimal movement, weights."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from zkpoll.coordination.ring import TABLE_SIZE, HashRing

MEMBERS = ["agent-a", "agent-b", "agent-c", "agent-d"]
KEYS = [f"resource-{i}" for i in range(50_000)]

# Pinned placements: if this test fails, the hash or the table layout changed,
# and a fleet mixing old and new agents would disagree on ownership.
GOLDEN = {
    "vm-0": "agent-c", "vm-1": "agent-c", "vm-2": "agent-d", "vm-3": "agent-b",
    "vm-4": "agent-c", "vm-5": "agent-b", "vm-6": "agent-a", "vm-7": "agent-d",
    "vm-8": "agent-d", "vm-9": "agent-d", "vm-10": "agent-b", "vm-11": "agent-d",
    "http://example.org/": "agent-c", "10.0.0.1:2181": "agent-d", "": "agent-c",
    "ünïcode-ресурс": "agent-d",
}
GOLDEN_WEIGHTED = {
    "vm-0": "agent-b", "vm-1": "agent-c", "vm-2": "agent-a", "vm-3": "agent-b",
    "vm-4": "agent-c", "vm-5": "agent-b", "vm-6": "agent-a", "vm-7": "agent-b",
}


def test_golden_placements() -> None:
    ring = HashRing(MEMBERS)
    assert {k: ring.owner(k) for k in GOLDEN} == GOLDEN


def test_golden_weighted_placements() -> None:
    ring = HashRing({"agent-a": 1, "agent-b": 2, "agent-c": 1})
    assert {k: ring.owner(k) for k in GOLDEN_WEIGHTED} == GOLDEN_WEIGHTED


def test_same_owners_in_another_process_with_another_hash_seed() -> None:
    code = ("from zkpoll.coordination.ring import HashRing;"
            "r=HashRing(['agent-a','agent-b','agent-c','agent-d']);"
            "print(','.join(r.owner(f'vm-{i}') for i in range(12)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345"}).stdout.strip()
    assert out.split(",") == [GOLDEN[f"vm-{i}"] for i in range(12)]


def test_member_order_does_not_matter() -> None:
    assert HashRing(MEMBERS).assign(KEYS[:1000]) == HashRing(reversed(MEMBERS)).assign(KEYS[:1000])


@pytest.mark.parametrize("count", [3, 10, 50])
def test_distribution_is_balanced(count: int) -> None:
    ring = HashRing([f"agent-{i}" for i in range(count)])
    loads = Counter(ring.owner(k) for k in KEYS)
    assert len(loads) == count
    mean = len(KEYS) / count
    # Table shares differ by at most one slot, so the spread is the keys' own
    # binomial noise: 4 standard deviations is a generous statistical bound.
    sigma = (mean * (1 - 1 / count)) ** 0.5
    assert max(loads.values()) <= mean + 4 * sigma
    assert min(loads.values()) >= mean - 4 * sigma


def test_table_shares_are_within_one_slot() -> None:
    ring = HashRing([f"agent-{i}" for i in range(7)])
    shares = Counter(ring._owners)  # the table itself
    assert max(shares.values()) - min(shares.values()) <= 1
    assert sum(shares.values()) == TABLE_SIZE


def test_weights_scale_the_share() -> None:
    ring = HashRing({"small": 1, "big": 3})
    shares = Counter(ring._owners)
    assert shares["big"] / shares["small"] == pytest.approx(3, rel=0.01)


def test_leaving_member_moves_close_to_minimal_fraction() -> None:
    before = HashRing([f"agent-{i}" for i in range(10)])
    after = HashRing([f"agent-{i}" for i in range(10) if i != 4])
    moved = before.moved(after, KEYS)
    # Every key of the leaver moves, and only a few others.
    assert all(old == "agent-4" or new != old for _, old, new in moved)
    leaver_keys = sum(1 for _, old, _ in moved if old == "agent-4")
    assert leaver_keys == len(before.owned_by("agent-4", KEYS))
    assert len(moved) / len(KEYS) <= 0.1 * 1.1


def test_joining_member_takes_only_from_others() -> None:
    before = HashRing([f"agent-{i}" for i in range(5)])
    after = HashRing([f"agent-{i}" for i in range(6)])
    moved = before.moved(after, KEYS)
    assert sum(1 for *_, new in moved if new == "agent-5") / len(moved) > 0.95


def test_owned_by_and_assign_partition_the_keys() -> None:
    ring = HashRing(MEMBERS)
    groups = ring.assign(KEYS[:5000])
    assert sorted(k for keys in groups.values() for k in keys) == sorted(KEYS[:5000])
    for member in MEMBERS:
        assert ring.owned_by(member, KEYS[:5000]) == groups[member]
    assert ring.owned_by("stranger", KEYS[:10]) == []


def test_ownership_of_a_key_does_not_depend_on_other_keys() -> None:
    ring = HashRing(MEMBERS)
    alone = {k: ring.owner(k) for k in KEYS[:100]}
    assert ring.assign(KEYS[:100] + ["extra-1", "extra-2"]).keys() <= set(MEMBERS)
    for member, keys in ring.assign(KEYS[50:100] + KEYS[:50]).items():
        assert all(alone[k] == member for k in keys)


def test_successor_is_owner_without_the_member() -> None:
    ring = HashRing(MEMBERS)
    key = "vm-3"
    owner = ring.owner(key)
    assert ring.successor(key, [owner]) == HashRing(set(MEMBERS) - {owner}).owner(key)
    assert HashRing(["only"]).successor(key, ["only"]) is None


def test_empty_ring_and_bad_weights() -> None:
    with pytest.raises(LookupError):
        HashRing([]).owner("x")
    assert HashRing([]).owned_by("a", ["x"]) == []
    with pytest.raises(ValueError, match="weight"):
        HashRing({"a": 0})


def test_ring_is_value_equal_and_hashable() -> None:
    assert HashRing(MEMBERS) == HashRing(list(reversed(MEMBERS)))
    assert len({HashRing(MEMBERS), HashRing(MEMBERS)}) == 1
    assert "agent-a" in HashRing(MEMBERS) and len(HashRing(MEMBERS)) == 4
