"""A real Prometheus ``snmp_exporter`` scraping a :class:`ManagedSnmpd`, for tests.

It runs ``/usr/bin/prometheus-snmp-exporter`` (Debian
``prometheus-snmp-exporter``, 0.21) as our own process on a free loopback
port, with a ``snmp.yml`` written here: Debian cannot ship upstream's (it
is generated from MIBs Debian cannot ship), so :func:`if_mib_module`
states upstream's ``if_mib`` with numeric OIDs: the ifTable and ifXTable
columns, ``sysUpTime``, each interface labelled ``ifIndex`` and looked-up
``ifAlias``, ``ifDescr`` and ``ifName``.  Modules: ``if_mib`` (v2c, the
snmpd's community) and ``if_mib_v3`` (its v3 authPriv user)::

    with ManagedSnmpd(4) as snmpd, ManagedSnmpExporter(snmpd) as exporter:
        text = exporter.scrape(snmpd.devices[0])          # Prometheus text format
        text = exporter.scrape(snmpd.devices[1], "if_mib_v3")
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import yaml

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer

if TYPE_CHECKING:
    from zkpoll.testing.snmpd import ManagedSnmpd

__all__ = ["IF_MIB_METRICS", "ManagedSnmpExporter", "if_mib_module"]

_IF_ENTRY = "1.3.6.1.2.1.2.2.1"
_IFX_ENTRY = "1.3.6.1.2.1.31.1.1.1"
_STATUS = {1: "up", 2: "down", 3: "testing"}
_OPER_STATUS = {**_STATUS, 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}
_IF_TYPES = {1: "other", 6: "ethernetCsmacd", 24: "softwareLoopback", 53: "propVirtual",
             117: "gigabitEthernet", 131: "tunnel", 135: "l2vlan", 161: "ieee8023adLag"}

#: (name, numeric OID, exporter type) of every per-interface metric of ``if_mib``.
IF_MIB_METRICS: tuple[tuple[str, str, str], ...] = (
    ("ifIndex", f"{_IF_ENTRY}.1", "gauge"),
    ("ifDescr", f"{_IF_ENTRY}.2", "DisplayString"),
    ("ifType", f"{_IF_ENTRY}.3", "EnumAsInfo"),
    ("ifMtu", f"{_IF_ENTRY}.4", "gauge"),
    ("ifSpeed", f"{_IF_ENTRY}.5", "gauge"),
    ("ifPhysAddress", f"{_IF_ENTRY}.6", "PhysAddress48"),
    ("ifAdminStatus", f"{_IF_ENTRY}.7", "gauge"),
    ("ifOperStatus", f"{_IF_ENTRY}.8", "gauge"),
    ("ifLastChange", f"{_IF_ENTRY}.9", "gauge"),
    ("ifInOctets", f"{_IF_ENTRY}.10", "counter"),
    ("ifInUcastPkts", f"{_IF_ENTRY}.11", "counter"),
    ("ifInNUcastPkts", f"{_IF_ENTRY}.12", "counter"),
    ("ifInDiscards", f"{_IF_ENTRY}.13", "counter"),
    ("ifInErrors", f"{_IF_ENTRY}.14", "counter"),
    ("ifInUnknownProtos", f"{_IF_ENTRY}.15", "counter"),
    ("ifOutOctets", f"{_IF_ENTRY}.16", "counter"),
    ("ifOutUcastPkts", f"{_IF_ENTRY}.17", "counter"),
    ("ifOutNUcastPkts", f"{_IF_ENTRY}.18", "counter"),
    ("ifOutDiscards", f"{_IF_ENTRY}.19", "counter"),
    ("ifOutErrors", f"{_IF_ENTRY}.20", "counter"),
    ("ifOutQLen", f"{_IF_ENTRY}.21", "gauge"),
    ("ifName", f"{_IFX_ENTRY}.1", "DisplayString"),
    ("ifInMulticastPkts", f"{_IFX_ENTRY}.2", "counter"),
    ("ifInBroadcastPkts", f"{_IFX_ENTRY}.3", "counter"),
    ("ifOutMulticastPkts", f"{_IFX_ENTRY}.4", "counter"),
    ("ifOutBroadcastPkts", f"{_IFX_ENTRY}.5", "counter"),
    ("ifHCInOctets", f"{_IFX_ENTRY}.6", "counter"),
    ("ifHCInUcastPkts", f"{_IFX_ENTRY}.7", "counter"),
    ("ifHCInMulticastPkts", f"{_IFX_ENTRY}.8", "counter"),
    ("ifHCInBroadcastPkts", f"{_IFX_ENTRY}.9", "counter"),
    ("ifHCOutOctets", f"{_IFX_ENTRY}.10", "counter"),
    ("ifHCOutUcastPkts", f"{_IFX_ENTRY}.11", "counter"),
    ("ifHCOutMulticastPkts", f"{_IFX_ENTRY}.12", "counter"),
    ("ifHCOutBroadcastPkts", f"{_IFX_ENTRY}.13", "counter"),
    ("ifLinkUpDownTrapEnable", f"{_IFX_ENTRY}.14", "gauge"),
    ("ifHighSpeed", f"{_IFX_ENTRY}.15", "gauge"),
    ("ifPromiscuousMode", f"{_IFX_ENTRY}.16", "gauge"),
    ("ifConnectorPresent", f"{_IFX_ENTRY}.17", "gauge"),
    ("ifAlias", f"{_IFX_ENTRY}.18", "DisplayString"),
    ("ifCounterDiscontinuityTime", f"{_IFX_ENTRY}.19", "gauge"),
)
_ENUMS = {"ifType": _IF_TYPES, "ifAdminStatus": _STATUS, "ifOperStatus": _OPER_STATUS}
_LOOKUPS = ("ifAlias", "ifDescr", "ifName")  # labels every interface metric carries


def if_mib_module(auth: dict[str, str], *, version: int = 2, timeout: float = 2.0,
                  retries: int = 1) -> dict[str, Any]:
    """One snmp_exporter 0.21 module equivalent to upstream's ``if_mib``.

    ``auth`` is the module's ``auth`` section (``community``, or v3
    ``username``, ``security_level``, ``password``...); ``timeout`` (s) and
    ``retries`` apply to each SNMP request.
    """
    oids = {name: oid for name, oid, _ in IF_MIB_METRICS}
    lookups = [{"labels": ["ifIndex"], "labelname": name, "oid": oids[name],
                "type": "DisplayString"} for name in _LOOKUPS]
    metrics: list[dict[str, Any]] = [{"name": "sysUpTime", "oid": "1.3.6.1.2.1.1.3",
                                      "type": "gauge", "help": "sysUpTime - 1.3.6.1.2.1.1.3"}]
    for name, oid, kind in IF_MIB_METRICS:
        metric: dict[str, Any] = {"name": name, "oid": oid, "type": kind,
                                  "help": f"{name} - {oid}",
                                  "indexes": [{"labelname": "ifIndex", "type": "gauge"}],
                                  "lookups": lookups}
        if name in _ENUMS:
            metric["enum_values"] = _ENUMS[name]
        metrics.append(metric)
    return {"walk": ["1.3.6.1.2.1.2", "1.3.6.1.2.1.31.1.1"], "get": ["1.3.6.1.2.1.1.3.0"],
            "metrics": metrics, "version": version, "max_repetitions": 25,
            "retries": retries, "timeout": f"{timeout:g}s", "auth": auth}


class ManagedSnmpExporter(ManagedServer):
    """One ``prometheus-snmp-exporter`` (``ZKPOLL_SNMP_EXPORTER`` overrides it) for ``snmpd``.

    ``snmp_timeout`` (s) and ``retries`` bound each SNMP request, so a
    scrape of a paused device fails within about ``snmp_timeout *
    (retries + 1)`` per walk.
    """

    program = "prometheus-snmp-exporter"
    env_var = "ZKPOLL_SNMP_EXPORTER"
    package = "prometheus-snmp-exporter"
    scheme = "http"
    ready_path = "/"

    def __init__(self, snmpd: ManagedSnmpd, port: int | None = None, *,
                 snmp_timeout: float = 2.0, retries: int = 1) -> None:
        super().__init__(port)
        v2c = {"community": snmpd.community}
        v3 = {"username": snmpd.v3_user, "security_level": "authPriv",
              "password": snmpd.v3_auth_password, "auth_protocol": "SHA",
              "priv_protocol": "AES", "priv_password": snmpd.v3_priv_password}
        self._modules = {
            "if_mib": if_mib_module(v2c, timeout=snmp_timeout, retries=retries),
            "if_mib_v3": if_mib_module(v3, version=3, timeout=snmp_timeout, retries=retries),
        }

    @property
    def modules(self) -> list[str]:
        """The module names ``snmp.yml`` defines."""
        return list(self._modules)

    @property
    def config_path(self) -> str:
        return str(self._dir / "snmp.yml")

    def command(self) -> list[str]:
        with open(self.config_path, "w") as config:
            yaml.safe_dump(self._modules, config, sort_keys=False)
        return [self.find_binary(), f"--config.file={self.config_path}",
                f"--web.listen-address={self.address}", "--log.level=warn"]


    def scrape(self, target: str, module: str = "if_mib", timeout: float = 30.0) -> str:
        """``GET /snmp?target=<target>&module=<module>``: the metrics text of one device.

        :raises ZkpollError: the exporter answered an error (e.g. the device
            did not answer: HTTP 500 with the SNMP error) or not at all.
        """
        query = urllib.parse.urlencode({"target": target, "module": module})
        try:
            with urllib.request.urlopen(f"{self.url}/snmp?{query}", timeout=timeout) as answer:
                return str(answer.read().decode())
        except urllib.error.HTTPError as exc:
            raise ZkpollError(f"snmp_exporter {module} scrape of {target}: HTTP {exc.code}: "
                              f"{exc.read()[:500].decode(errors='replace')}") from exc
        except OSError as exc:
            raise ZkpollError(f"snmp_exporter {module} scrape of {target}: {exc}") from exc
