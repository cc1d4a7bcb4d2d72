"""Real zkpoll-polling agents on a real ZooKeeper split a static source exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.agents import (
    AgentProcess,
    polls_by_cycle,
    write_static_source,
)
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


def test_three_agents_split_500_resources_with_no_gap_and_no_overlap(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    ids = write_static_source(tmp_path / "polling.yaml", 500, interval=2)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    agents = [AgentProcess(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml")
              for i in range(3)]
    try:
        # Wait for 4 cycles in which all three agents polled.
        def full_cycles() -> list[str]:
            members: dict[str, set[str]] = {}
            for agent in agents:
                for sample in agent.samples():
                    members.setdefault(sample["cycle_start"], set()).add(sample["member_id"])
            return sorted(c for c, m in members.items() if len(m) == 3)

        wait_for(lambda: len(full_cycles()) >= 5, 40, "len(full_cycles()) >= 5", interval=0.2,
                 diagnostics=lambda: "\n".join(a.log()[-2000:] for a in agents))
        checked = full_cycles()[:-1]  # the newest may still be being written
        cycles = polls_by_cycle(agents)
        for cycle in checked:
            polled = cycles[cycle]
            assert set(polled) == set(ids), f"cycle {cycle}: gaps {set(ids) - set(polled)}"
            assert max(polled.values()) == 1, \
                f"cycle {cycle}: duplicates {[r for r, n in polled.items() if n > 1]}"
        shares = [sum(1 for s in a.samples() if s["cycle_start"] == checked[-1]) for a in agents]
        assert all(100 < share < 240 for share in shares), shares
    finally:
        for agent in agents:
            agent.terminate()
    for agent in agents:
        assert agent.proc.returncode == 0, agent.log()[-2000:]
        assert "Traceback" not in agent.log()


def test_sub_groups_polling_the_same_meter_are_reported_and_can_be_refused(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    write_static_source(tmp_path / "polling.yaml", 20, interval=1)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    agents = [
        AgentProcess(tmp_path, "blue", url, tmp_path / "polling.yaml",
                     extra="[polling]\npartitioning_group_prefix = blue\n"),
        AgentProcess(tmp_path, "green", url, tmp_path / "polling.yaml",
                     extra="[polling]\npartitioning_group_prefix = green\noverlap_fatal = true\n"),
    ]
    try:
        wait_for(lambda: all("meter overlap" in a.log() for a in agents), 20,
                 'all("meter overlap" in a.log() for a in agents)', interval=0.2,
                 diagnostics=lambda: "\n".join(a.log()[-1500:] for a in agents))
        assert "groups blue-synthetic and green-synthetic (namespace synthetic) both poll " \
               "synthetic.constant" in agents[0].log()
        assert "REFUSING" in agents[1].log()
        refused_at = len(agents[1].samples())
        wait_for(lambda: len(agents[0].samples()) > 40, 10, "len(agents[0].samples()) > 40",
                 interval=0.2)
        assert len(agents[1].samples()) <= refused_at + 20  # at most the cycle in flight
    finally:
        for agent in agents:
            agent.terminate()


def test_compute_agents_join_a_group_only_with_workload_partitioning(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    (tmp_path / "polling.yaml").write_text(
        "sources:\n  - name: host\n    interval: 1\n    meters: ['host.load.*']\n")
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    solo = AgentProcess(tmp_path, "solo", url, tmp_path / "polling.yaml", namespaces="compute")
    shared = AgentProcess(tmp_path, "shared", url, tmp_path / "polling.yaml",
                          namespaces="compute",
                          extra="[compute]\nworkload_partitioning = true\n")
    client = KazooClient(zookeeper_server.address)
    client.start(10)
    try:
        members = f"{zk_chroot}/groups/compute/members"
        wait_for(lambda: client.exists(members) and client.get_children(members), 15,
                 "client.exists(members) and client.get_children(members)", interval=0.2)
        wait_for(lambda: len(solo.samples()) >= 3 and len(shared.samples()) >= 3, 15,
                 "len(solo.samples()) >= 3 and len(shared.samples()) >= 3", interval=0.2)
        # member znodes are named <member id>!<rev>!<active_at>!<leave_at>!<weight>
        names = [child.split("!")[0] for child in client.get_children(members)]
        assert shared.samples()[0]["member_id"] in names
        assert len(client.get_children(members)) == 1  # the solo agent joined nothing
    finally:
        client.stop()
        solo.terminate()
        shared.terminate()
