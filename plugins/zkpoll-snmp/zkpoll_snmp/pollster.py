"""The SNMP pollster: one conversation per device per cycle, shared by every meter.

Every SNMP pollster of a source shares one *reading* per device per cycle
(:class:`~zkpoll.pollsters.reading.ReadingPollster`): the first pollster
to reach a device fetches the OIDs of *every* SNMP meter the source polls
(``context.meters``), the others wait for that answer.  Devices are read
concurrently (``[snmp] concurrency`` threads), each within ``[snmp]
timeout`` and ``retries``, all within the polling timeout.

A device that does not answer gives an :class:`~zkpoll.plugin.Unreachable`
(another member may try it); one that refuses our credentials, or that is
misconfigured, gives no sample.  Either is logged once per device when it
starts and once when it ends, never per meter or per cycle.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any, ClassVar

from zkpoll.exceptions import ConfigError
from zkpoll.plugin import PollingContext, resource_key
from zkpoll.pollsters.reading import ReadingPollster
from zkpoll.sample import Sample
from zkpoll_snmp.client import Plan, SnmpClient, SnmpFailure
from zkpoll_snmp.credentials import Credentials, load_profiles
from zkpoll_snmp.device import Device, parse_device
from zkpoll_snmp.meters import MeterDef
from zkpoll_snmp.options import snmp_options

__all__ = ["READING", "Runtime", "SnmpPollster"]

LOG = logging.getLogger(__name__)

#: Cycle-cache name of a device's reading, shared by every SNMP pollster.
READING = "zkpoll_snmp:device"


class Runtime:
    """What every SNMP pollster of one agent shares: options, profiles, the
    client (sessions) and the meter definitions loaded."""

    _by_conf: ClassVar[dict[int, Runtime]] = {}  # id(conf) -> runtime, while conf lives
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, conf: Any) -> None:
        options = snmp_options(conf)
        self.options = options
        self.profiles: dict[str, Credentials] = load_profiles(options.profiles_file)
        if options.default_profile not in self.profiles:
            raise ConfigError(f"[snmp] default_profile {options.default_profile!r} is not a "
                              f"profile (known: {', '.join(sorted(self.profiles))})")
        self.client = SnmpClient(options.timeout, options.retries, options.max_repetitions)
        self.meters: dict[str, MeterDef] = {}
        self._failing: dict[str, str] = {}  # device key -> message of its failure streak
        self._failing_lock = threading.Lock()
        self._warned_budget = False

    @classmethod
    def of(cls, conf: Any) -> Runtime:
        """The runtime of ``conf`` (one per agent), made at first use."""
        with cls._lock:
            found = cls._by_conf.get(id(conf))
            if found is None:
                found = cls(conf)
                try:
                    weakref.finalize(conf, cls._by_conf.pop, id(conf), None)
                except TypeError:  # None, or a plain object without weak references
                    return found
                cls._by_conf[id(conf)] = found
            return found

    def plan(self, meters: Iterable[str]) -> Plan:
        """The OIDs of the SNMP meters among ``meters``."""
        return Plan.union(self.meters[m].plan() for m in meters if m in self.meters)

    def device(self, resource: Any) -> Device:
        return parse_device(resource, self.profiles, self.options.default_profile)

    def note(self, device_key: str, failure: str | None, level: int = logging.WARNING) -> None:
        """Log a device's failure once per streak, and once when it ends."""
        with self._failing_lock:
            before = self._failing.get(device_key)
            if failure is None:
                self._failing.pop(device_key, None)
            else:
                self._failing[device_key] = failure
        if failure is None and before is not None:
            LOG.info("SNMP device %s answers again (after: %s)", device_key, before)
        elif failure is not None and before != failure:
            LOG.log(level, "SNMP device %s: %s; no samples from it until it is fixed "
                    "(logged once)", device_key, failure)


class SnmpPollster(ReadingPollster):
    """A meter read over SNMP (:attr:`definition`), one sample per device or table row."""

    definition: ClassVar[MeterDef]
    reading = READING
    max_timeout = None          # the polling timeout bounds a whole call
    raise_when_all_failed = False
    default_discovery: str | None = None

    def __init__(self, conf: Any = None, definition: MeterDef | None = None) -> None:
        super().__init__(conf)
        if definition is not None:
            self.definition = definition  # type: ignore[misc]
        self.meter = self.definition.name  # type: ignore[misc]
        self.unit = self.definition.unit  # type: ignore[misc]
        self.sample_type = self.definition.type  # type: ignore[misc]
        self.runtime = Runtime.of(conf)
        self.runtime.meters[self.meter] = self.definition
        self.max_workers = self.runtime.options.concurrency  # type: ignore[misc]

    def accepts(self, resource: Any) -> bool:
        if isinstance(resource, str):
            return resource[:7].lower() == "snmp://"
        return isinstance(resource, dict) and "host" in resource

    def cache_key(self, resource: Any) -> str:
        return f"{READING}:{resource_key(resource)}"

    def read(self, resource: Any, timeout: float) -> Any:
        return self.read_in_context(PollingContext(self.conf), resource, timeout)

    def read_in_context(self, context: PollingContext, resource: Any, timeout: float) -> Any:
        runtime = self.runtime
        key = resource_key(resource)
        if not runtime._warned_budget and runtime.client.worst_case * 2 > timeout:
            runtime._warned_budget = True
            LOG.warning("[snmp] timeout %.1fs x (retries %d + 1) x 2 round trips is more than "
                        "the polling timeout %.1fs: a silent device may make the others late",
                        runtime.client.timeout, runtime.client.retries, timeout)
        try:
            device = runtime.device(resource)
        except Exception as exc:
            runtime.note(key, f"invalid device: {exc}", logging.ERROR)
            raise
        try:
            values = runtime.client.fetch(device, runtime.plan(context.meters or (self.meter,)))
        except SnmpFailure as exc:
            runtime.note(key, str(exc), logging.ERROR if exc.kind == "auth"
                         else logging.WARNING)
            raise
        runtime.note(key, None)
        return device, values

    def is_unreachable(self, exc: BaseException) -> bool:
        return isinstance(exc, SnmpFailure) and exc.kind == "no_answer"

    def failure_samples(self, resource_id: str, error: str,
                        timestamp: float) -> Iterable[Sample]:
        return ()  # logged once per streak by Runtime.note

    def make_samples(self, resource_id: str, reading: Any,
                     timestamp: float) -> Iterable[Sample]:
        device, values = reading
        return self.definition.samples(device, values, timestamp)
