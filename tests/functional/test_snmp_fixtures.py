"""The SNMP test servers: ManagedSnmpd (many loopback devices) and ManagedSnmpExporter."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zkpoll.exceptions import ZkpollError
from zkpoll.testing.plugins import require_server
from zkpoll.testing.snmp_exporter import ManagedSnmpExporter
from zkpoll.testing.snmpd import (
    ManagedSnmpd,
    free_udp_port,
    loopback_addresses,
    v2c_get_request,
)

pytestmark = pytest.mark.functional

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IP_IN_RECEIVES = "1.3.6.1.2.1.4.3.0"
_QUIET = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}  # Debian has no IETF MIBs


@pytest.fixture(scope="module")
def snmpget() -> str:
    """The Net-SNMP ``snmpget`` command (Debian ``snmp``)."""
    found = shutil.which("snmpget")
    if found is None:
        message = "snmpget not found (`apt-get install -y snmp`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture
def own_snmpd() -> Iterator[ManagedSnmpd]:
    """A private ManagedSnmpd on 3 addresses, to pause, kill or restart."""
    require_server(ManagedSnmpd)
    server = ManagedSnmpd(3)
    server.start()
    yield server
    server.close()


def get(snmpget: str, device: str, oid: str, *options: str,
        timeout: float = 2.0) -> subprocess.CompletedProcess[str]:
    """``snmpget -On`` one ``oid`` of ``device`` (one retry unless ``-r`` given)."""
    command = [snmpget, "-On", "-t", f"{timeout:g}", "-r", "1", *options, device, oid]
    return subprocess.run(command, env=_QUIET, capture_output=True, text=True, timeout=30,
                          check=False)


def v2c(snmpd: ManagedSnmpd) -> list[str]:
    return ["-v2c", "-c", snmpd.community]


def v3(snmpd: ManagedSnmpd, *, auth: str | None = None, user: str | None = None) -> list[str]:
    return ["-v3", "-l", "authPriv", "-u", user or snmpd.v3_user,
            "-a", "SHA", "-A", auth or snmpd.v3_auth_password,
            "-x", "AES", "-X", snmpd.v3_priv_password]


def test_every_device_answers_v2c(snmpd_server: ManagedSnmpd, snmpget: str) -> None:
    assert len(set(snmpd_server.devices)) == 8
    for device in snmpd_server.devices:
        result = get(snmpget, device, SYS_UPTIME, *v2c(snmpd_server))
        assert f".{SYS_UPTIME} = Timeticks:" in result.stdout, (device, result.stderr)


def test_v3_authpriv_get(snmpd_server: ManagedSnmpd, snmpget: str) -> None:
    result = get(snmpget, snmpd_server.devices[1], IP_IN_RECEIVES, *v3(snmpd_server))
    assert f".{IP_IN_RECEIVES} = Counter32:" in result.stdout, result.stderr


def test_wrong_v3_auth_password_is_an_authentication_failure(
        snmpd_server: ManagedSnmpd, snmpget: str) -> None:
    result = get(snmpget, snmpd_server.devices[2], IP_IN_RECEIVES,
                 *v3(snmpd_server, auth="not-the-password"))
    assert "Authentication failure" in result.stderr, (result.stdout, result.stderr)
    unknown = get(snmpget, snmpd_server.devices[2], IP_IN_RECEIVES,
                  *v3(snmpd_server, user="nobody"))
    assert "Unknown user name" in unknown.stderr, (unknown.stdout, unknown.stderr)


def test_wrong_community_gets_no_answer(snmpd_server: ManagedSnmpd, snmpget: str) -> None:
    result = get(snmpget, snmpd_server.devices[3], SYS_UPTIME, "-v2c", "-c", "wrong",
                 "-r", "0", timeout=0.3)
    assert "Timeout" in result.stderr, (result.stdout, result.stderr)


def test_ezsnmp_reads_v2c_and_v3(snmpd_server: ManagedSnmpd) -> None:
    ezsnmp = pytest.importorskip("ezsnmp")
    host, port = snmpd_server.devices[4].split(":")
    common = {"hostname": host, "port_number": int(port), "timeout": 2, "retries": 1}
    session = ezsnmp.Session(version=2, community=snmpd_server.community, **common)
    assert session.get(SYS_UPTIME)[0].type == "Timeticks"
    # ezsnmp 2.5: with a v2c Session to the same device still alive, a third
    # of v3 Sessions drop the agent's discovery report and time out.
    del session
    secure = ezsnmp.Session(
        version=3, security_level="authPriv", security_username=snmpd_server.v3_user,
        auth_protocol="SHA", auth_passphrase=snmpd_server.v3_auth_password,
        privacy_protocol="AES", privacy_passphrase=snmpd_server.v3_priv_password, **common)
    assert int(secure.get(IP_IN_RECEIVES)[0].value) > 0


def test_pause_silences_every_device_and_resume_brings_them_back(
        own_snmpd: ManagedSnmpd, snmpget: str) -> None:
    own_snmpd.pause()
    assert own_snmpd.paused and own_snmpd.running
    assert not any(own_snmpd.answers(0.2, device) for device in own_snmpd.devices)
    silent = get(snmpget, own_snmpd.devices[0], SYS_UPTIME, *v2c(own_snmpd), "-r", "0",
                 timeout=0.3)
    assert "Timeout" in silent.stderr, silent.stdout
    own_snmpd.resume()
    assert not own_snmpd.paused
    assert all(own_snmpd.answers(2.0, device) for device in own_snmpd.devices)


def test_stop_kill_and_start_keep_the_port_and_the_v3_user(
        own_snmpd: ManagedSnmpd, snmpget: str) -> None:
    devices = own_snmpd.devices
    own_snmpd.pause()
    own_snmpd.stop(timeout=2.0)  # a paused snmpd still stops at once
    assert not own_snmpd.running and not own_snmpd.answers(0.2)
    own_snmpd.start()
    own_snmpd.kill()
    assert not own_snmpd.running
    own_snmpd.start()
    assert own_snmpd.devices == devices
    result = get(snmpget, devices[2], IP_IN_RECEIVES, *v3(own_snmpd))
    assert "Counter32" in result.stdout, result.stderr


def test_a_thousand_addresses_in_one_snmpd() -> None:
    require_server(ManagedSnmpd)
    with ManagedSnmpd(1000) as fleet:
        assert len(set(fleet.addresses)) == 1000
        assert all(fleet.answers(2.0, device) for device in fleet.devices)


def test_free_udp_port_is_free_on_every_host() -> None:
    hosts = loopback_addresses(300, "127.78")
    port = free_udp_port(hosts)
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in hosts]
    try:
        for host, sock in zip(hosts, sockets):
            sock.bind((host, port))
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_with_multibyte_oid_arcs_is_understood(snmpd_server: ManagedSnmpd) -> None:
    la_load_1 = "1.3.6.1.4.1.2021.10.1.3.1"  # UCD laLoad.1 (arc 2021 takes two bytes)
    host, port = snmpd_server.devices[5].split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(v2c_get_request(snmpd_server.community, la_load_1, 4242), (host, int(port)))
        reply = sock.recv(65535)
    assert bytes.fromhex("2b06010401 8f65 0a010301".replace(" ", "")) in reply
    assert b"\x04" in reply.split(b"\x8f\x65\x0a\x01\x03\x01", 1)[1][:1]  # an OCTET STRING


def test_bad_arguments_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ZkpollError, match="at least 8"):
        ManagedSnmpd(1, v3_auth_password="short")
    with pytest.raises(ZkpollError, match="not an IPv4 address"):
        ManagedSnmpd(["127.0.0.1", "localhost"])
    with pytest.raises(ZkpollError, match="one word"):
        ManagedSnmpd(1, community="two words")
    monkeypatch.setattr("zkpoll.testing.snmpd.resource.getrlimit", lambda _: (100, 100))
    with pytest.raises(ZkpollError, match="ulimit -n"):
        ManagedSnmpd(200)


def metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value), ...]} of a Prometheus text exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_exporter_scrapes_if_mib_over_v2c(snmp_exporter: ManagedSnmpExporter,
                                          snmpd_server: ManagedSnmpd) -> None:
    series = metrics(snmp_exporter.scrape(snmpd_server.devices[0]))
    octets = series["ifInOctets_total"]
    assert octets and all({"ifIndex", "ifDescr", "ifName"} <= labels.keys()
                          for labels, _ in octets)
    assert {labels["ifDescr"] for labels, _ in octets} >= {"lo"}
    assert sum(value for _, value in octets) > 0  # our own SNMP traffic crosses lo
    for name in ("ifOutOctets_total", "ifInErrors_total", "ifOutErrors_total", "ifSpeed",
                 "ifOperStatus", "ifAdminStatus", "ifMtu", "ifHCInOctets_total",
                 "ifHCOutOctets_total", "ifType_info"):
        assert len(series[name]) == len(octets), name
    assert series["sysUpTime"][0][1] > 0


def test_exporter_scrapes_if_mib_over_v3(snmp_exporter: ManagedSnmpExporter,
                                         snmpd_server: ManagedSnmpd) -> None:
    series = metrics(snmp_exporter.scrape(snmpd_server.devices[7], "if_mib_v3"))
    assert sum(value for _, value in series["ifHCInOctets_total"]) > 0


def test_exporter_scrape_of_a_silent_device_fails(own_snmpd: ManagedSnmpd) -> None:
    require_server(ManagedSnmpExporter)
    with ManagedSnmpExporter(own_snmpd, snmp_timeout=0.3, retries=0) as exporter:
        assert "ifInOctets" in exporter.scrape(own_snmpd.devices[1])
        own_snmpd.pause()
        started = time.monotonic()
        with pytest.raises(ZkpollError, match=r"(?s)HTTP 500.*request timeout"):
            exporter.scrape(own_snmpd.devices[1])
        assert time.monotonic() - started < 5
        with pytest.raises(ZkpollError, match="HTTP 400"):
            exporter.scrape(own_snmpd.devices[1], "no_such_module")
