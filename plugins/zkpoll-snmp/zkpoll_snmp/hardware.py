"""Ceilometer's former ``hardware.*`` SNMP meters: same names, units, types and OIDs.

Ceilometer removed them in Zed (``ceilometer/hardware/pollsters/data/snmp.yaml``);
these read the same objects of HOST-RESOURCES / UCD-SNMP / IF-MIB / IP-MIB
that every Net-SNMP agent serves.  Resource ids are Ceilometer's: the host,
``host.<interface name>`` for interface meters, ``host.<disk device>`` for
disk meters.  ``hardware.memory.used`` is total minus available real
memory, as Ceilometer computed it.
"""

from __future__ import annotations

from collections.abc import Mapping

from zkpoll.sample import CUMULATIVE, GAUGE
from zkpoll_snmp.meters import Field, MeterDef
from zkpoll_snmp.pollster import SnmpPollster

__all__ = ["HARDWARE"]

_UCD = "1.3.6.1.4.1.2021"
_IF = "1.3.6.1.2.1.2.2.1"
_DISK_META = (Field("path", f"{_UCD}.9.1.2"), Field("device", f"{_UCD}.9.1.3"))
_NET_META = (Field("name", f"{_IF}.2"), Field("speed", f"{_IF}.5", "bits_to_bytes"),
             Field("mac", f"{_IF}.6", "mac"))


def _scalar(name: str, unit: str, kind: str, oid: str, convert: str = "int",
            **extra: str) -> MeterDef:
    return MeterDef(name, kind, unit, oid, convert=convert, **extra)  # type: ignore[arg-type]


def _disk(name: str, oid: str) -> MeterDef:
    return MeterDef(name, GAUGE, "KB", oid, table=True, convert="int", metadata=_DISK_META,
                    suffix="device")


def _net(name: str, unit: str, oid: str) -> MeterDef:
    return MeterDef(name, CUMULATIVE, unit, oid, table=True, convert="int",
                    metadata=_NET_META, suffix="name", interface_ip=True)


#: Every hardware meter by name.
HARDWARE: Mapping[str, MeterDef] = {d.name: d for d in (
    _scalar("hardware.cpu.load.1min", "process", GAUGE, f"{_UCD}.10.1.3.1", "float"),
    _scalar("hardware.cpu.load.5min", "process", GAUGE, f"{_UCD}.10.1.3.2", "float"),
    _scalar("hardware.cpu.load.15min", "process", GAUGE, f"{_UCD}.10.1.3.3", "float"),
    _scalar("hardware.cpu.util", "%", GAUGE, f"{_UCD}.11.9.0"),
    _scalar("hardware.memory.total", "KB", GAUGE, f"{_UCD}.4.5.0"),
    _scalar("hardware.memory.used", "KB", GAUGE, f"{_UCD}.4.6.0",
            minus_from=f"{_UCD}.4.5.0"),
    _scalar("hardware.memory.buffer", "KB", GAUGE, f"{_UCD}.4.14.0"),
    _scalar("hardware.memory.cached", "KB", GAUGE, f"{_UCD}.4.15.0"),
    _scalar("hardware.memory.swap.total", "KB", GAUGE, f"{_UCD}.4.3.0"),
    _scalar("hardware.memory.swap.avail", "KB", GAUGE, f"{_UCD}.4.4.0"),
    _disk("hardware.disk.size.total", f"{_UCD}.9.1.6"),
    _disk("hardware.disk.size.used", f"{_UCD}.9.1.8"),
    _net("hardware.network.incoming.bytes", "B", f"{_IF}.10"),
    _net("hardware.network.outgoing.bytes", "B", f"{_IF}.16"),
    _net("hardware.network.outgoing.errors", "packet", f"{_IF}.20"),
    _scalar("hardware.network.ip.incoming.datagrams", "datagrams", CUMULATIVE,
            "1.3.6.1.2.1.4.3.0"),
    _scalar("hardware.network.ip.outgoing.datagrams", "datagrams", CUMULATIVE,
            "1.3.6.1.2.1.4.10.0"),
    _scalar("hardware.system_stats.cpu.idle", "%", GAUGE, f"{_UCD}.11.11.0"),
    _scalar("hardware.system_stats.io.incoming.blocks", "blocks", CUMULATIVE,
            f"{_UCD}.11.58.0"),
    _scalar("hardware.system_stats.io.outgoing.blocks", "blocks", CUMULATIVE,
            f"{_UCD}.11.57.0"),
)}


class CpuLoad1Min(SnmpPollster):
    definition = HARDWARE["hardware.cpu.load.1min"]


class CpuLoad5Min(SnmpPollster):
    definition = HARDWARE["hardware.cpu.load.5min"]


class CpuLoad15Min(SnmpPollster):
    definition = HARDWARE["hardware.cpu.load.15min"]


class CpuUtil(SnmpPollster):
    definition = HARDWARE["hardware.cpu.util"]


class MemoryTotal(SnmpPollster):
    definition = HARDWARE["hardware.memory.total"]


class MemoryUsed(SnmpPollster):
    definition = HARDWARE["hardware.memory.used"]


class MemoryBuffer(SnmpPollster):
    definition = HARDWARE["hardware.memory.buffer"]


class MemoryCached(SnmpPollster):
    definition = HARDWARE["hardware.memory.cached"]


class MemorySwapTotal(SnmpPollster):
    definition = HARDWARE["hardware.memory.swap.total"]


class MemorySwapAvail(SnmpPollster):
    definition = HARDWARE["hardware.memory.swap.avail"]


class DiskSizeTotal(SnmpPollster):
    definition = HARDWARE["hardware.disk.size.total"]


class DiskSizeUsed(SnmpPollster):
    definition = HARDWARE["hardware.disk.size.used"]


class NetworkIncomingBytes(SnmpPollster):
    definition = HARDWARE["hardware.network.incoming.bytes"]


class NetworkOutgoingBytes(SnmpPollster):
    definition = HARDWARE["hardware.network.outgoing.bytes"]


class NetworkOutgoingErrors(SnmpPollster):
    definition = HARDWARE["hardware.network.outgoing.errors"]


class IpIncomingDatagrams(SnmpPollster):
    definition = HARDWARE["hardware.network.ip.incoming.datagrams"]


class IpOutgoingDatagrams(SnmpPollster):
    definition = HARDWARE["hardware.network.ip.outgoing.datagrams"]


class SystemCpuIdle(SnmpPollster):
    definition = HARDWARE["hardware.system_stats.cpu.idle"]


class SystemIoIncomingBlocks(SnmpPollster):
    definition = HARDWARE["hardware.system_stats.io.incoming.blocks"]


class SystemIoOutgoingBlocks(SnmpPollster):
    definition = HARDWARE["hardware.system_stats.io.outgoing.blocks"]
