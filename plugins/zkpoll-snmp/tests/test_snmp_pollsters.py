"""The SNMP pollsters against a real snmpd: every hardware meter over SNMPv2c and
SNMPv3, one conversation per device per cycle, generic meters, the device file,
a device going silent mid-cycle and the SNMPv3 authentication failure."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from zkpoll_snmp import hardware
from zkpoll_snmp.discovery import SnmpDeviceDiscovery
from zkpoll_snmp.options import OPTS

from zkpoll.plugin import Unreachable, resource_key
from zkpoll.polling.plugins import load_plugins
from zkpoll.sample import Sample
from zkpoll.testing.plugins import PollsterContract, discover, make_context, poll_cycle
from zkpoll.testing.snmpd import ManagedSnmpd
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

IN_PKTS = "1.3.6.1.2.1.11.1.0"   # snmpInPkts: requests the agent received


def make_conf(**snmp: Any) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="zkpoll-snmp-tests")
    conf.register_opts(OPTS, group="snmp")
    for name, value in {"definitions_dirs": [], **snmp}.items():
        conf.set_override(name, value, group="snmp")
    return conf


def v2c(snmpd: ManagedSnmpd, index: int = 0) -> str:
    return f"snmp://{snmpd.community}@{snmpd.devices[index]}"


def v3(snmpd: ManagedSnmpd, index: int = 1, auth: str | None = None) -> str:
    return (f"snmp://{snmpd.v3_user}:{auth or snmpd.v3_auth_password}@{snmpd.devices[index]}"
            f"?auth_proto=sha&priv_proto=aes128&priv_password={snmpd.v3_priv_password}")


def get(snmpd: ManagedSnmpd, oid: str) -> str | None:
    """One value read straight from the agent with Net-SNMP (None: not served)."""
    from ezsnmp import Session
    session = Session(hostname=snmpd.addresses[-1], port_number=snmpd.port, version=2,
                      community=snmpd.community, print_oids_numerically=True)
    result = session.get([oid])[0]
    return None if result.type in ("NOSUCHOBJECT", "NOSUCHINSTANCE") else result.value


def in_packets(snmpd: ManagedSnmpd) -> int:
    return int(get(snmpd, IN_PKTS) or 0)


# --- every hardware meter, v2c and v3, in one conversation per device -------------------
def test_every_hardware_meter_in_one_conversation_per_device(snmpd: ManagedSnmpd) -> None:
    plugins = load_plugins(make_conf(), ["central"])
    meters = sorted(hardware.HARDWARE)
    devices = [v2c(snmpd, 0), v3(snmpd, 1)]
    before = in_packets(snmpd)
    results = poll_cycle(plugins, meters, devices)
    requests = in_packets(snmpd) - before - 1          # minus our own counter GET
    # a young snmpd serves no CPU percentages (ssCpuUser, ssCpuIdle) yet: no sample then
    served = {m: d.table or get(snmpd, d.oid) is not None
              for m, d in hardware.HARDWARE.items()}
    assert sum(served.values()) >= 18, served
    for meter in meters:
        samples = [s for s in results[meter] if isinstance(s, Sample)]
        hosts = {s.resource_metadata["resource_url"] for s in samples}
        expected = {resource_key(d) for d in devices} if served[meter] else set()
        assert hosts == expected, meter
        definition = hardware.HARDWARE[meter]
        for sample in samples:
            assert (sample.name, sample.type, sample.unit) == \
                (meter, definition.type, definition.unit)
            assert isinstance(sample.volume, (int, float)) and sample.volume >= 0, sample
    # per device 1 GET of the scalars + 1 GETBULK of the 10 columns, nothing per meter;
    # Net-SNMP precedes each SNMPv3 request with an engine discovery (README.md)
    assert requests == 2 + 2 * 2, f"{requests} requests for 20 meters of 2 devices"
    net = [s for s in results["hardware.network.incoming.bytes"] if isinstance(s, Sample)]
    lo = next(s for s in net if s.resource_metadata["name"] == "lo")
    assert lo.resource_id == f"{snmpd.devices[0]}.lo"
    assert lo.resource_metadata["ip"] == "127.0.0.1"
    total, = [s.volume for s in results["hardware.memory.total"]
              if isinstance(s, Sample) and s.resource_id == snmpd.devices[0]]
    used, = [s.volume for s in results["hardware.memory.used"]
             if isinstance(s, Sample) and s.resource_id == snmpd.devices[0]]
    assert 0 < used < total


class _HardwareContract(PollsterContract):
    timeout = 5.0

    @pytest.fixture
    def resources(self, snmpd: ManagedSnmpd) -> list[Any]:
        return [v2c(snmpd, 2), v3(snmpd, 3)]

    @pytest.fixture
    def unreachable_resources(self, silent_device: str) -> list[Any]:
        return [silent_device]

    @pytest.fixture
    def unresponsive_resources(self, silent_device: str) -> list[Any]:
        return [silent_device]

    def resource_of(self, sample: Sample) -> str:
        return sample.resource_metadata["resource_url"]


class TestMemoryTotalContract(_HardwareContract):
    meter, sample_type, unit = "hardware.memory.total", "gauge", "KB"
    pollster_class = hardware.MemoryTotal


class TestNetworkIncomingBytesContract(_HardwareContract):
    meter, sample_type, unit = "hardware.network.incoming.bytes", "cumulative", "B"
    pollster_class = hardware.NetworkIncomingBytes


# --- generic meters ---------------------------------------------------------------------
def test_generic_meters_scalar_and_table(snmpd: ManagedSnmpd, tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        "- name: system.uptime\n  type: gauge\n  unit: cs\n  oid: 1.3.6.1.2.1.1.3.0\n"
        "- name: interface.mtu\n  type: gauge\n  unit: B\n  oid: 1.3.6.1.2.1.2.2.1.4\n"
        "  table: true\n  resource_id_suffix: name\n"
        "  metadata:\n    name: 1.3.6.1.2.1.2.2.1.2\n"
        "    kind: {oid: 1.3.6.1.2.1.2.2.1.3, type: int}\n")
    plugins = load_plugins(make_conf(definitions_dirs=[str(tmp_path)]), ["central"])
    results = poll_cycle(plugins, ["system.uptime", "interface.mtu"], [v2c(snmpd, 4)])
    uptime, = results["system.uptime"]
    assert isinstance(uptime, Sample) and uptime.volume > 0 and uptime.unit == "cs"
    mtus = {s.resource_id: s for s in results["interface.mtu"] if isinstance(s, Sample)}
    lo = mtus[f"{snmpd.devices[4]}.lo"]
    assert lo.volume == 65536 and lo.resource_metadata["kind"] == 24   # softwareLoopback


# --- a device going silent in the middle of its conversation --------------------------------
def test_a_device_going_silent_mid_cycle_costs_only_its_samples(snmpd: ManagedSnmpd,
                                                                tmp_path: Path) -> None:
    """One device walks a long table (installed packages, one row per request); it
    freezes once it has answered 20 requests. The cycle ends within its budget with
    that device Unreachable and every other device's samples."""
    (tmp_path / "sw.yaml").write_text(
        "- name: software.installed\n  type: gauge\n  unit: package\n"
        "  oid: 1.3.6.1.2.1.25.6.3.1.4\n  table: true\n")
    with ManagedSnmpd(1, extra_conf="") as slow:
        slow_device = f"snmp://{slow.devices[0]}"
        conf = make_conf(definitions_dirs=[str(tmp_path)], max_repetitions=1, timeout=0.3,
                         retries=0)
        plugins = load_plugins(conf, ["central"])
        start = in_packets(slow)
        assert poll_cycle(plugins, ["software.installed"], [slow_device])["software.installed"]
        rows = in_packets(slow) - start
        assert rows > 60, f"the table took only {rows} requests"

        def freeze_when_busy() -> None:
            base = in_packets(slow)
            wait_for(lambda: in_packets(slow) - base >= 20, 30, "20 requests answered",
                     interval=0.01)
            slow.pause()

        freezer = threading.Thread(target=freeze_when_busy)
        freezer.start()
        began = time.monotonic()
        results = poll_cycle(plugins, ["software.installed", "hardware.memory.total"],
                            [slow_device, v2c(snmpd, 5)], timeout=10.0)
        took = time.monotonic() - began
        freezer.join()
        try:
            assert slow.paused
            installed = results["software.installed"]
            said = [r for r in installed if isinstance(r, Unreachable)]
            assert [r.resource_id for r in said] == [slow_device], installed[:3]
            assert not [s for s in installed if isinstance(s, Sample)
                        and s.resource_metadata["resource_url"] == slow_device]
            memory = [s for s in results["hardware.memory.total"] if isinstance(s, Sample)]
            assert [s.resource_id for s in memory] == [snmpd.devices[5]]
            assert took < 10.0
        finally:
            slow.resume()


