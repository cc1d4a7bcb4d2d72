"""Immutable consistent-hash ring on mmh3 (a weighted Maglev lookup table).

Ownership is a pure function of (key, member set): the table is built from
the members alone, and a key's owner is ``table[mmh3(key) % TABLE_SIZE]``.
It never depends on which other keys exist, so two agents whose discoveries
disagree for a moment still agree on every key they both see.

Why Maglev (Eisenbud et al., NSDI 2016) and not virtual nodes or rendezvous
hashing: measured by ``benchmarks/ring_bench.py``, the table gives every
member its weighted share of slots to within one slot (balance limited only
by the keys' own randomness), an O(1) lookup (one hash, one list index),
and moves close to the minimal fraction of keys when a member leaves.
Virtual nodes need thousands of points per member for the same balance;
rendezvous hashing needs one hash per member per key.

The layout is part of zkpoll's wire contract: every agent in a group must
compute the same table, so :data:`TABLE_SIZE`, :data:`SEED` and the
permutation below never change without a new ring ``LAYOUT`` version.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

import mmh3

__all__ = ["LAYOUT", "SEED", "TABLE_SIZE", "HashRing"]

#: Prime number of slots in the lookup table (Maglev needs a prime).
TABLE_SIZE = 65537
#: Fixed mmh3 seed: the same in every process, host and Python version.
SEED = 0x7A6B706F
#: Version of the table layout, published by members so a mixed fleet is seen.
LAYOUT = 1

K = TypeVar("K", bound=str)


def _permutation(member: str) -> tuple[int, int]:
    """Return (offset, skip) of a member's preference list over the slots."""
    digest = mmh3.hash_bytes(member.encode("utf-8"), SEED)
    offset = int.from_bytes(digest[:8], "little") % TABLE_SIZE
    skip = int.from_bytes(digest[8:], "little") % (TABLE_SIZE - 1) + 1
    return offset, skip


def _build_table(members: Mapping[str, float]) -> list[int]:
    """Fill the table in weighted turns (index into the sorted member list)."""
    names = sorted(members)
    perms = [_permutation(name) for name in names]
    top = max(members.values())
    shares = [members[name] / top for name in names]
    credit = [0.0] * len(names)
    nxt = [0] * len(names)
    table = [-1] * TABLE_SIZE
    filled = 0
    while True:
        for i, (offset, skip) in enumerate(perms):
            credit[i] += shares[i]
            if credit[i] < 1.0:
                continue
            credit[i] -= 1.0
            j = nxt[i]
            slot = (offset + j * skip) % TABLE_SIZE
            while table[slot] >= 0:
                j += 1
                slot = (offset + j * skip) % TABLE_SIZE
            table[slot] = i
            nxt[i] = j + 1
            filled += 1
            if filled == TABLE_SIZE:
                return table


class HashRing:
    """An immutable ring over weighted members.

    :param members: member ids, or a mapping of member id to a positive
        weight (a member of weight 2 owns twice the share of weight 1).

    Build a new ring when membership changes and swap the reference; a ring
    is never modified, so threads may share it without locks.
    """

    __slots__ = ("_hash", "_members", "_names", "_owners")

    def __init__(self, members: Iterable[str] | Mapping[str, float]) -> None:
        if isinstance(members, Mapping):
            weights = {str(m): float(w) for m, w in members.items()}
        else:
            weights = {str(m): 1.0 for m in members}
        for member, weight in weights.items():
            if not weight > 0:
                raise ValueError(f"member {member!r}: weight must be > 0, not {weight}")
        self._members: dict[str, float] = dict(sorted(weights.items()))
        self._names = tuple(self._members)
        if self._members:
            table = _build_table(self._members)
            self._owners: tuple[str, ...] = tuple(self._names[i] for i in table)
        else:
            self._owners = ()
        self._hash = hash(tuple(self._members.items()))

    @property
    def members(self) -> Mapping[str, float]:
        """Member id to weight, sorted by id."""
        return dict(self._members)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HashRing) and other._members == self._members

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"HashRing({len(self._names)} members)"

    def owner(self, key: str) -> str:
        """Return the member that owns ``key``; raise LookupError when empty."""
        if not self._owners:
            raise LookupError("the ring has no members")
        return self._owners[mmh3.hash(key, SEED, signed=False) % TABLE_SIZE]

    def owned_by(self, member: str, keys: Iterable[K]) -> list[K]:
        """Return the keys of ``keys`` that ``member`` owns, in input order."""
        if member not in self._members:
            return []
        owners, h = self._owners, mmh3.hash
        return [k for k in keys if owners[h(k, SEED, signed=False) % TABLE_SIZE] == member]

    def assign(self, keys: Iterable[K]) -> dict[str, list[K]]:
        """Group ``keys`` by owner: member id to its keys (members without keys omitted)."""
        if not self._owners:
            raise LookupError("the ring has no members")
        owners, h = self._owners, mmh3.hash
        result: dict[str, list[K]] = {}
        for key in keys:
            member = owners[h(key, SEED, signed=False) % TABLE_SIZE]
            bucket = result.get(member)
            if bucket is None:
                result[member] = [key]
            else:
                bucket.append(key)
        return result

    def moved(self, other: HashRing, keys: Iterable[K]) -> list[tuple[K, str | None, str | None]]:
        """Return ``(key, owner here, owner in other)`` for keys whose owner differs.

        An owner is None on a side whose ring is empty.
        """
        mine, theirs, h = self._owners, other._owners, mmh3.hash
        changes: list[tuple[K, str | None, str | None]] = []
        for key in keys:
            slot = h(key, SEED, signed=False) % TABLE_SIZE
            a = mine[slot] if mine else None
            b = theirs[slot] if theirs else None
            if a != b:
                changes.append((key, a, b))
        return changes

    def successor(self, key: str, excluded: Iterable[str]) -> str | None:
        """Owner of ``key`` in the ring without ``excluded`` (who takes over if they die)."""
        rest = {m: w for m, w in self._members.items() if m not in set(excluded)}
        return HashRing(rest).owner(key) if rest else None
