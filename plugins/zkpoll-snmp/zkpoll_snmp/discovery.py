"""``snmp_devices://PATH``: the devices listed in a YAML or JSON file.

The file is a list of devices, each an ``snmp://`` URL or a mapping
``{host, port, profile}`` (or inline credentials with a profile's keys)::

    - host: 10.0.0.1
      profile: core-routers
    - host: 10.0.0.2
      port: 1161
      community: s3cret
    - snmp://10.0.0.3

It is re-read when its modification time or size changes.  A file that
cannot be read or holds an invalid device keeps the last good list: one
ERROR when the problem starts (file, line, reason; never a secret), one
INFO when it is fixed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from zkpoll.exceptions import ConfigError, PluginError
from zkpoll.plugin import Discovery, PollingContext
from zkpoll.yaml_lines import node_line, read_yaml
from zkpoll_snmp.credentials import load_profiles
from zkpoll_snmp.device import parse_device
from zkpoll_snmp.options import snmp_options

__all__ = ["SnmpDeviceDiscovery", "read_device_file"]

LOG = logging.getLogger(__name__)


def read_device_file(path: str, conf: Any) -> list[Any]:
    """The devices of ``path`` (URLs, or mappings with an ``id``); ConfigError if bad."""
    options = snmp_options(conf)
    profiles = load_profiles(options.profiles_file)

    def error(reason: str, line: int | None) -> ConfigError:
        return ConfigError(f"{path}{f':{line}' if line else ''}: {reason}")

    root, data = read_yaml(path, error)   # JSON is YAML too
    if data is None:
        return []
    if not isinstance(data, list):
        raise error(f"expected a list of devices, not {type(data).__name__}", None)
    devices: list[Any] = []
    seen: dict[str, int | None] = {}
    for index, raw in enumerate(data):
        line = node_line(root.value[index]) if root is not None else None
        try:
            device = parse_device(raw, profiles, options.default_profile)
        except ConfigError as exc:
            raise error(f"device #{index + 1}: {exc}", line) from None
        if device.key in seen:
            raise error(f"device #{index + 1}: {device.key} is listed twice (first at line "
                        f"{seen[device.key]})", line)
        seen[device.key] = line
        devices.append(dict(raw, id=device.key) if isinstance(raw, Mapping) else raw)
    return devices


class SnmpDeviceDiscovery(Discovery):
    """Devices from a file (``snmp_devices:///etc/zkpoll/devices.yaml``)."""

    def __init__(self, conf: Any = None) -> None:
        super().__init__(conf)
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[float, int], list[Any]]] = {}
        self._broken: dict[str, str] = {}

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        if not param:
            raise PluginError("snmp_devices discovery needs a path, e.g. "
                              "snmp_devices:///etc/zkpoll/devices.yaml")
        path = os.path.expanduser(param)
        with self._lock:
            known = self._files.get(path)
            try:
                stat = os.stat(path)
                stamp = (stat.st_mtime, stat.st_size)
                if known is not None and known[0] == stamp:
                    return known[1]
                devices = read_device_file(path, context.conf)
            except (OSError, ConfigError) as exc:
                reason = str(exc) if isinstance(exc, ConfigError) else \
                    f"{path}: cannot read: {exc.strerror or exc}"
                if self._broken.get(path) != reason:
                    self._broken[path] = reason
                    LOG.error("snmp_devices: %s; %s", reason,
                              f"keeping the last good list ({len(known[1])} device(s))"
                              if known else "no devices until it is fixed")
                if known is None:
                    raise PluginError(f"snmp_devices: {reason}") from None
                return known[1]
            if self._broken.pop(path, None) is not None:
                LOG.info("snmp_devices: %s is good again: %d device(s)", path, len(devices))
            self._files[path] = (stamp, devices)
            return devices
