"""docs/library.md's program, run as written against a real ZooKeeper.

Three copies share twelve tenants. Every cycle from the first one anybody
works to the end must have each tenant worked exactly once, across a
graceful leave (SIGINT: ``run()`` hands over) and a death (SIGKILL early in
a cycle, session timeout 4 s: the session expires in the next cycle, which
the victim never claimed, so the survivor catches its tenants up in it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.doc_examples import example
from zkpoll import WorkGroup
from zkpoll.service.cycles import cycle_start, next_cycle, source_offset
from zkpoll.testing import ManagedZooKeeper, wait_for

pytestmark = pytest.mark.functional

INTERVAL = 3.0      # the program's interval
SETTLE = 5.0        # WorkGroup's default settle_time (the program keeps it)
SESSION = 4.0       # ?timeout=: a kill within KILL_BY of a cycle start expires in the next
EXPIRY_SLACK = 1.0  # server-side expiry granularity plus the catch-up itself
KILL_BY = 2 * INTERVAL - SESSION - EXPIRY_SLACK
TENANTS = {f"tenant-{n}" for n in range(12)}
OFFSET = source_offset("work", INTERVAL)


@dataclass(frozen=True)
class Line:
    """One ``CYCLE KIND TENANT...`` line of a member, and when the test read it."""

    member: str
    index: int
    kind: str
    keys: tuple[str, ...]
    seen: float


class Member:
    """A copy of the program in its own process; its output parsed as it comes."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=log.open("ab"), text=True, bufsize=1)
        self.lines: list[Line] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            index, kind, *keys = text.split()
            with self._lock:
                self.lines.append(Line(self.name, int(index), kind, tuple(keys), time.time()))

    def wait_line(self, predicate: Callable[[Line], bool], timeout: float) -> Line:
        def found() -> Line | None:
            with self._lock:
                return next((line for line in self.lines if predicate(line)), None)
        return wait_for(found, timeout, f"{self.name}: a matching line",
                        diagnostics=lambda: f"last: {self.lines[-3:]}; log:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "reports.py"
    path.write_text(example("zkpoll"))
    return path


@pytest.fixture
def members(tmp_path: Path) -> Iterator[Callable[[str, list[str]], Member]]:
    started: list[Member] = []

    def start(name: str, args: list[str]) -> Member:
        member = Member(name, [sys.executable, *args], tmp_path / f"{name}.log")
        started.append(member)
        return member

    yield start
    for member in started:
        member.stop()


def _all_active(group: list[Member]) -> int | None:
    """The first cycle in which every member worked some tenants, if any yet."""
    worked = [{line.index for line in m.lines if line.kind == "cycle" and line.keys}
              for m in group]
    common = set.intersection(*worked)
    return min(common) if common else None


def test_every_tenant_once_per_cycle_through_a_leave_and_a_kill(
        zookeeper_server: ManagedZooKeeper, zk_chroot: str, program: Path,
        members: Callable[[str, list[str]], Member]) -> None:
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout={SESSION:g}&heartbeat=0.5"
    a, b, c = (members(name, [str(program), url]) for name in "abc")
    deadline = time.monotonic() + SETTLE + 6 * INTERVAL + 10
    while (first_shared := _all_active([a, b, c])) is None:
        assert time.monotonic() < deadline, [m.tail() for m in (a, b, c)]
        time.sleep(0.2)

    # A graceful leave: SIGINT, run() announces it and works until leave_at.
    a.proc.send_signal(signal.SIGINT)
    assert a.proc.wait(SETTLE + 2 * INTERVAL + 10) == 0, a.tail()
    left_after = max(line.index for line in a.lines)

    # A death early in a cycle B has just worked: B cannot claim the next one.
    after = max(line.index for line in b.lines)
    while True:
        line = b.wait_line(lambda ln, n=after: ln.kind == "cycle" and ln.index > n,
                           2 * INTERVAL + 10)
        killed_at = time.time()
        if killed_at < cycle_start(line.index, INTERVAL, OFFSET) + KILL_BY:
            b.proc.kill()
            break
        after = line.index  # read too late in its cycle (a busy machine): the next one
    victim = line.index
    catch_up = c.wait_line(lambda ln: ln.kind == "catch_up", SESSION + 2 * INTERVAL + 10)
    c.wait_line(lambda ln: ln.kind == "cycle" and ln.index >= victim + 2, 3 * INTERVAL + 10)
    c.proc.kill()
    c.proc.wait(10)

    # The death: the survivor caught up B's share in the cycle after B's last,
    # after the kill, and has owned everything since.
    assert catch_up.index == victim + 1 and catch_up.seen > killed_at
    assert set(catch_up.keys) == set(line.keys)
    assert not [ln for ln in a.lines + c.lines if ln.kind == "catch_up" and ln != catch_up]

    # Every cycle from the first anybody worked: each tenant exactly once.
    everything = a.lines + b.lines + c.lines
    start = min(ln.index for ln in everything if ln.keys)
    assert start <= first_shared < left_after < victim
    for index in range(start, victim + 3):
        count = Counter(key for ln in everything if ln.index == index for key in ln.keys)
        wrong = {key: n for key, n in count.items() if n != 1}
        missing = TENANTS - set(count)
        assert not wrong and not missing, (
            index, wrong, missing, [ln for ln in everything if ln.index == index])


def test_the_tooz_program_runs_too(zookeeper_server: ManagedZooKeeper, zk_chroot: str,
                                   tmp_path: Path,
                                   members: Callable[[str, list[str]], Member]) -> None:
    """The side-by-side is fair: tooz's program works as written (one member)."""
    pytest.importorskip("tooz")
    path = tmp_path / "tooz_reports.py"
    path.write_text(example("tooz"))
    url = f"zookeeper://{zookeeper_server.address}?namespace={zk_chroot.strip('/')}/tooz"
    member = members("tooz", [str(path), url])
    line = member.wait_line(lambda ln: True, 30)
    assert set(line.keys) == TENANTS and line.kind == "cycle"
    # Not stopped with Ctrl-C: beside a CPU hog, tooz's program twice hung for
    # over 60 s in its finally (leave_partitioned_group, stop). The fixture kills it.


def test_owned_splits_a_cycle_and_a_leaver_hands_over(zookeeper_server: ManagedZooKeeper,
                                                       zk_chroot: str) -> None:
    """Two members driving their own loop with ``owned()`` in one process."""
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=4&heartbeat=0.3"
    keys = sorted(TENANTS)
    interval, offset = 2.0, source_offset("work", 2.0)
    a, b = (WorkGroup(url, "owned", interval=interval, settle_time=1.0) for _ in "ab")
    with a, b:
        active = time.time() + 1.0  # both joined: settled within settle_time from now
        index = next_cycle(active, interval, offset)[0]
        shares: dict[str, list[str]] = {}
        threads = [threading.Thread(target=lambda g=g: shares.__setitem__(
            g.member_id, g.owned(keys, index))) for g in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(3 * interval)
        first, second = shares.values()
        assert first and second and not set(first) & set(second)
        assert sorted(first + second) == keys
        b.close()  # no loop: leaves at once; the cycle it claimed was its own
        assert a.owned(keys, index + 2) == keys
