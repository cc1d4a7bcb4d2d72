"""The network-namespace harness itself (:mod:`tests.functional.netns`): every
agent namespace reaches every target through the bridge, a blackhole route
blocks one address from one namespace only (connect fails at once, EINVAL),
and nothing of a lab is left after close, nor of a run that died."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.netns import (
    BLACKHOLE_ERRNO,
    OWNER_ALIAS,
    PREFIX,
    ROUTE_ERRNO,
    Lab,
    ip,
    remove_leftovers,
)
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

PORT = 8080
LISTEN = ("import socket, sys, time\n"
          "s = socket.create_server((sys.argv[1], 0))\n"
          "time.sleep(300)\n")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    with Lab(["a1", "a2"], 5, tmp_path) as lab:
        yield lab
    assert not lab.leftovers(), "the lab removed all it created"


def test_blackhole_blocks_one_address_from_one_namespace_at_once(lab: Lab) -> None:
    lab.serve_http(PORT)  # waits until every target answers from both namespaces
    blocked, other = lab.targets[0], lab.targets[1]
    lab.block("a1", [blocked])
    assert lab.connect("a1", [blocked, other], PORT) == {blocked: BLACKHOLE_ERRNO, other: 0}
    assert BLACKHOLE_ERRNO == errno.EINVAL
    assert lab.connect("a2", [blocked], PORT) == {blocked: 0}, "a2 is not blocked"
    lab.unblock("a1")
    assert lab.connect("a1", [blocked], PORT) == {blocked: 0}


@pytest.mark.parametrize("kind", sorted(ROUTE_ERRNO))
def test_each_route_kind_fails_connect_with_its_errno(lab: Lab, kind: str) -> None:
    target = lab.targets[2]
    lab.block("a2", [target], kind=kind)
    assert lab.connect("a2", [target], PORT) == {target: ROUTE_ERRNO[kind]}
    lab.unblock("a2", [target])
    assert not lab.blocked("a2")


def test_addresses_stay_inside_the_lab(lab: Lab) -> None:
    """The agents route only the bridge's subnet and the targets' /24, nothing else."""
    routes = ip("-n", lab.namespace("a1"), "-4", "route").splitlines()
    assert not [r for r in routes if r.startswith("default")], routes
    assert all(r.startswith("10.213.") for r in routes), routes
    outside = "10.213.255.254"  # no route: nothing leaves the namespace
    assert lab.connect("a1", [outside], PORT) == {outside: errno.ENETUNREACH}


def test_leftovers_of_a_dead_owner_are_removed(tmp_path: Path, lab: Lab) -> None:
    """A run killed with SIGKILL left a namespace with a process in it, and a bridge
    with a server listening on its address (its ZooKeeper): all removed."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    namespace = f"{PREFIX}-dead-{dead.pid}-a1"
    link = f"{PREFIX}dead0br"
    address = "10.213.254.1"  # outside the pairs labs use (0-253)
    ip("netns", "add", namespace)
    left: list[subprocess.Popen[bytes]] = []
    try:
        ip("link", "add", link, "type", "bridge")
        ip("link", "set", "dev", link, "alias", f"{OWNER_ALIAS}{dead.pid}")
        ip("addr", "add", f"{address}/24", "dev", link)
        left.append(subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "300"]))
        left.append(subprocess.Popen([sys.executable, "-c", LISTEN, address]))

        def running() -> bool:
            listening = subprocess.run(["ss", "-Hltn", "src", address], capture_output=True,
                                       text=True, check=True).stdout
            return bool(listening.strip() and ip("netns", "pids", namespace).strip())
        wait_for(running, 10, "a server listens on the bridge, a process runs in the namespace")
        removed = remove_leftovers()
        assert namespace in removed and link in removed, removed
        assert namespace not in ip("netns", "list")
        assert not Path("/sys/class/net", link).exists()
        assert [p.wait(10) for p in left] == [-signal.SIGKILL, -signal.SIGKILL]
        assert lab.namespace("a1") in ip("netns", "list"), "a live owner's lab is kept"
    finally:
        for process in left:
            process.kill()
            process.wait()
        ip("netns", "delete", namespace, check=False)
        ip("link", "delete", link, check=False)
