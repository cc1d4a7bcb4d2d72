"""Pure parts of the SNMP plugin: devices, credentials, profiles, definitions,
sample building and the multi-column GETBULK walk (on a table in memory)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from zkpoll_snmp.client import Plan, SnmpClient
from zkpoll_snmp.credentials import (
    PUBLIC,
    Credentials,
    load_profiles,
    parse_credentials,
)
from zkpoll_snmp.definitions import load_definitions, parse_meter
from zkpoll_snmp.device import parse_device
from zkpoll_snmp.hardware import HARDWARE

from zkpoll.exceptions import ConfigError
from zkpoll.plugin import resource_key

PROFILES = {"public": PUBLIC, "core": Credentials("3", user="mon", auth_protocol="SHA",
                                                 auth_password="authpass1",
                                                 priv_protocol="AES", priv_password="privpass1")}


# --- devices and credentials ---------------------------------------------------------
@pytest.mark.parametrize("url, community", [
    ("snmp://10.0.0.1", "public"),                 # Ceilometer's default community
    ("snmp://s3cret@10.0.0.1", "s3cret"),          # the user part is the community
])
def test_v2c_urls_as_ceilometer_read_them(url: str, community: str) -> None:
    device = parse_device(url, PROFILES, "public")
    assert device.credentials == Credentials("2c", community=community)
    assert (device.host, device.port, device.resource_id) == ("10.0.0.1", 161, "10.0.0.1")
    assert device.key == "snmp://10.0.0.1"


def test_v3_url_in_ceilometers_format_and_no_secret_in_the_key() -> None:
    url = ("snmp://mon:authpass1@10.0.0.2:1161?auth_proto=sha&priv_proto=aes128"
           "&priv_password=privpass1")
    device = parse_device(url, PROFILES, "public")
    assert device.credentials == PROFILES["core"]
    assert device.resource_id == "10.0.0.2:1161"
    assert resource_key(url) == device.key == "snmp://10.0.0.2:1161?auth_proto=sha&priv_proto=aes128"
    for text in (device.key, str(device), repr(device.credentials)):
        assert "authpass1" not in text and "privpass1" not in text
    assert str(device) == "10.0.0.2:1161 (v3 user mon authPriv SHA/AES)"


def test_profiles_by_url_and_mapping() -> None:
    assert parse_device("snmp://h?profile=core", PROFILES, "public").credentials.user == "mon"
    device = parse_device({"host": "h", "port": 1161, "profile": "core"}, PROFILES, "public")
    assert (device.key, device.credentials.version) == ("snmp://h:1161", "3")
    inline = parse_device({"host": "h", "community": "c0mm"}, PROFILES, "public")
    assert inline.credentials == Credentials("2c", community="c0mm")


@pytest.mark.parametrize("resource, message", [
    ("snmp://h?profile=nope", "unknown profile 'nope'"),
    ("snmp://h?priv_proto=aes", "need a user"),
    ("snmp://h?colour=red", "unknown query parameter(s) colour"),
    ("snmp://u:short@h", "at least 8 characters"),
    ("snmp://u:authpass1@h?auth_proto=rot13", "auth_protocol 'rot13' is not one of"),
    ("http://h", "not an snmp:// URL"),
    ({"host": "h", "port": 0}, "port must be 1-65535"),
    ({"host": "h", "profile": "core", "community": "x"}, "either a profile or inline"),
    ({"port": 161}, "needs a host"),
])
def test_bad_devices_say_what_is_wrong_without_secrets(resource: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_device(resource, PROFILES, "public")
    assert message in str(err.value)
    assert "short" not in str(err.value) or "characters" in str(err.value)


@pytest.mark.parametrize("raw, message", [
    ({"version": "2c"}, "needs a community"),
    ({"version": 1, "community": "x"}, "SNMPv1 is not supported"),
    ({"user": "u", "priv_protocol": "aes", "priv_password": "privpass1"}, "needs auth_protocol"),
    ({"version": "2c", "community": "c", "user": "u"}, "belong to SNMPv3"),
    ({"user": "u", "colour": "red"}, "unknown key(s) colour"),
])
def test_bad_credentials(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_credentials(raw, "profile 'p'")
    assert message in str(err.value) and str(err.value).startswith("profile 'p': ")


def test_profiles_file_errors_name_file_and_line(tmp_path: Any) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("good:\n  community: c\nbad:\n  user: u\n  auth_protocol: sha\n"
                    "  auth_password: tiny\n")
    with pytest.raises(ConfigError) as err:
        load_profiles(str(path))
    assert str(err.value).startswith(f"{path}:6: profile 'bad': auth_password must have")
    assert "tiny" not in str(err.value)
    path.write_text("good:\n  community: c\n")
    assert set(load_profiles(str(path))) == {"public", "good"}


# --- generic definitions ---------------------------------------------------------------
def test_generic_definition_scalar_and_table() -> None:
    scalar = parse_meter({"name": "ups.charge", "type": "gauge", "unit": "%",
                          "oid": ".1.3.6.1.2.1.33.1.2.4.0"})
    assert scalar.plan() == Plan(("1.3.6.1.2.1.33.1.2.4.0",), ())
    table = parse_meter({"name": "if.in", "type": "cumulative", "unit": "B", "table": True,
                         "oid": "1.3.6.1.2.1.31.1.1.1.6",
                         "metadata": {"name": "1.3.6.1.2.1.31.1.1.1.1"},
                         "resource_id_suffix": "name", "scale": 8})
    assert table.plan() == Plan((), ("1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.1"))


@pytest.mark.parametrize("raw, message", [
    ({"name": "m", "type": "gauge", "unit": "1", "oid": "ifInOctets"}, "numeric OID"),
    ({"name": "m", "type": "rate", "unit": "1", "oid": "1.3"}, "type must be one of"),
    ({"name": "m", "type": "gauge", "oid": "1.3"}, "unit is required"),
    ({"name": "m", "type": "gauge", "unit": "1", "oid": "1.3", "resource_id_suffix": "x"},
     "needs table: true"),
    ({"name": "m", "type": "gauge", "unit": "1", "oid": "1.3", "table": True,
      "resource_id_suffix": "x"}, "'index' or a metadata key"),
    ({"name": "m", "type": "gauge", "unit": "1", "oid": "1.3", "lambda": "x"}, "unknown key"),
])
def test_bad_generic_definitions(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_meter(raw)
    assert message in str(err.value)


def test_definition_files_keep_the_good_meters(tmp_path: Any, caplog: Any) -> None:
    (tmp_path / "a.yaml").write_text(
        "- name: ok.one\n  type: gauge\n  unit: '1'\n  oid: 1.3.6.1.2.1.1.3.0\n"
        "- name: broken\n  type: gauge\n  unit: '1'\n  oid: sysUpTime\n")
    (tmp_path / "b.yaml").write_text("- name: ok.one\n  type: gauge\n  unit: '1'\n  oid: 1.3.0\n")
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")
    with caplog.at_level(logging.ERROR):
        meters, failures = load_definitions([str(tmp_path), str(tmp_path / "missing")])
    assert [m.name for m in meters] == ["ok.one"]
    assert failures[f"snmp:{tmp_path}/a.yaml:broken"].startswith(f"{tmp_path}/a.yaml:5: meter broken")
    assert "already defined in" in failures[f"snmp:{tmp_path}/b.yaml:ok.one"]
    assert f"snmp:{tmp_path}/c.yaml" in failures
    assert len(caplog.records) == 3


# --- samples from fetched values ----------------------------------------------------------
VALUES = {
    "1.3.6.1.4.1.2021.4.5.0": ("INTEGER", "1000"),
    "1.3.6.1.4.1.2021.4.6.0": ("INTEGER", "400"),
    "1.3.6.1.4.1.2021.10.1.3.1": ("STRING", "0.25"),
    "1.3.6.1.2.1.2.2.1.2.1": ("STRING", "lo"), "1.3.6.1.2.1.2.2.1.2.2": ("STRING", "eth0"),
    "1.3.6.1.2.1.2.2.1.5.2": ("Gauge32", "1000000000"),
    "1.3.6.1.2.1.2.2.1.6.2": ("Hex-STRING", "1A 53 EC 48 19 4D"),
    "1.3.6.1.2.1.2.2.1.10.1": ("Counter32", "5"), "1.3.6.1.2.1.2.2.1.10.2": ("Counter32", "7"),
    "1.3.6.1.2.1.4.20.1.2.192.0.2.9": ("INTEGER", "2"),
    "1.3.6.1.4.1.2021.9.1.6.4": ("INTEGER", "2048"),
    "1.3.6.1.4.1.2021.9.1.3.4": ("STRING", "/dev/vda1"),
    "1.3.6.1.4.1.2021.9.1.2.4": ("STRING", "/"),
}


def test_hardware_samples_follow_ceilometer() -> None:
    device = parse_device("snmp://public@192.0.2.9", PROFILES, "public")
    used, = HARDWARE["hardware.memory.used"].samples(device, VALUES, 1.0)
    assert (used.name, used.type, used.unit, used.volume, used.resource_id) == \
        ("hardware.memory.used", "gauge", "KB", 600, "192.0.2.9")
    assert used.resource_metadata == {"resource_url": "snmp://192.0.2.9"}
    load, = HARDWARE["hardware.cpu.load.1min"].samples(device, VALUES, 1.0)
    assert (load.volume, load.unit) == (0.25, "process")
    lo, eth0 = HARDWARE["hardware.network.incoming.bytes"].samples(device, VALUES, 1.0)
    assert (lo.resource_id, lo.volume, lo.type, lo.unit) == ("192.0.2.9.lo", 5, "cumulative", "B")
    assert eth0.resource_metadata == {"name": "eth0", "speed": 125000000.0,
                                      "mac": "1a53ec48194d", "ip": "192.0.2.9",
                                      "resource_url": "snmp://192.0.2.9"}
    disk, = HARDWARE["hardware.disk.size.total"].samples(device, VALUES, 1.0)
    assert (disk.resource_id, disk.volume, disk.resource_metadata["path"]) == \
        ("192.0.2.9./dev/vda1", 2048, "/")
    assert HARDWARE["hardware.cpu.util"].samples(device, VALUES, 1.0) == []  # not served


def test_timeticks_and_text_numbers() -> None:
    from zkpoll_snmp.meters import CONVERTERS
    assert CONVERTERS["number"]("(4213) 0:00:42.13") == 4213
    assert CONVERTERS["number"]('"0.25"') == 0.25
    assert CONVERTERS["int"]("7") == 7


def test_every_ceilometer_hardware_meter_is_there() -> None:
    assert len(HARDWARE) == 20
    assert {m.unit for m in HARDWARE.values()} == {"process", "%", "KB", "B", "packet",
                                                   "datagrams", "blocks"}


# --- the GETBULK walk, on an agent in memory ------------------------------------------------
class _TableSession:
    """Answers GETBULK like an SNMP agent over a sorted OID table (pure logic)."""

    def __init__(self, table: dict[str, str], repetitions: int) -> None:
        self.oids = sorted(table, key=lambda o: tuple(int(p) for p in o.split(".")))
        self.table, self.repetitions, self.requests = table, repetitions, 0

    def _next(self, oid: str) -> str | None:
        key = tuple(int(p) for p in oid.split("."))
        return next((o for o in self.oids if tuple(int(p) for p in o.split(".")) > key), None)

    def bulk_get(self, oids: list[str]) -> list[Any]:
        self.requests += 1
        rows, cursor = [], list(oids)
        for _ in range(self.repetitions):
            for i, oid in enumerate(cursor):
                nxt = self._next(oid) if oid != "END" else None
                cursor[i] = nxt or "END"
                rows.append(SimpleNamespace(oid="." + nxt, index="", value=self.table[nxt],
                                            type="INTEGER") if nxt else
                            SimpleNamespace(oid=oid, index="", value="", type="ENDOFMIBVIEW"))
        return rows


@pytest.mark.parametrize("rows, repetitions, requests", [(3, 25, 1), (60, 25, 3), (50, 25, 3)])
def test_walk_reads_every_column_in_few_round_trips(rows: int, repetitions: int,
                                                    requests: int) -> None:
    table = {f"1.3.6.1.2.1.2.2.1.{col}.{i}": str(col * 1000 + i)
             for col in (2, 10) for i in range(1, rows + 1)}
    table["1.3.6.1.2.1.4.3.0"] = "9"                  # the next subtree must not leak in
    session = _TableSession(table, repetitions)
    values: dict[str, tuple[str, str]] = {}
    SnmpClient.__new__(SnmpClient)._walk(session, ["1.3.6.1.2.1.2.2.1.2",
                                                   "1.3.6.1.2.1.2.2.1.10"], values)
    assert values == {oid: ("INTEGER", v) for oid, v in table.items() if ".2.2.1." in oid}
    assert session.requests == requests
