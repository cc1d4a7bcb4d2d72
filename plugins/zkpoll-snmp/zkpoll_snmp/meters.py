"""Meter definitions: which OIDs make a meter, and how they become samples.

A :class:`MeterDef` is pure data, shared by the built-in ``hardware.*``
meters (:mod:`zkpoll_snmp.hardware`) and the operator's generic ones
(:mod:`zkpoll_snmp.definitions`).  A *scalar* meter reads one OID instance
(``1.3.6.1.4.1.2021.4.5.0``) and gives one sample per device; a *table*
meter reads a column (``1.3.6.1.2.1.2.2.1.10``) and gives one sample per
row, its resource id suffixed with a metadata value (``host.eth0``) or the
row index, as Ceilometer's hardware pollsters did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from zkpoll.sample import Sample
from zkpoll_snmp.client import Plan, Values
from zkpoll_snmp.device import Device

__all__ = ["CONVERTERS", "IP_ADDRESS_IFINDEX", "Field", "MeterDef"]

LOG = logging.getLogger(__name__)

#: Meters whose non-numeric value was logged (once per meter and process).
_WARNED: set[str] = set()

#: ipAdEntIfIndex: rows indexed by IPv4 address, valued with the ifIndex.
IP_ADDRESS_IFINDEX = "1.3.6.1.2.1.4.20.1.2"


def _number(value: str) -> float | int:
    text = value.strip().strip('"')
    if text.startswith("("):           # TimeTicks as "(1234) 0:00:12.34"
        text = text[1:text.find(")")]
    try:
        return int(text)
    except ValueError:
        return float(text)


def _mac(value: str) -> str:
    return "".join(value.split()).lower()


#: Value converters by name (the ``type`` of a field in YAML).
CONVERTERS: Mapping[str, Callable[[str], Any]] = {
    "int": lambda v: int(_number(v)),
    "float": lambda v: float(_number(v)),
    "number": _number,
    "str": lambda v: v,
    "mac": _mac,                               # Hex-STRING "1A 53 .." -> "1a53.."
    "bits_to_bytes": lambda v: int(_number(v)) / 8,
}


@dataclass(frozen=True)
class Field:
    """A metadata value: ``oid`` (same row for a table meter) converted by ``convert``."""

    name: str
    oid: str
    convert: str = "str"


@dataclass(frozen=True)
class MeterDef:
    """One meter read over SNMP."""

    name: str
    type: str
    unit: str
    oid: str
    table: bool = False
    convert: str = "number"
    metadata: tuple[Field, ...] = ()
    #: table rows: metadata field whose value suffixes the resource id, or "index"
    suffix: str | None = None
    #: the volume is ``value of minus_from - value`` (hardware.memory.used)
    minus_from: str | None = None
    scale: float | None = None
    #: add the row's IPv4 address (ipAddrTable) as metadata ``ip`` (interfaces)
    interface_ip: bool = False

    def plan(self) -> Plan:
        """The OIDs this meter needs."""
        scalars = [] if self.table else [self.oid]
        columns = [self.oid] if self.table else []
        for field in self.metadata:
            (columns if self.table else scalars).append(field.oid)
        if self.minus_from:
            scalars.append(self.minus_from)
        if self.interface_ip:
            columns.append(IP_ADDRESS_IFINDEX)
        return Plan(tuple(scalars), tuple(columns))

    def samples(self, device: Device, values: Values, timestamp: float) -> list[Sample]:
        """This meter's samples from one device's fetched ``values``."""
        if not self.table:
            found = values.get(self.oid)
            if found is None:
                LOG.debug("%s: %s has no %s; no sample", self.name, device.address, self.oid)
                return []
            volume = self._volume(found[1], values)
            metadata = {f.name: self._field(f, values.get(f.oid)) for f in self.metadata}
            return [] if volume is None else [self._sample(device, "", volume, metadata,
                                                           timestamp)]
        prefix = self.oid + "."
        ips = _interface_ips(values) if self.interface_ip else {}
        out = []
        for oid, (_, raw) in values.items():
            if not oid.startswith(prefix):
                continue
            index = oid[len(prefix):]
            volume = self._volume(raw, values)
            if volume is None:
                continue
            metadata = {f.name: self._field(f, values.get(f"{f.oid}.{index}"))
                        for f in self.metadata}
            if self.interface_ip:
                metadata["ip"] = ips.get(index, "")
            if self.suffix == "index":
                suffix = index
            else:
                suffix = str(metadata.get(self.suffix) or "") if self.suffix else ""
            out.append(self._sample(device, suffix, volume, metadata, timestamp))
        return out

    def _volume(self, raw: str, values: Values) -> float | int | None:
        try:
            volume = CONVERTERS[self.convert](raw)
            if self.minus_from is not None:
                total = values.get(self.minus_from)
                if total is None:
                    return None
                volume = _number(total[1]) - volume
        except (TypeError, ValueError):
            if self.name not in _WARNED:
                _WARNED.add(self.name)
                LOG.warning("%s: value %r is not a number; no sample (logged once per meter)",
                            self.name, raw[:80])
            return None
        return volume * self.scale if self.scale is not None else volume

    @staticmethod
    def _field(field: Field, found: tuple[str, str] | None) -> Any:
        if found is None:
            return None
        try:
            return CONVERTERS[field.convert](found[1])
        except (TypeError, ValueError):
            return found[1]

    def _sample(self, device: Device, suffix: str, volume: float,
                metadata: dict[str, Any], timestamp: float) -> Sample:
        metadata["resource_url"] = device.key
        resource_id = f"{device.resource_id}.{suffix}" if suffix else device.resource_id
        return Sample(self.name, self.type, self.unit, volume, resource_id,
                      timestamp=timestamp, resource_metadata=metadata)


def _interface_ips(values: Values) -> dict[str, str]:
    """ifIndex -> IPv4 address, from ipAdEntIfIndex rows."""
    prefix = IP_ADDRESS_IFINDEX + "."
    return {raw: oid[len(prefix):] for oid, (_, raw) in values.items() if oid.startswith(prefix)}
