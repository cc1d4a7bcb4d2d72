"""How fast each coordination backend reports a join, a graceful leave and a crash.

Prints one JSON line per measurement::

    python -m benchmarks.backend_failover_bench [--trials 5] [--timeout 2] [--heartbeat 0.2]

For each backend (ZooKeeper with a 200 ms tick, Redis, Memcached; each a
real server on a free loopback port) three members run in their own
processes (``tests/functional/member_proc.py``).  Per trial: a fourth
member joins (time from its ``ready`` to the others' membership event), then
leaves gracefully (from closing its stdin), then one member is killed with
SIGKILL (from the kill); leave and kill come at random moments.  ``seen`` is the slowest survivor; the member
timeout and heartbeat are the ``--timeout`` and ``--heartbeat`` given.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks._bench_util import emit
from tests.functional.procs import HERE, Child
from zkpoll.testing import ManagedMemcached, ManagedRedis, ManagedZooKeeper


def spawn(url: str, heartbeat: float, log: Path) -> Child:
    return Child([sys.executable, str(HERE / "member_proc.py"), "--url", url,
                  "--heartbeat", str(heartbeat)], log_path=log)


def seen_at(children: list[Child], ids: set[str], after: list[int], timeout: float) -> float:
    """Latest wall time at which each child first reported exactly ``ids``."""
    return max(c.wait_event(lambda e: e["event"] == "membership" and set(e["members"]) == ids,
                            timeout, after=a)["t"] for c, a in zip(children, after))


def trial(url: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    members = [spawn(url, args.heartbeat, tmp / f"m{i}.log") for i in range(3)]
    try:
        ids = {c.wait_event(lambda e: e["event"] == "ready", 30)["me"] for c in members}
        seen_at(members, ids, [0] * 3, 30)
        marks = [len(c.events) for c in members]
        extra = spawn(url, args.heartbeat, tmp / "extra.log")
        members.append(extra)
        ready = extra.wait_event(lambda e: e["event"] == "ready", 30)
        join = seen_at(members[:3], ids | {ready["me"]}, marks, 30) - ready["t"]
        marks = [len(c.events) for c in members[:3]]
        time.sleep(random.uniform(0, 1))  # not in step with the members' heartbeats
        left = time.time()
        extra.close_stdin()
        leave = seen_at(members[:3], ids, marks, 30) - left
        marks = [len(c.events) for c in members[1:3]]
        time.sleep(random.uniform(0, 1))
        killed = time.time()
        members[0].kill()
        gone = members[0].wait_event(lambda e: e["event"] == "ready", 1)["me"]
        crash = seen_at(members[1:3], ids - {gone}, marks, args.timeout * 3 + 10) - killed
        return {"join_s": round(join, 3), "leave_s": round(leave, 3), "kill9_s": round(crash, 3)}
    finally:
        for child in members:
            child.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend_failover_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.2)
    args = parser.parse_args()
    servers = {"zookeeper": ManagedZooKeeper(), "redis": ManagedRedis(),
               "memcached": ManagedMemcached()}
    try:
        for name, server in servers.items():
            server.start()
            base = (f"zookeeper://{server.address}" if name == "zookeeper" else server.url)
            for n in range(args.trials):
                url = f"{base}/bench-{uuid.uuid4().hex}?timeout={args.timeout:g}"
                with tempfile.TemporaryDirectory() as tmp:
                    result = trial(url, args, Path(tmp))
                emit(backend=name, trial=n, timeout_s=args.timeout,
                     heartbeat_s=args.heartbeat, **result)
    finally:
        for server in servers.values():
            server.close()


if __name__ == "__main__":
    main()
