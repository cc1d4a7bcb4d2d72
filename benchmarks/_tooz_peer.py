"""Ceilometer-style HA polling agent on tooz: the peer of ``benchmarks.failover_bench``.

What OpenStack Ceilometer's polling manager (``ceilometer/polling/manager.py``)
does with workload partitioning, reduced to the parts that decide who polls
what and when:

* ``coordinator = tooz.coordination.get_coordinator(backend_url, member_id)``,
  ``coordinator.start(start_heart=True)``;
* ``partitioner = coordinator.join_partitioned_group(group)`` (tooz
  ``Partitioner``: a ``tooz.hashring.HashRing`` kept up to date by join and
  leave watchers);
* at every cycle: ``coordinator.run_watchers()`` (which re-lists the group
  and fires the watchers, updating the ring), then poll the resources for
  which ``partitioner.belongs_to_self(str(resource))`` is true;
* SIGTERM: stop the polling task, then ``coordinator.stop()``, which leaves
  every joined group, and exit.

Two deliberate differences, both in the peer's favour: cycles are aligned to
wall-clock multiples of the interval plus ``--offset`` (zkpoll's schedule;
Ceilometer runs a free-running periodic task from each agent's start), and
the group is the fixed ``--group`` (Ceilometer names the group of static
resources after ``hash(frozenset(resources))``, which Python salts per
process unless PYTHONHASHSEED is set).

Each polled resource becomes one JSON line in ``--output``, in the format of
zkpoll's file publisher: ``resource_id``, ``member_id``, ``cycle_start`` and
``timestamp`` (ISO 8601 UTC; the timestamp is the wall-clock time of the poll).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from tooz import coordination
from tooz.partitioner import Partitioner

from benchmarks._bench_util import cycle_starts, log_to_stderr, stop_on_signals

LOG = logging.getLogger("tooz_peer")
METER = "synthetic.constant"


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._tooz_peer",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="tooz backend URL")
    parser.add_argument("--member-id", required=True)
    parser.add_argument("--group", default="central")
    parser.add_argument("--resources", required=True, type=Path,
                        help="file with one resource id per line")
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--offset", type=float, default=0.0,
                        help="cycle c starts at c * interval + offset (wall clock)")
    parser.add_argument("--source", default="static")
    parser.add_argument("--output", required=True, type=Path, help="JSON-lines samples")
    args = parser.parse_args()
    log_to_stderr()

    resources = [r for r in args.resources.read_text().splitlines() if r]
    stop = threading.Event()
    stop_on_signals(stop)

    member = args.member_id.encode()
    coordinator = coordination.get_coordinator(args.url, member)
    coordinator.start(start_heart=True)
    try:
        partitioner = coordinator.join_partitioned_group(args.group.encode())
        LOG.info("member %s joined group %s", args.member_id, args.group)
        with args.output.open("a", encoding="utf-8") as out:
            for _, start in cycle_starts(args.interval, args.offset, stop):
                poll_cycle(coordinator, partitioner, resources, args, start, out)
        LOG.info("SIGTERM: leaving group %s", args.group)
    finally:
        coordinator.stop()  # leaves every joined group, closes the session
    return 0


def poll_cycle(coordinator: coordination.CoordinationDriver, partitioner: Partitioner,
               resources: list[str], args: argparse.Namespace, start: float,
               out: TextIO) -> None:
    """One ``interval_task``: refresh membership, poll what belongs to us."""
    try:
        coordinator.run_watchers()
        mine = [r for r in resources if partitioner.belongs_to_self(str(r))]
    except Exception as exc:  # noqa: BLE001 - Ceilometer logs and skips the cycle too
        LOG.error("cycle %s: %s: %s", iso(start), type(exc).__name__, exc)
        return
    now = time.time()  # Ceilometer stamps one polling timestamp per pollster call
    cycle, stamp = iso(start), iso(now)
    out.write("".join(
        json.dumps({"name": METER, "resource_id": r, "member_id": args.member_id,
                    "source": args.source, "cycle_start": cycle, "timestamp": stamp,
                    "volume": 1}) + "\n"
        for r in mine))
    out.flush()
    LOG.info("cycle %s: polled %d/%d resources, %d member(s) in the ring",
             cycle, len(mine), len(resources), len(partitioner.ring.nodes))


if __name__ == "__main__":
    sys.exit(main())
