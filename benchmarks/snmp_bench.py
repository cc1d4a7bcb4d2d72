"""SNMP benchmark: the zkpoll-snmp plugin against Prometheus's snmp_exporter, one run.

Prints one JSON line per measurement::

    python -m benchmarks.snmp_bench [--devices 1000] [--concurrency 32] [--passes 2]

Set-up.  One real ``snmpd`` (Debian ``snmpd``, :class:`ManagedSnmpd`)
answers as ``--devices`` devices, one per loopback address, SNMPv2c.  Both
implementations read the same objects of every device: upstream
snmp_exporter's ``if_mib`` module (every ifTable and ifXTable column, each
interface labelled with ``ifDescr``, ``ifName`` and ``ifAlias``, plus
``sysUpTime``), ``--concurrency`` devices at once, ``--passes`` times
after one warm-up pass:

* ``zkpoll``: the plugin's pollsters as one agent runs them for one cycle
  (:func:`zkpoll.testing.plugins.poll_cycle`, unchecked): one generic
  table meter per numeric column, the three names as metadata, one
  conversation per device shared by all meters.  CPU is this process's
  (the plugin's threads; snmpd and the exporter are other processes).
* ``snmp_exporter``: ``prometheus-snmp-exporter`` 0.21 (Debian) with the
  same module (:class:`ManagedSnmpExporter`), scraped as Prometheus would,
  ``/snmp?target=DEVICE&module=if_mib``; CPU is the exporter process's.

Lines::

    {"bench": "snmp", "impl": "zkpoll|snmp_exporter", "devices": N,
     "oids_per_device": ..., "devices_per_s": ..., "cpu_s_per_1000_devices": ...,
     "p99_device_s": ..., "pass_s": ...}
    {"bench": "snmp_ratio", "cpu_per_device_zkpoll_over_snmp_exporter": ...,
     "devices_in_60s_cycle_one_agent": ..., "target_1000_in_60s": true|false}
"""

from __future__ import annotations

import argparse
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

from benchmarks._bench_util import (
    BenchError,
    cpu_seconds,
    emit,
    percentile,
    progress,
    rounded,
)

DISPLAY = ("ifDescr", "ifName", "ifAlias")


def _definitions(directory: Path) -> list[str]:
    """Generic meters reading what snmp_exporter's if_mib reads; their names."""
    from zkpoll.testing.snmp_exporter import IF_MIB_METRICS

    oids = {name: oid for name, oid, _ in IF_MIB_METRICS}
    metadata = "".join(f"    {name}: {oids[name]}\n" for name in DISPLAY)
    lines = ["- name: if_mib.sysUpTime\n  type: gauge\n  unit: cs\n  oid: 1.3.6.1.2.1.1.3.0\n"]
    meters = ["if_mib.sysUpTime"]
    for name, oid, kind in IF_MIB_METRICS:
        if kind in ("DisplayString",):
            continue
        convert = "str" if kind == "PhysAddress48" else "number"
        if convert == "str":
            continue  # the MAC: read as metadata below
        lines.append(f"- name: if_mib.{name}\n  type: {'cumulative' if kind == 'counter' else 'gauge'}"
                     f"\n  unit: '1'\n  oid: {oid}\n  table: true\n  metadata:\n{metadata}"
                     f"    mac: {{oid: {oids['ifPhysAddress']}, type: mac}}\n")
        meters.append(f"if_mib.{name}")
    (directory / "if_mib.yaml").write_text("".join(lines))
    return meters


