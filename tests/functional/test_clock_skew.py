"""Real agents on a real ZooKeeper, one agent's wall clock off or stepped (libfaketime).

Only the wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as on a real
host whose NTP is broken or that was resumed from suspend; the offset is read
from a file (``FAKETIME_TIMESTAMP_FILE``), so a test steps the clock by
rewriting it.  Polls are counted per resource and ``cycle_start`` from the
samples the agents publish: never a duplicate, and gaps only while a member
fenced itself.

libfaketime 0.9.10 makes ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)``
fail with EINVAL when the monotonic clock is not faked, which is what
Python's ``time.sleep`` calls: the faked agents start through a bootstrap
that sleeps on an Event instead (the same wait, another system call).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.functional.agents import Poll, parse_poll, write_static_source
from tests.functional.audit import CycleAudit
from tests.functional.fleet import Fleet, Service, ServiceProcess

pytestmark = pytest.mark.functional

INTERVAL = 4
SETTLE = 3.0          # bound = (3.0 - watch delay) / 2: about 1.4 s here
INSIDE = 0.5          # an offset inside half the bound
BEYOND = 6.0          # an offset beyond the bound
RESOURCES = 300
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
BOOT = ("import sys, threading, time\n"
        "time.sleep = lambda s: threading.Event().wait(s) if s > 0 else None\n"
        "from zkpoll.cmd.polling import main\n"
        "sys.argv[0] = 'zkpoll-polling'\n"
        "sys.exit(main())\n")


@pytest.fixture
def libfaketime() -> str:
    if not os.path.exists(LIBFAKETIME) or not shutil.which("faketime"):
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is not installed (apt-get install -y faketime)")
        pytest.skip("faketime is not installed (apt-get install -y faketime)")
    return LIBFAKETIME


class Clocks:
    """One offset file per agent: what its wall clock is shifted by."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def path(self, name: str) -> Path:
        return self.workdir / f"{name}.faketime"

    def set(self, name: str, offset: float) -> None:
        path = self.path(name)
        path.with_suffix(".tmp").write_text(f"{offset:+g}\n")
        path.with_suffix(".tmp").rename(path)


def clock_service(ids: list[str], polling_file: Path, clocks: Clocks,
                  skewed: set[str]) -> Service[Poll]:
    """Agents of the static source; those named in ``skewed`` run under libfaketime."""
    def spawn(workdir: Path, name: str, url: str) -> ServiceProcess:
        samples = workdir / f"{name}.jsonl"
        conf = ("[coordination]\n"
                f"backend_url = {url}\n"
                f"member_name = {name}\n"
                "heartbeat_interval = 0.2\n"
                f"settle_time = {SETTLE}\n"
                "[polling]\n"
                f"cfg_file = {polling_file}\n"
                "[publisher]\n"
                f"default_publishers = file://{samples}\n")
        command = [sys.executable, "-c", BOOT]
        if name in skewed:
            command = ["env", f"LD_PRELOAD={LIBFAKETIME}", "FAKETIME_DONT_FAKE_MONOTONIC=1",
                       f"FAKETIME_TIMESTAMP_FILE={clocks.path(name)}",
                       "FAKETIME_CACHE_DURATION=1", *command]
        return ServiceProcess(workdir, name, command, conf, samples,
                              args=["--polling-namespaces", "synthetic"])
    return Service(noun="agent", group="synthetic", interval=INTERVAL, ids=ids, spawn=spawn,
                   parse=parse_poll, stop_timeout=20.0, steady_timeout=60.0, cycle_slack=20.0)


def make_fleet(tmp_path: Path, zookeeper_server, zk_chroot: str,
               skewed: dict[str, float]) -> tuple[Fleet[Poll], Clocks]:
    ids = write_static_source(tmp_path / "polling.yaml", RESOURCES, interval=INTERVAL)
    clocks = Clocks(tmp_path)
    for name, offset in skewed.items():
        clocks.set(name, offset)
    service = clock_service(ids, tmp_path / "polling.yaml", clocks, set(skewed))
    return Fleet(service, tmp_path, zookeeper_server.address, zk_chroot,
                 session_timeout=4.0), clocks


def duplicates(audits: list[CycleAudit[Poll]]) -> list[str]:
    return [a.describe() for a in audits if a.duplicates]


def gaps(audits: list[CycleAudit[Poll]], allowed: tuple[float, float] | None = None) -> list[str]:
    """Cycles with gaps, except those starting inside ``allowed`` (a fenced window)."""
    return [a.describe() for a in audits if a.gaps and not (
        allowed and allowed[0] <= a.cycle_at <= allowed[1])]


