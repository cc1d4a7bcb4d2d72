"""SIGHUP reloads a real agent's configuration; one standalone agent per configuration.

Real ``zkpoll-polling`` processes (standalone, synthetic pollsters and a
dynamic pollster running a local command):

- SIGHUP with a bad polling YAML, then a bad dynamic definition: the agent
  keeps polling with its running configuration and logs one line naming
  the file and the problem;
- SIGHUP with good files: from the next cycle on the new sources are
  polled and the removed ones are not, with one line saying what changed;
- a second standalone agent with the same configuration exits 2, naming
  the first one's pid and the lock file;
- an agent in a ZooKeeper group keeps its member znode across a reload
  and republishes its meters only when they changed.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from tests.functional.agents import agent_command, start_agent
from tests.functional.fleet import ServiceProcess
from zkpoll.coordination.zookeeper._names import parse_member_name
from zkpoll.testing import ManagedZooKeeper
from zkpoll.testing.waiting import wait_for

pytestmark = [pytest.mark.functional, pytest.mark.timeout(120)]

DYNAMIC = """\
- name: dyn.answer
  sample_type: gauge
  unit: x
  host_command: "printf '%s' '[{{\\"id\\": \\"cmd\\", \\"v\\": {value}}}]'"
  value_attribute: v
  namespaces: [synthetic]