def _timed(fetch: Callable[..., Any], latencies: list[float],
           sizes: list[int]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.monotonic()
        values = fetch(*args, **kwargs)
        latencies.append(time.monotonic() - began)
        sizes.append(len(values))
        return values
    return wrapper


def bench_zkpoll(devices: list[str], concurrency: int, passes: int) -> dict[str, Any]:
    from oslo_config import cfg
    from zkpoll_snmp.options import OPTS
    from zkpoll_snmp.pollster import Runtime

    from zkpoll.plugin import Sample
    from zkpoll.polling.plugins import load_plugins
    from zkpoll.testing.plugins import poll_cycle

    with tempfile.TemporaryDirectory(prefix="zkpoll-snmp-bench-") as directory:
        meters = _definitions(Path(directory))
        conf = cfg.ConfigOpts()
        conf([], project="zkpoll-snmp-bench")
        conf.register_opts(OPTS, group="snmp")
        conf.set_override("definitions_dirs", [directory], group="snmp")
        conf.set_override("concurrency", concurrency, group="snmp")
        plugins = load_plugins(conf, ["central"])
    missing = [m for m in meters if m not in plugins.pollsters]
    if missing:
        raise BenchError(f"generic meters did not load: {missing[:3]} ({plugins.failures})")
    client = Runtime.of(conf).client
    latencies: list[float] = []
    sizes: list[int] = []
    client.fetch = _timed(client.fetch, latencies, sizes)  # type: ignore[method-assign]
    resources = [f"snmp://{d}" for d in devices]
    poll_cycle(plugins, meters, resources, timeout=120, checked=False)   # warm-up
    latencies.clear()
    sizes.clear()
    cpu0, wall0, samples = time.process_time(), time.monotonic(), 0
    for index in range(passes):
        results = poll_cycle(plugins, meters, resources, timeout=120, checked=False)
        samples += sum(isinstance(s, Sample) for rs in results.values() for s in rs)
        progress(f"zkpoll pass {index + 1}: {len(latencies)} device reads so far")
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    if len(latencies) != passes * len(devices):
        raise BenchError(f"zkpoll read {len(latencies)} devices, expected "
                         f"{passes * len(devices)}")
    return {"oids_per_device": round(sum(sizes) / len(sizes)),
            "samples_per_device": round(samples / passes / len(devices)),
            "devices_per_s": round(passes * len(devices) / wall, 1),
            "cpu_s_per_1000_devices": round(cpu / passes / len(devices) * 1000, 3),
            "p99_device_s": rounded(percentile(latencies, 99), 4),
            "pass_s": round(wall / passes, 2)}


def bench_exporter(snmpd: Any, concurrency: int, passes: int) -> dict[str, Any]:
    from zkpoll.testing.snmp_exporter import ManagedSnmpExporter

    with ManagedSnmpExporter(snmpd) as exporter:
        pid = exporter._process.pid
        latencies: list[float] = []
        sizes: list[int] = []

        def scrape(device: str) -> None:
            began = time.monotonic()
            url = f"{exporter.url}/snmp?target={device}&module=if_mib"
            with urllib.request.urlopen(url, timeout=60) as answer:
                body = answer.read().decode()
            latencies.append(time.monotonic() - began)
            sizes.append(sum(1 for line in body.splitlines()
                             if line and not line.startswith(("#", "snmp_scrape_"))))

        def one_pass() -> None:
            with futures.ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(scrape, snmpd.devices))

        one_pass()   # warm-up
        latencies.clear()
        sizes.clear()
        cpu0, wall0 = sum(cpu_seconds(pid)), time.monotonic()
        for index in range(passes):
            one_pass()
            progress(f"snmp_exporter pass {index + 1} done")
        wall, cpu = time.monotonic() - wall0, sum(cpu_seconds(pid)) - cpu0
    devices = len(snmpd.devices)
    return {"oids_per_device": round(sum(sizes) / len(sizes)),
            "devices_per_s": round(passes * devices / wall, 1),
            "cpu_s_per_1000_devices": round(cpu / passes / devices * 1000, 3),
            "p99_device_s": rounded(percentile(latencies, 99), 4),
            "pass_s": round(wall / passes, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    from zkpoll.testing.snmpd import ManagedSnmpd

    try:
        with ManagedSnmpd(args.devices) as snmpd:
            progress(f"snmpd answers as {args.devices} devices on port {snmpd.port}")
            zkpoll = bench_zkpoll(snmpd.devices, args.concurrency, args.passes)
            emit(bench="snmp", impl="zkpoll", devices=args.devices, **zkpoll)
            peer = bench_exporter(snmpd, args.concurrency, args.passes)
            emit(bench="snmp", impl="snmp_exporter", devices=args.devices, **peer)
    except BenchError as exc:
        emit(bench="snmp", error=str(exc))
        raise SystemExit(1) from None
    emit(bench="snmp_ratio",
         cpu_per_device_zkpoll_over_snmp_exporter=round(
             zkpoll["cpu_s_per_1000_devices"] / peer["cpu_s_per_1000_devices"], 2),
         devices_in_60s_cycle_one_agent=int(zkpoll["devices_per_s"] * 60),
         target_1000_in_60s=zkpoll["devices_per_s"] * 60 >= 1000)


if __name__ == "__main__":
    main()