# --- SNMPv3 authentication failure: one line per device per streak ---------------------
def test_v3_auth_failure_is_one_error_per_device_per_streak(
        snmpd: ManagedSnmpd, caplog: pytest.LogCaptureFixture) -> None:
    plugins = load_plugins(make_conf(), ["central"])
    wrong = v3(snmpd, 6, auth="not-the-password")
    meters = ["hardware.memory.total", "hardware.cpu.load.1min"]
    with caplog.at_level(logging.INFO, logger="zkpoll_snmp"):
        for _ in range(3):
            results = poll_cycle(plugins, meters, [wrong, v2c(snmpd, 7)])
            for meter in meters:
                assert {s.resource_id for s in results[meter]} == {snmpd.devices[7]}
                assert not [r for r in results[meter] if isinstance(r, Unreachable)]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "Authentication failure" in message and snmpd.devices[6] in message
        assert "not-the-password" not in caplog.text
        assert snmpd.v3_priv_password not in caplog.text
        poll_cycle(plugins, meters, [v3(snmpd, 6)])   # fixed: one INFO
    infos = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(infos) == 1 and snmpd.devices[6] in infos[0]


# --- the device file ----------------------------------------------------------------------
def test_device_file_is_reread_and_a_bad_one_keeps_the_last_good(
        snmpd: ManagedSnmpd, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"lab:\n  version: 3\n  user: {snmpd.v3_user}\n  auth_protocol: SHA\n"
                        f"  auth_password: {snmpd.v3_auth_password}\n  priv_protocol: AES\n"
                        f"  priv_password: {snmpd.v3_priv_password}\n")
    devices = tmp_path / "devices.yaml"
    host, port = snmpd.addresses[0], snmpd.port
    devices.write_text(f"- {{host: {host}, port: {port}, profile: lab}}\n")
    conf = make_conf(profiles_file=str(profiles))
    discovery = SnmpDeviceDiscovery(conf)
    context = make_context(conf)
    found = discover(discovery, str(devices), context=context)
    assert [d["id"] for d in found] == [f"snmp://{host}:{port}"]
    plugins = load_plugins(conf, ["central"])
    sample, = poll_cycle(plugins, ["hardware.memory.total"], found)["hardware.memory.total"]
    assert isinstance(sample, Sample) and sample.resource_id == snmpd.devices[0]

    devices.write_text(f"- {{host: {host}, port: {port}, profile: lab}}\n"
                       f"- snmp://{snmpd.devices[1]}\n")
    os.utime(devices, (time.time() + 5, time.time() + 5))
    assert len(discover(discovery, str(devices), context=context)) == 2
    devices.write_text(f"- {{host: {host}, port: {port}, profile: nope}}\n")
    os.utime(devices, (time.time() + 10, time.time() + 10))
    with caplog.at_level(logging.INFO, logger="zkpoll_snmp"):
        for _ in range(3):
            assert len(discover(discovery, str(devices), context=context)) == 2
        devices.write_text(f"- snmp://{snmpd.devices[2]}\n")
        os.utime(devices, (time.time() + 15, time.time() + 15))
        assert len(discover(discovery, str(devices), context=context)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [(f"snmp_devices: {devices}:1: device #1: device {host}:{port}: unknown "
                      "profile 'nope' (known: lab, public); keeping the last good list "
                      "(2 device(s))")]
    assert any("is good again: 1 device(s)" in r.getMessage() for r in caplog.records)
    assert snmpd.v3_auth_password not in caplog.text
