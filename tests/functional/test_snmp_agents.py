"""Real zkpoll-polling agents with the zkpoll-snmp plugin polling a real snmpd.

Three agents partition 60 SNMP devices (one snmpd answering on 60 loopback
addresses) through the test ZooKeeper: every device is polled once per
cycle, each agent polls a share; then one agent is killed (-9) and its
devices are polled by the survivors in the cycle in flight at its session
expiry (:func:`~tests.functional.fleet.kill9_in_cycle_and_check`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.functional.agents import parse_poll, start_agent
from tests.functional.audit import rule
from tests.functional.fleet import (
    Fleet,
    Service,
    ServiceProcess,
    kill9_in_cycle_and_check,
)
from zkpoll.testing.plugins import require_server
from zkpoll.testing.snmpd import ManagedSnmpd

pytestmark = pytest.mark.functional

DEVICES = 60
AGENTS = 3
INTERVAL = 2
SESSION_TIMEOUT = 3.0


def _require_plugin() -> None:
    if "hardware.memory.total" not in {ep.name for ep in entry_points(group="zkpoll.poll.central")}:
        message = "zkpoll-snmp is not installed (pip install -e plugins/zkpoll-snmp)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def snmp_devices() -> Iterator[ManagedSnmpd]:
    _require_plugin()
    require_server(ManagedSnmpd)
    with ManagedSnmpd(DEVICES) as snmpd:
        yield snmpd


def snmp_service(snmpd: ManagedSnmpd, workdir: Path) -> Service:
    """Agents polling ``hardware.memory.total`` on every device, every 2 s."""
    polling = workdir / "polling.yaml"
    polling.write_text(
        "sources:\n  - name: hardware\n    interval: 2\n    meters: [hardware.memory.total]\n"
        "    resources:\n" + "".join(f"      - snmp://{d}\n" for d in snmpd.devices))

    def spawn(path: Path, name: str, url: str) -> ServiceProcess:
        return start_agent(path, name, url, polling, namespaces="central",
                           extra=f"[coordination]\nmember_name = {name}\n"
                                 "[snmp]\ntimeout = 0.5\nretries = 1\n")
    return Service(noun="agent", group="central", interval=INTERVAL,
                   ids=list(snmpd.devices), spawn=spawn, parse=parse_poll,
                   stop_timeout=20.0, steady_timeout=40.0, cycle_slack=15.0)


def test_three_agents_poll_60_devices_once_per_cycle_and_survive_a_kill(
        zookeeper_server, zk_chroot, snmp_devices: ManagedSnmpd, tmp_path: Path) -> None:
    fleet = Fleet(snmp_service(snmp_devices, tmp_path), tmp_path, zookeeper_server.address,
                  zk_chroot, SESSION_TIMEOUT, steady_cycles=2)
    try:
        agents = [fleet.start(f"agent{i}") for i in range(AGENTS)]
        first = fleet.wait_steady([a.name for a in agents])
        victim = agents[1]
        failures = kill9_in_cycle_and_check(fleet, first, victim)
        t_kill = next(at for at, what in fleet.timeline if what.startswith("SIGKILL"))
        names = sorted(a.name for a in agents)
        rule(failures, "before the kill: every device polled exactly once per cycle, and "
             "each of the 3 agents polled a share",
             [a for a in fleet.audit(first) if a.cycle_at + INTERVAL <= t_kill],
             lambda a: bool(a.gaps or a.duplicates) or sorted(a.by_agent) != names, first)
        fleet.finish(failures, crashed=(victim.name,))
    finally:
        fleet.cleanup()
