"""Ring benchmark: zkpoll's Maglev ring against tooz.hashring.HashRing, one run.

Prints one JSON line per measurement (see the issue for the fields)::

    python -m benchmarks.ring_bench [--keys 1000000] [--members 100]

tooz is taken with its defaults (md5, 32 partitions per node), the ring
Ceilometer's partitioning uses.  Install it with ``pip install .[bench]``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable

from benchmarks._bench_util import emit, require_tooz
from zkpoll.coordination.ring import HashRing


def members(count: int) -> list[str]:
    return [f"agent-{i}.example.org" for i in range(count)]


def keys(count: int) -> list[str]:
    return [f"instance-{i:08d}" for i in range(count)]


def zkpoll_owners(names: list[str], ks: list[str]) -> Callable[[], list[str]]:
    ring = HashRing(names)
    return lambda: [ring.owner(k) for k in ks]


def tooz_owners(names: list[str], ks: list[str]) -> Callable[[], list[str]]:
    from tooz.hashring import HashRing as ToozRing  # checked by require_tooz()

    ring = ToozRing(names)
    encoded = [k.encode() for k in ks]
    return lambda: [next(iter(ring.get_nodes(k))) for k in encoded]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_assign(n_keys: int, n_members: int) -> None:
    names, ks = members(n_members), keys(n_keys)
    start = time.perf_counter()
    ring = HashRing(names)
    build_s = time.perf_counter() - start
    zk_s = timed(lambda: ring.assign(ks))
    tooz_s = timed(tooz_owners(names, ks))
    emit(bench="assign", keys=n_keys, members=n_members, zkpoll_s=round(zk_s, 4),
         tooz_s=round(tooz_s, 4), speedup=round(tooz_s / zk_s, 1),
         zkpoll_build_s=round(build_s, 4))


def balance(owners: list[str], n_members: int) -> float:
    counts = Counter(owners)
    loads = [counts.get(m, 0) for m in members(n_members)]
    return round(max(loads) / (sum(loads) / n_members), 4)


def bench_balance(n_keys: int, n_members: int) -> None:
    names, ks = members(n_members), keys(n_keys)
    emit(bench="balance", keys=n_keys, members=n_members,
         zkpoll=balance(zkpoll_owners(names, ks)(), n_members),
         tooz=balance(tooz_owners(names, ks)(), n_members))


def fraction_moved(before: list[str], after: list[str]) -> float:
    return round(sum(1 for a, b in zip(before, after) if a != b) / len(before), 4)


def bench_moved(n_keys: int, n_members: int) -> None:
    names, ks = members(n_members), keys(n_keys)
    survivors = names[:3] + names[4:]
    emit(bench="moved", keys=n_keys, members=n_members,
         zkpoll=fraction_moved(zkpoll_owners(names, ks)(), zkpoll_owners(survivors, ks)()),
         tooz=fraction_moved(tooz_owners(names, ks)(), tooz_owners(survivors, ks)()),
         ideal=round(1 / n_members, 4))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ring_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for 'assign'")
    parser.add_argument("--members", type=int, default=100, help="members for 'assign'")
    parser.add_argument("--balance-keys", type=int, default=100_000)
    args = parser.parse_args()
    require_tooz()
    bench_assign(args.keys, args.members)
    for count in (3, 10, 100):
        bench_balance(args.balance_keys, count)
    bench_moved(args.balance_keys, 10)


if __name__ == "__main__":
    main()