def test_members_inside_the_bound_poll_every_resource_exactly_once(
        zookeeper_server, zk_chroot, tmp_path: Path, libfaketime: str) -> None:
    """A fast member, then a slow joiner, both inside the bound: no gap, no duplicate."""
    fleet, _ = make_fleet(tmp_path, zookeeper_server, zk_chroot,
                          {"fast": +INSIDE, "slow": -INSIDE})
    try:
        fleet.start("plain")
        fleet.start("fast")
        first = fleet.wait_steady(["plain", "fast"])
        fleet.start("slow")
        fleet.wait_steady(["plain", "fast", "slow"])
        joined = fleet.note("slow polls")
        fleet.wait_cycles_after(joined, 3)
        audits = fleet.audit(first)
        failures = duplicates(audits) + gaps(audits)
        # Nobody fenced for its clock, or for anything but a joiner's first cycle
        # before its own listing arrives (it owns nothing yet: no gap, no duplicate).
        fences = [line for p in fleet.agents for line in p.log().splitlines()
                  if "FENCED: " in line and "polled none" not in line]
        assert not [line for line in fences if "not (yet) listed" not in line], fences
        fleet.finish(failures)
    finally:
        fleet.cleanup()


def test_a_slow_joiner_beyond_the_bound_stays_out_until_its_clock_is_fixed(
        zookeeper_server, zk_chroot, tmp_path: Path, libfaketime: str) -> None:
    """The issue's case (a member 6 s slow joins): it is in nobody's ring, says why,
    and joins once its clock is fixed; never a duplicate, and no gap either."""
    fleet, clocks = make_fleet(tmp_path, zookeeper_server, zk_chroot, {"slow": -BEYOND})
    try:
        fleet.start("a")
        fleet.start("b")
        first = fleet.wait_steady(["a", "b"])
        slow = fleet.start("slow")
        fleet.wait(lambda: "beyond the bound" in slow.log(), 30, "the slow joiner says its "
                   "clock is beyond the bound")
        joined = fleet.note("slow joined, kept out")
        fleet.wait_cycles_after(joined, 3)
        assert not slow.records(), "a member beyond the bound polls nothing"
        assert "not active until the clock offset" in slow.log()
        clocks.set("slow", 0.0)
        fixed = fleet.note("slow's clock fixed")
        fleet.wait(lambda: fleet.cycles_with(["a", "b", "slow"], after=fixed), 40,
                   "the fixed member polls its share")
        fleet.wait_cycles_after(time.time(), 2)
        audits = fleet.audit(first)
        fleet.finish(duplicates(audits) + gaps(audits))
    finally:
        fleet.cleanup()


def test_a_clock_stepped_forward_and_back_never_polls_a_cycle_twice(
        zookeeper_server, zk_chroot, tmp_path: Path, libfaketime: str) -> None:
    """An NTP step forward (beyond the bound: fenced, cycles skipped and logged), then
    back: no cycle polled twice, gaps only while the stepped member was fenced."""
    fleet, clocks = make_fleet(tmp_path, zookeeper_server, zk_chroot, {"stepped": 0.0})
    try:
        fleet.start("a")
        stepped = fleet.start("stepped")
        first = fleet.wait_steady(["a", "stepped"])
        clocks.set("stepped", 3 * INTERVAL + BEYOND)
        forward = fleet.note("stepped +%gs" % (3 * INTERVAL + BEYOND))
        fleet.wait(lambda: "jumped forward" in stepped.log(), 30, "the forward jump is logged")
        fleet.wait(lambda: "beyond the bound" in stepped.log(), 30, "the member fences itself")
        fleet.wait_cycles_after(time.time(), 2)
        clocks.set("stepped", 0.0)
        back = fleet.note("stepped back to +0")
        fleet.wait(lambda: "went back" in stepped.log(), 30, "the step back is logged")
        fleet.wait(lambda: fleet.cycles_with(["a", "stepped"], after=back + INTERVAL), 60,
                   "the stepped member polls again")
        unfenced = time.time()
        fleet.wait_cycles_after(unfenced, 2)
        audits = fleet.audit(first)
        failures = duplicates(audits) + gaps(audits, (forward - INTERVAL, unfenced))
        assert "skipped" in stepped.log()
        fleet.finish(failures)
    finally:
        fleet.cleanup()