"""


def _source(name: str, resource: str | None, meters: str = "synthetic.constant") -> str:
    text = f"  - name: {name}\n    interval: 1\n    meters: [{meters}]\n"
    return text + (f"    resources: [{resource}]\n" if resource else "")


def _ids(agent: ServiceProcess) -> list[str]:
    return [s["resource_id"] for s in agent.records()]


def _lines(agent: ServiceProcess, text: str) -> list[str]:
    return [line for line in agent.log().splitlines() if text in line]


def test_sighup_reloads_good_files_and_keeps_the_running_config_on_bad_ones(
        tmp_path: Path) -> None:
    definitions = tmp_path / "pollsters.d"
    definitions.mkdir()
    polling = tmp_path / "polling.yaml"
    polling.write_text("sources:\n" + _source("first", "r1"))
    agent = start_agent(tmp_path, "agent", "", polling, namespaces="synthetic",
                         extra=f"[polling]\npollsters_definitions_dirs = {definitions}\n"
                               f"lock_dir = {tmp_path}\n")
    try:
        wait_for(lambda: "r1" in _ids(agent), 20, '"r1" in _ids(agent)', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])

        # 1. A bad polling YAML: refused, one line naming the file; r1 still polled.
        polling.write_text("sources:\n  - name: broken\n    interval: -5\n    meters: [x]\n")
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _lines(agent, "reload refused"), 10, '_lines(agent, "reload refused")',
                 interval=0.2, diagnostics=lambda: agent.log()[-2000:])
        refused = _lines(agent, "reload refused")
        assert len(refused) == 1 and str(polling) in refused[0] and "interval" in refused[0]
        count = _ids(agent).count("r1")
        wait_for(lambda: _ids(agent).count("r1") >= count + 2, 10,
                 '_ids(agent).count("r1") >= count + 2', interval=0.2)

        # 2. A bad dynamic definition (the YAML is fine again): refused the same way.
        polling.write_text("sources:\n" + _source("first", "r1"))
        bad = definitions / "answer.yaml"
        bad.write_text(DYNAMIC.format(value=1).replace("value_attribute: v",
                                                       "value_attribute: \"v | open('x')\""))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: len(_lines(agent, "reload refused")) == 2, 10,
                 'len(_lines(agent, "reload refused")) == 2', interval=0.2)
        second = _lines(agent, "reload refused")[1]
        assert str(bad) in second and "'open' cannot be called" in second
        assert not _lines(agent, "DISABLED")  # the one line above, nothing else
        assert agent.proc.poll() is None

        # 3. Good files: 'first' removed, 'second' and a dynamic pollster added.
        bad.write_text(DYNAMIC.format(value=42))
        polling.write_text("sources:\n" + _source("second", "r2")
                           + _source("third", None, "dyn.answer"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _lines(agent, "reloaded "), 10, '_lines(agent, "reloaded ")', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        (changed,) = _lines(agent, "reloaded ")
        assert "sources added: second, third; sources removed: first" in changed
        assert "dynamic pollsters added: dyn.answer" in changed
        wait_for(lambda: "r2" in _ids(agent), 10, '"r2" in _ids(agent)', interval=0.2)
        r1_when_r2_appeared = _ids(agent).count("r1")
        wait_for(lambda: _ids(agent).count("r2") >= 3, 10, '_ids(agent).count("r2") >= 3',
                 interval=0.2)
        assert _ids(agent).count("r1") <= r1_when_r2_appeared + 1  # a cycle in flight at most
        wait_for(lambda: any(s["name"] == "dyn.answer" and s["volume"] == 42
                             for s in agent.records()),
                 10, "a dyn.answer sample of 42", interval=0.2)
        assert agent.terminate() == 0
    finally:
        agent.kill()
    assert "Traceback" not in agent.log()


def test_a_second_standalone_agent_with_the_same_configuration_exits_2(
        tmp_path: Path) -> None:
    polling = tmp_path / "polling.yaml"
    polling.write_text("sources:\n" + _source("only", "r1"))
    first = start_agent(tmp_path, "agent", "", polling, namespaces="synthetic",
                         extra=f"[polling]\nlock_dir = {tmp_path}\n")
    try:
        wait_for(lambda: "r1" in _ids(first), 20, '"r1" in _ids(first)', interval=0.2,
                 diagnostics=lambda: first.log()[-2000:])
        second = subprocess.run(
            [*agent_command(), "--config-file", str(tmp_path / "agent.conf"),
             "--polling-namespaces", "synthetic"],
            check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        (line,) = [x for x in second.stderr.splitlines() if "error" in x.lower()]
        assert "Traceback" not in second.stderr
        assert f"pid {first.proc.pid}" in line and str(tmp_path) in line, line
        assert line.startswith("zkpoll-polling: error: another standalone agent")
        assert first.proc.poll() is None
        assert first.terminate() == 0
        # Once the first has stopped, the configuration is free again.
        polled = _ids(first).count("r1")
        again = subprocess.Popen(
            [*agent_command(), "--config-file", str(tmp_path / "agent.conf"),
             "--polling-namespaces", "synthetic"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            wait_for(lambda: _ids(first).count("r1") > polled, 20,
                     '_ids(first).count("r1") > polled', interval=0.2)
            assert again.poll() is None
        finally:
            again.send_signal(signal.SIGTERM)
            assert again.wait(30) == 0
    finally:
        first.kill()


def test_sighup_keeps_the_group_membership_and_republishes_changed_meters(
        zookeeper_server: ManagedZooKeeper, zk_chroot: str, tmp_path: Path) -> None:
    polling = tmp_path / "polling.yaml"
    polling.write_text("sources:\n" + _source("first", "r1"))
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=2"
    agent = start_agent(tmp_path, "agent", url, polling, namespaces="synthetic")
    members = f"{zk_chroot}/groups/synthetic/members"
    client = KazooClient(hosts=zookeeper_server.address, timeout=10.0)
    client.start(timeout=15)
    try:
        wait_for(lambda: "r1" in _ids(agent), 30, '"r1" in _ids(agent)', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        (member,) = client.get_children(members)
        data, _ = client.get(f"{members}/{member}")
        assert json.loads(data)["meters"] == {"first": ["synthetic.constant"]}

        polling.write_text("sources:\n" + _source("first", "r1") + _source("second", "r2"))
        agent.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _lines(agent, "reloaded "), 10, '_lines(agent, "reloaded ")', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        wait_for(lambda: "r2" in _ids(agent), 10, '"r2" in _ids(agent)', interval=0.2,
                 diagnostics=lambda: agent.log()[-2000:])
        # The same member, no rejoin: member data changes replace the znode by
        # one named <same member id>!<rev + 1>!<same active_at>!... (docs/design.md 3).
        (renamed,) = client.get_children(members)
        old, new = parse_member_name(member), parse_member_name(renamed)
        assert old and new and new[0] == old[0] and new[1] == old[1] + 1
        assert new[2]["active_at"] == old[2]["active_at"]  # no new settle period
        data, _after = client.get(f"{members}/{renamed}")
        assert json.loads(data)["meters"] == {"first": ["synthetic.constant"],
                                              "second": ["synthetic.constant"]}
        assert json.loads(data)["intervals"] == {"first": 1, "second": 1}

        agent.proc.send_signal(signal.SIGHUP)  # nothing changed: nothing republished
        wait_for(lambda: len(_lines(agent, "reloaded ")) == 2, 10,
                 'len(_lines(agent, "reloaded ")) == 2', interval=0.2)
        assert "nothing changed" in _lines(agent, "reloaded ")[1]
        assert len(_lines(agent, "published meters updated")) == 1
        assert len(_lines(agent, "joining: active from")) == 1
        assert agent.terminate() == 0
    finally:
        agent.kill()
        client.stop()
        client.close()
