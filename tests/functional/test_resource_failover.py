"""Per-resource failover (issue 21) with real agents, each in its own network
namespace, polling real HTTP targets (:mod:`tests.functional.netns`).

Three ``zkpoll-polling`` agents (``a1``, ``a2``, ``a3``) poll ``http.status``
of 60 ``http://10.213.T.x:8080/`` targets every 4 s, ``[polling]
failover_hops = 1``.  A target is made unreachable from an agent with a
blackhole route in that agent's namespace only: ``connect()`` fails at once
there (EINVAL) and the pollster says :class:`~zkpoll.plugin.Unreachable`.
The audit counts the samples per resource and ``cycle_start``:

a. targets blocked from their owner are polled by their successor (the owner
   in the ring without it) in the same cycles, status 200: 0 gaps, 0
   duplicates;
b. once the route is removed, the owner polls them again from the next
   cycle, with no duplicate at the switch;
c. a target blocked from every agent gets exactly one sample per cycle, the
   unreachable one (status 0 with an error), published by the successor.

Windows come from the blocking calls: the routes exist once ``ip route``
returned, so a cycle starting after that is blocked for its whole length;
a cycle ending before the route's removal began is too.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from tests.functional.audit import (
    CycleAudit,
    clock,
    describe_cycles,
    exactly_once,
    require,
)
from tests.functional.netns_fleet import HttpPoll, NetnsFleet, netns_fleet
from zkpoll.testing.plugins import require_zookeeper

pytestmark = [pytest.mark.functional, pytest.mark.slow]

AGENTS = ["a1", "a2", "a3"]
TARGETS = 60
INTERVAL = 4
SETTLE = 2.0
POLLSTER_TIMEOUT = 2.0
POLLING = f"[polling]\nfailover_hops = 1\npollster_timeout = {POLLSTER_TIMEOUT:g}\n"
BLOCKED = 8          # of the victim's targets, in scenario a/b
#: The route that blocks a target: connect() fails at once with EINVAL, which the
#: pollster must take for "unreachable" (a route "unreachable" says EHOSTUNREACH).
ROUTE = "blackhole"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetnsFleet]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    require_zookeeper()
    with netns_fleet(tmp_path, AGENTS, TARGETS, INTERVAL, SETTLE, POLLING) as net:
        yield net
    assert not net.lab.leftovers(), "the lab removed all it created"


def only_200(audits: list[CycleAudit[HttpPoll]], but: Collection[str] = ()) -> list[str]:
    """Samples of targets other than ``but`` whose status is not 200."""
    return [f"{clock(a.cycle_at)} {url} by {r.agent}: {r.status} {r.error}"
            for a in audits for url, rs in sorted(a.records.items()) if url not in but
            for r in rs if r.status != 200]


def test_targets_unreachable_from_their_owner_are_polled_by_the_successor(
        net: NetnsFleet) -> None:
    """a: blocked from the owner only, the successor polls them in the same cycle;
    b: unblocked, the owner polls them again from the next cycle."""
    fleet, lab = net.fleet, net.lab
    first, ring = net.start_steady()
    victim = AGENTS[0]
    victim_member = fleet.member_ids(victim)[-1]
    owned = ring.owned_by(victim_member, net.urls)
    blocked = owned[:BLOCKED]
    assert len(blocked) == BLOCKED, f"{victim} owns only {len(owned)} targets"
    successor = {url: ring.successor(url, [victim_member]) for url in blocked}

    lab.block(victim, [net.address_of(u) for u in blocked], kind=ROUTE)
    t_blocked = fleet.note(f"{ROUTE} routes to {len(blocked)} targets in {victim}")
    fleet.wait_cycles_after(t_blocked, 3)
    t_unblocking = fleet.note(f"removing the {ROUTE} routes of {victim}")
    lab.unblock(victim)
    t_unblocked = fleet.note("routes removed")
    fleet.wait_cycles_after(t_unblocked, 2)

    audits = fleet.audit(first)
    failures: list[str] = []
    exactly_once(failures, audits, fleet.t0, min_cycles=6)
    other = only_200(audits)
    require(failures, not other, "every sample has status 200 (nobody published an "
            f"unreachable one): {other[:10]}")

    blocked_cycles = [a for a in audits
                      if a.cycle_at > t_blocked and a.cycle_at + INTERVAL <= t_unblocking]
    after = [a for a in audits if a.cycle_at > t_unblocked]
    require(failures, len(blocked_cycles) >= 2, f"only {len(blocked_cycles)} cycle(s) "
            "wholly blocked")
    require(failures, len(after) >= 2, f"only {len(after)} cycle(s) after the unblock")
    by_successor = Counter[str]()
    for audit in blocked_cycles:
        for url in blocked:
            for r in audit.records.get(url, []):
                if r.member == successor[url] and r.status == 200:
                    by_successor[url] += 1
                else:
                    failures.append(f"blocked {url} in cycle {clock(audit.cycle_at)}: polled "
                                    f"by {r.agent} ({r.member}), status {r.status} {r.error}; "
                                    f"expected its successor {net.agent_of(successor[url])}")
    for audit in after:
        for url in blocked:
            wrong = [r for r in audit.records.get(url, []) if r.member != victim_member]
            if wrong:
                failures.append(f"unblocked {url} in cycle {clock(audit.cycle_at)}: polled by "
                                f"{wrong[0].agent}, not its owner {victim}")
    polls = sum(by_successor.values())
    print(f"\nresource failover: {len(blocked)} targets blocked from {victim} in "
          f"{len(blocked_cycles)} cycles: {polls} polls by successors "
          f"({dict(Counter(net.agent_of(successor[u]) for u in blocked))}), "
          f"{sum(len(a.gaps) for a in audits)} gaps, "
          f"{sum(len(a.duplicates) for a in audits)} duplicates in {len(audits)} cycles")
    require(failures, polls == len(blocked) * len(blocked_cycles),
            f"{polls} polls of blocked targets by their successors, expected "
            f"{len(blocked)} x {len(blocked_cycles)}")
    logs = {p.name: p.log() for p in fleet.agents}
    streak = logs[victim].count("unreachable from here, handed to other members")
    require(failures, streak == 1, f"{victim} says once per streak that it hands targets "
            f"off, not {streak} times")
    require(failures, logs[victim].count("no longer handed off from here") == 1,
            f"{victim} says once that the streak ended")
    require(failures, all("handoff: polled" in logs[net.agent_of(successor[u])]
                          for u in blocked), "each successor's cycle line says it polled a "
            "handoff")
    if failures:
        failures.append(describe_cycles(audits, fleet.t0))
    fleet.finish(failures)


def test_a_target_unreachable_from_every_agent_gets_one_unreachable_sample_per_cycle(
        net: NetnsFleet) -> None:
    """c: blocked everywhere, the successor publishes the pollster's unreachable
    sample (http.status 0 with an error), once per cycle."""
    fleet, lab = net.fleet, net.lab
    first, ring = net.start_steady()
    url = net.urls[0]
    owner = ring.owner(url)
    successor = ring.successor(url, [owner])
    for name in AGENTS:
        lab.block(name, [net.address_of(url)], kind=ROUTE)
    t_blocked = fleet.note(f"{ROUTE} route to {url} in every agent")
    fleet.wait_cycles_after(t_blocked, 3)

    audits = fleet.audit(first)
    failures: list[str] = []
    exactly_once(failures, audits, fleet.t0, min_cycles=4)
    other = only_200(audits, but={url})
    require(failures, not other, f"the other targets answer 200: {other[:10]}")
    blocked_cycles = [a for a in audits if a.cycle_at > t_blocked]
    require(failures, len(blocked_cycles) >= 2, f"only {len(blocked_cycles)} blocked cycle(s)")
    per_cycle = []
    for audit in blocked_cycles:
        samples = audit.records.get(url, [])
        per_cycle.append(len(samples))
        for r in samples:
            if r.status != 0 or not r.error:
                failures.append(f"{url} in cycle {clock(audit.cycle_at)}: status {r.status}, "
                                f"error {r.error!r}; expected 0 with an error")
            if r.member != successor:
                failures.append(f"{url} in cycle {clock(audit.cycle_at)}: published by "
                                f"{r.agent}, expected the successor {net.agent_of(successor)}"
                                f" (owner {net.agent_of(owner)}, failover_hops 1)")
    print(f"\nunreachable everywhere: {url}: samples per blocked cycle {per_cycle}, "
          f"{sum(len(a.gaps) for a in audits)} gaps, "
          f"{sum(len(a.duplicates) for a in audits)} duplicates in {len(audits)} cycles")
    require(failures, per_cycle and set(per_cycle) == {1},
            f"one sample of {url} per blocked cycle, not {per_cycle}")
    if failures:
        failures.append(describe_cycles(audits, fleet.t0))
    fleet.finish(failures)
