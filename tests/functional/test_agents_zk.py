"""Real zkpoll-polling agents on a real ZooKeeper split a static source exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.functional.agents import parse_poll, start_agent, write_static_source
from tests.functional.audit import Collector, audit_cycles
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


def test_three_agents_split_500_resources_with_no_gap_and_no_overlap(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    ids = write_static_source(tmp_path / "polling.yaml", 500, interval=2)
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    agents = [start_agent(tmp_path, f"agent{i}", url, tmp_path / "polling.yaml")
              for i in range(3)]
    collector = Collector(parse_poll, agents)
    try:
        # Wait for 4 cycles in which all three agents polled.
        def full_cycles() -> list[float]:
            members: dict[float, set[str]] = {}
            for poll in collector.refresh():
                members.setdefault(poll.cycle_at, set()).add(poll.member)
            return sorted(c for c, m in members.items() if len(m) == 3)

        wait_for(lambda: len(full_cycles()) >= 5, 40, "5 cycles polled by all three agents",
                 interval=0.2, diagnostics=lambda: "\n".join(a.log()[-2000:] for a in agents))
        checked = full_cycles()[:-1]  # the newest may still be being written
        audits = {a.cycle_at: a for a in audit_cycles(collector.refresh(), ids, since=checked[0],
                                                      until=checked[-1], skip_newest=False)}
        for cycle in checked:
            audit = audits[round(cycle, 3)]
            assert not audit.gaps and not audit.duplicates, audit.describe()
            assert set(audit.records) == set(ids), audit.describe()  # nothing else polled
        shares = [audits[round(checked[-1], 3)].by_agent[a.name] for a in agents]
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
        start_agent(tmp_path, "blue", url, tmp_path / "polling.yaml",
                     extra="[polling]\npartitioning_group_prefix = blue\n"),
        start_agent(tmp_path, "green", url, tmp_path / "polling.yaml",
                     extra="[polling]\npartitioning_group_prefix = green\noverlap_fatal = true\n"),
    ]
    try:
        wait_for(lambda: all("meter overlap" in a.log() for a in agents), 20,
                 'all("meter overlap" in a.log() for a in agents)', interval=0.2,
                 diagnostics=lambda: "\n".join(a.log()[-1500:] for a in agents))
        assert "groups blue-synthetic and green-synthetic (namespace synthetic) both poll " \
               "synthetic.constant" in agents[0].log()
        assert "REFUSING" in agents[1].log()
        refused_at = len(agents[1].records())
        wait_for(lambda: len(agents[0].records()) > 40, 10, "len(agents[0].records()) > 40",
                 interval=0.2)
        assert len(agents[1].records()) <= refused_at + 20  # at most the cycle in flight
    finally:
        for agent in agents:
            agent.terminate()


def test_compute_agents_join_a_group_only_with_workload_partitioning(
        zookeeper_server, zk_chroot, tmp_path: Path) -> None:
    from kazoo.client import KazooClient

    (tmp_path / "polling.yaml").write_text(
        "sources:\n  - name: host\n    interval: 1\n    meters: ['host.load.*']\n")
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    solo = start_agent(tmp_path, "solo", url, tmp_path / "polling.yaml", namespaces="compute")
    shared = start_agent(tmp_path, "shared", url, tmp_path / "polling.yaml",
                          namespaces="compute",
                          extra="[compute]\nworkload_partitioning = true\n")
    client = KazooClient(zookeeper_server.address)
    client.start(10)
    try:
        members = f"{zk_chroot}/groups/compute/members"
        wait_for(lambda: client.exists(members) and client.get_children(members), 15,
                 "client.exists(members) and client.get_children(members)", interval=0.2)
        wait_for(lambda: len(solo.records()) >= 3 and len(shared.records()) >= 3, 15,
                 "len(solo.records()) >= 3 and len(shared.records()) >= 3", interval=0.2)
        # member znodes are named <member id>!<rev>!<active_at>!<leave_at>!<weight>
        names = [child.split("!")[0] for child in client.get_children(members)]
        assert shared.records()[0]["member_id"] in names
        assert len(client.get_children(members)) == 1  # the solo agent joined nothing
    finally:
        client.stop()
        solo.terminate()
        shared.terminate()
