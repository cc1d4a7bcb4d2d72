"""SNMP polling for zkpoll: Ceilometer's ``hardware.*`` meters and generic OID meters.

Installed, it adds to the ``central`` namespace the ``hardware.*`` meters
(:mod:`zkpoll_snmp.hardware`), the operator's generic meters from
``[snmp] definitions_dirs`` (:mod:`zkpoll_snmp.definitions`) and the
``snmp_devices`` discovery (:mod:`zkpoll_snmp.discovery`).  README.md has
the whole guide.
"""

from zkpoll_snmp.credentials import Credentials
from zkpoll_snmp.device import Device, parse_device
from zkpoll_snmp.meters import Field, MeterDef

__all__ = ["Credentials", "Device", "Field", "MeterDef", "__version__", "parse_device"]

__version__ = "0.1.0"
