"""The real zkpoll-polling with the zkpoll-zookeeper plugin installed, end to end.

One agent, ``--polling-namespaces central``, coordinating through the test
ZooKeeper, polls that same ZooKeeper three ways: static ``resources``
(the server's ``host:port``), the plugin's default discovery (the servers
of ``backend_url``), and a dynamic pollster (YAML) reading a local JSON API
through its ``dynamic_url`` default discovery.  The samples are read back
from the file publisher's output.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.functional.agents import start_agent
from zkpoll.testing import ManagedZooKeeper
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

STATIC = ("zookeeper.up", "zookeeper.latency.avg", "zookeeper.server.state",
          "zookeeper.packets.received", "zookeeper.ephemerals")


def _require_plugin() -> None:
    names = {ep.name for ep in entry_points(group="zkpoll.poll.central")}
    if "zookeeper.znodes" not in names:
        message = "zkpoll-zookeeper is not installed (pip install -e plugins/zkpoll-zookeeper)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)


def test_agent_publishes_plugin_and_dynamic_samples(
        zookeeper_server: ManagedZooKeeper, zk_chroot: str, stats_api: str,
        tmp_path: Path) -> None:
    _require_plugin()
    server = zookeeper_server.address
    definitions = tmp_path / "pollsters.d"
    definitions.mkdir()
    (definitions / "queue.yaml").write_text(
        "- name: dyn.queue.depth\n  sample_type: gauge\n  unit: job\n"
        f"  url_path: {stats_api}\n  response_entries_key: queue\n"
        "  value_attribute: depth\n  resource_id_attribute: name\n")
    polling = tmp_path / "polling.yaml"
    polling.write_text(
        "sources:\n"
        "  - name: zookeeper\n    interval: 1\n"
        f"    meters: [{', '.join(STATIC)}]\n    resources: ['{server}']\n"
        "  - name: ensemble\n    interval: 1\n    meters: [zookeeper.znodes]\n"
        "  - name: queue\n    interval: 1\n    meters: [dyn.queue.*]\n")
    agent = start_agent(tmp_path, "agent", f"zookeeper://{server}{zk_chroot}?timeout=2",
                         polling, namespaces="central",
                         extra=f"[polling]\npollsters_definitions_dirs = {definitions}\n")
    try:
        def seen() -> set[str]:
            return {s["name"] for s in agent.records()}

        wanted = {*STATIC, "zookeeper.znodes", "dyn.queue.depth"}
        wait_for(lambda: wanted <= seen(), 30, "wanted <= seen()", interval=0.2,
                 diagnostics=lambda: f"missing {wanted - seen()}\n{agent.log()[-3000:]}")
    finally:
        assert agent.terminate() == 0, agent.log()[-3000:]
    samples = agent.records()
    by_name = {s["name"]: s for s in samples}
    for name in (*STATIC, "zookeeper.znodes"):
        sample = by_name[name]
        assert sample["resource_id"] == server, sample
        assert sample["member_id"] and sample["cycle_start"], sample
    assert by_name["zookeeper.up"]["volume"] == 1
    assert by_name["zookeeper.server.state"]["volume"] == 0  # standalone
    assert by_name["zookeeper.server.state"]["resource_metadata"]["state"] == "standalone"
    assert by_name["zookeeper.ephemerals"]["volume"] >= 1  # the agent's own member znode
    assert by_name["zookeeper.packets.received"]["type"] == "cumulative"
    assert {s["source"] for s in samples if s["name"] == "zookeeper.znodes"} == {"ensemble"}
    queue = by_name["dyn.queue.depth"]
    assert (queue["volume"], queue["resource_id"], queue["unit"]) == (7, "jobs", "job")
    log = agent.log()
    assert "Traceback" not in log
    assert "loaded 1 dynamic pollster(s): dyn.queue.depth" in log
