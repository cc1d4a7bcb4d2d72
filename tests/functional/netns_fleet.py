"""A fleet of agents in a :class:`~tests.functional.netns.Lab`: each agent in its
own network namespace, a ZooKeeper on the lab's bridge, HTTP targets behind
it (the per-resource failover tests and benchmark, issue 21; needs root).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.functional.agents import Poll, parse_poll, start_agent
from tests.functional.fleet import Fleet, Service, ServiceProcess
from tests.functional.netns import Lab
from zkpoll.coordination.ring import HashRing
from zkpoll.testing import ManagedZooKeeper

__all__ = ["HttpPoll", "NetnsFleet", "http_source", "netns_fleet", "netns_polling_service",
           "parse_http_poll"]


# --- agents in the lab ----------------------------------------------------------------
@dataclass(frozen=True)
class HttpPoll(Poll):
    """A poll of ``http.status``: its status (0: no response) and error."""

    status: int = 0
    error: str | None = None


def parse_http_poll(sample: dict[str, Any], agent: str) -> HttpPoll | None:
    """The :class:`HttpPoll` of an ``http.status`` sample line (None for anything else)."""
    poll = parse_poll(sample, agent)
    if poll is None or sample.get("name") != "http.status":
        return None
    metadata = sample.get("resource_metadata") or {}
    return HttpPoll(poll.resource, poll.cycle_at, poll.member, poll.at, poll.agent,
                    status=int(sample.get("volume") or 0), error=metadata.get("error"))


def http_source(path: Path, urls: Sequence[str], interval: int) -> None:
    """A polling YAML: one static source ``targets`` of ``urls``, meter ``http.status``."""
    lines = ["sources:", "  - name: targets", f"    interval: {interval}", "    meters:",
             "      - http.status", "    resources:"] + [f"      - {u}" for u in urls]
    path.write_text("\n".join(lines) + "\n")


def netns_polling_service(lab: Lab, urls: list[str], polling_file: Path, interval: int,
                          settle_time: float, extra: str = "") -> Service[HttpPoll]:
    """Agents of the ``central`` namespace polling ``polling_file``, each in its own
    network namespace (its process name is its lab agent name)."""
    def spawn(workdir: Path, name: str, url: str) -> ServiceProcess:
        return start_agent(workdir, name, url, polling_file, namespaces="central",
                           settle_time=settle_time, wrap=lab.command(name, []),
                           extra=f"[coordination]\nmember_name = {name}\n{extra}")
    return Service(noun="agent", group="central", interval=interval, ids=urls, spawn=spawn,
                   parse=parse_http_poll, stop_timeout=20.0, steady_timeout=60.0,
                   cycle_slack=20.0)


@dataclass
class NetnsFleet:
    """What :func:`netns_fleet` yields."""

    lab: Lab
    zookeeper: ManagedZooKeeper
    fleet: Fleet[HttpPoll]
    urls: list[str]              #: the resources, ``http://<target>:<port>/``
    port: int

    def url_of(self, address: str) -> str:
        return f"http://{address}:{self.port}/"

    def address_of(self, url: str) -> str:
        return url.split("//", 1)[1].rsplit(":", 1)[0]

    def start_steady(self) -> tuple[float, HashRing]:
        """Start every agent of the lab; the first cycle all of them polled, and
        their ring, checked against who polled each target in the last steady cycle.

        :raises AssertionError: no steady cycles in time, or an owner not the ring's
        """
        fleet = self.fleet
        for name in self.lab.agents:
            fleet.start(name)
        first = fleet.wait_steady(self.lab.agents)
        ring = HashRing(fleet.member_ids(name)[-1] for name in self.lab.agents)
        last = fleet.audit(first)[-1]
        wrong = {url: (rs[0].member, ring.owner(url)) for url, rs in last.records.items()
                 if ring.owner(url) != rs[0].member}
        assert not wrong, f"owners (polled by, ring owner) differ from the ring: {wrong}"
        return first, ring

    def agent_of(self, member: str) -> str:
        """The name of the agent that worked under ``member``."""
        return next(n for n in self.lab.agents if member in self.fleet.member_ids(n))


@contextlib.contextmanager
def netns_fleet(workdir: Path, agents: Sequence[str], targets: int, interval: int,
                settle_time: float, polling_extra: str = "", session_timeout: float = 4.0,
                log: IO[str] | None = None) -> Iterator[NetnsFleet]:
    """A lab, a ZooKeeper on its bridge, the targets' server and a fleet (not started:
    ``fleet.start(name)`` for each agent); everything removed on exit.

    ``polling_extra`` is added to each agent's configuration (e.g. ``[polling]
    pollster_timeout = 2``).
    """
    lab = Lab(agents, targets, workdir)
    zookeeper: ManagedZooKeeper | None = None
    fleet: Fleet[HttpPoll] | None = None
    try:
        started = time.monotonic()
        lab.create()
        zookeeper = ManagedZooKeeper(host=lab.bridge_address)
        zookeeper.start()
        port = 8080
        lab.serve_http(port)
        urls = [f"http://{a}:{port}/" for a in lab.targets]
        polling = workdir / "polling.yaml"
        http_source(polling, urls, interval)
        service = netns_polling_service(lab, urls, polling, interval, settle_time,
                                        polling_extra)
        fleet = Fleet(service, workdir, zookeeper.address, f"/netns-{lab.token}",
                      session_timeout=session_timeout)
        if log is not None:
            print(f"lab {lab.plan} ready in {time.monotonic() - started:.1f} s", file=log)
        yield NetnsFleet(lab, zookeeper, fleet, urls, port)
    finally:
        try:
            if fleet is not None:
                fleet.cleanup()
        finally:
            try:
                lab.close()
            finally:
                if zookeeper is not None:
                    zookeeper.close()
