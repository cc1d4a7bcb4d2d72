"""Agents in their own network namespaces, HTTP targets behind a bridge, and
network faults as routes: the harness of the per-resource failover tests and
benchmark (issue 21).  Needs root and ``ip`` (iproute2).

One :class:`Lab` per test or benchmark run builds (``S``/``T``: a free pair
of third octets, 0/1 for the first lab on the machine)::

    root namespace: bridge zkpn<tok>br 10.213.S.1/24   (ZooKeeper binds here)
      |- veth zkpn<tok>a1 -- namespace zkpn-<tok>-<pid>-a1: eth0 10.213.S.11/24
      |- veth zkpn<tok>a2 -- namespace zkpn-<tok>-<pid>-a2: eth0 10.213.S.12/24
      |- ...                  (each agent namespace: 10.213.T.0/24 via 10.213.S.2)
      `- veth zkpn<tok>tg -- namespace zkpn-<tok>-<pid>-tg: eth0 10.213.S.2/24,
                              lo 10.213.T.1 ... 10.213.T.<targets> (/32 each)

Nothing is routed through the root namespace and no route of it changes but
the bridge's own subnet: agents reach ZooKeeper on the bridge and the
targets through the targets namespace's veth; no address outside 10.213.S/T
is ever used.  :meth:`Lab.block` adds ``blackhole <address>/32`` routes in
one agent's namespace (a ``connect()`` from there fails at once with EINVAL,
nothing leaves the namespace), :meth:`Lab.unblock` removes them.

Processes run in a namespace with :meth:`Lab.command` (``ip netns exec``);
:meth:`Lab.serve_http` starts the targets' HTTP server (``200`` to every GET
on every target address).  :func:`tests.functional.netns_fleet.netns_fleet`
puts it all together: a lab, a ZooKeeper on the bridge, the targets' server,
a static source of ``http://10.213.T.x:PORT/`` resources and a
:class:`~tests.functional.fleet.Fleet` whose agents each run in their own
namespace.

Clean-up: :meth:`Lab.close` kills every process left in the lab's namespaces
and deletes the namespaces, veths and bridge, also after a failure.  Every
name starts with ``zkpn``; namespace names carry the owner's pid and links
an ``ifalias`` naming it, so :func:`remove_leftovers` (run by
:meth:`Lab.create`) removes what a run that died (SIGKILL) left, its
processes in the namespaces and its ZooKeeper on the bridge included, and
never what a live run owns.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zkpoll.testing.waiting import wait_for

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated
    from typing import Self

PREFIX = "zkpn"
NET = "10.213"
OWNER_ALIAS = "zkpoll-netns pid="
LOCK = Path("/run/lock/zkpoll-netns.lock")
TARGETS_NS = "tg"

#: The targets' HTTP server: 200 and an empty body to every GET, on every
#: address of its namespace; a deep accept queue (three agents connect to all
#: targets at once); no request log.
HTTP_SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

Server(("0.0.0.0", int(sys.argv[1])), Ok).serve_forever(poll_interval=0.1)
"""

#: Connects to each ``address`` of argv[2:] on port argv[1] (1 s each) and
#: prints ``{address: errno}`` (0: connected).
CONNECT_PROBE = """\
import json, socket, sys
out = {}
for address in sys.argv[2:]:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        out[address] = sock.connect_ex((address, int(sys.argv[1])))
print(json.dumps(out))
"""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip *args``; its stdout.  :raises RuntimeError: it failed (with ``check``)."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                          check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {done.returncode}: "
                           f"{done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids_in(namespace: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", namespace, check=False).split()]


def _delete_namespace(namespace: str) -> None:
    """Kill the processes left in ``namespace`` (ours), then delete it."""
    deadline = time.monotonic() + 10
    while (pids := _pids_in(namespace)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    ip("netns", "delete", namespace, check=False)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One lab at a time creates or removes (the choice of subnets, leftovers)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_leftovers() -> list[str]:
    """Delete the ``zkpn`` namespaces and links whose owner process is gone; their names.

    Call it holding the lock (:meth:`Lab.create` does).
    """
    removed = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}-[0-9a-f]+-(\d+)-\w+", name)
        if match and not _alive(int(match.group(1))):
            _delete_namespace(name)
            removed.append(name)
    for link in sorted(Path("/sys/class/net").iterdir()):
        if not link.name.startswith(PREFIX):
            continue
        try:
            alias = (link / "ifalias").read_text().strip()
        except OSError:
            continue  # gone with its namespace meanwhile
        owner = alias.removeprefix(OWNER_ALIAS)
        if not (alias.startswith(OWNER_ALIAS) and owner.isdigit() and _alive(int(owner))):
            _kill_listeners(link.name)
            ip("link", "delete", link.name, check=False)
            removed.append(link.name)
    return removed


def _kill_listeners(link: str) -> None:
    """Kill what listens on an address of ``link`` (the ZooKeeper of a lab whose
    owner was killed: its ``atexit`` clean-up never ran)."""
    for address in re.findall(r"inet (\S+)/", ip("-4", "-o", "addr", "show", "dev", link,
                                                   check=False)):
        listening = subprocess.run(["ss", "-Hltnp", "src", address], capture_output=True,
                                   text=True, timeout=30, check=False).stdout
        for pid in {int(p) for p in re.findall(r"pid=(\d+)", listening)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _used_octets() -> set[int]:
    """Third octets of the 10.213 subnets the root namespace has addresses in."""
    used = set()
    for match in re.finditer(rf"inet {re.escape(NET)}\.(\d+)\.", ip("-4", "-o", "addr")):
        used.add(int(match.group(1)))
    return used


@dataclass(frozen=True)
class Addresses:
    """The lab's address plan (see the module docstring)."""

    subnet: int   #: S: the bridge's /24 (agents, the targets' veth)
    targets: int  #: T: the targets' /24, routed via 10.213.S.2

    @property
    def bridge(self) -> str:
        return f"{NET}.{self.subnet}.1"

    @property
    def gateway(self) -> str:
        """The targets namespace's veth address: the agents' route to 10.213.T.0/24."""
        return f"{NET}.{self.subnet}.2"

    def agent(self, index: int) -> str:
        return f"{NET}.{self.subnet}.{11 + index}"

    def target(self, index: int) -> str:
        return f"{NET}.{self.targets}.{1 + index}"


class Lab:
    """The bridge, one namespace per agent and one for the targets (module docstring).

    ``agents`` names the agents (at most 9; the fleet's process names);
    ``targets`` is the number of target addresses (at most 250).
    Use it as a context manager, or call :meth:`create` and :meth:`close`.
    """

    def __init__(self, agents: Sequence[str], targets: int, workdir: Path) -> None:
        if not 1 <= len(agents) <= 9 or not 1 <= targets <= 250:
            raise ValueError("1-9 agents and 1-250 targets")
        if os.geteuid() != 0:
            raise PermissionError("network namespaces need root")
        self.agents = list(agents)
        self.workdir = workdir
        self.token = secrets.token_hex(2)
        self.pid = os.getpid()
        self.addresses: Addresses | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.links: list[str] = []
        self.namespaces: list[str] = []
        self._target_count = targets
        self._blocked: dict[str, dict[str, str]] = {name: {} for name in self.agents}

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- names and addresses --------------------------------------------------------
    def namespace(self, name: str) -> str:
        """The namespace of agent ``name`` (or of the targets: :data:`TARGETS_NS`)."""
        suffix = TARGETS_NS if name == TARGETS_NS else f"a{self.agents.index(name) + 1}"
        return f"{PREFIX}-{self.token}-{self.pid}-{suffix}"

    def _link(self, suffix: str) -> str:
        return f"{PREFIX}{self.token}{suffix}"  # at most 15 characters

    @property
    def plan(self) -> Addresses:
        if self.addresses is None:
            raise RuntimeError("the lab is not created")
        return self.addresses

    @property
    def bridge_address(self) -> str:
        return self.plan.bridge

    def agent_address(self, name: str) -> str:
        return self.plan.agent(self.agents.index(name))

    @property
    def targets(self) -> list[str]:
        """The target addresses, in order."""
        return [self.plan.target(i) for i in range(self._target_count)]

    # --- life cycle ---------------------------------------------------------------
    def create(self) -> None:
        """Remove leftovers of dead runs, then build the topology."""
        try:
            with _locked():
                remove_leftovers()
                used = _used_octets()
                subnet = next((s for s in range(0, 254, 2) if s not in used and s + 1 not in used),
                              None)
                if subnet is None:
                    raise RuntimeError(f"no free pair of /24s left in {NET}.0.0/16")
                self.addresses = Addresses(subnet, subnet + 1)
                self._add_bridge()
            for name in self.agents:
                self._add_namespace(name, self.agent_address(name), f"a{self.agents.index(name) + 1}")
                ns = self.namespace(name)
                ip("-n", ns, "route", "add", f"{NET}.{self.plan.targets}.0/24",
                   "via", self.plan.gateway)
            self._add_namespace(TARGETS_NS, self.plan.gateway, TARGETS_NS)
            for address in self.targets:
                ip("-n", self.namespace(TARGETS_NS), "addr", "add", f"{address}/32", "dev", "lo")
        except BaseException:
            self.close()
            raise

    def _owned(self, link: str) -> None:
        self.links.append(link)
        ip("link", "set", "dev", link, "alias", f"{OWNER_ALIAS}{self.pid}")

    def _add_bridge(self) -> None:
        bridge = self._link("br")
        ip("link", "add", bridge, "type", "bridge")
        self._owned(bridge)
        ip("addr", "add", f"{self.plan.bridge}/24", "dev", bridge)
        ip("link", "set", bridge, "up")

    def _add_namespace(self, name: str, address: str, suffix: str) -> None:
        ns = self.namespace(name)
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        veth = self._link(suffix)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._owned(veth)
        ip("link", "set", veth, "master", self._link("br"), "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill the lab's processes, delete its namespaces and links (idempotent)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        with _locked():
            for ns in self.namespaces:
                _delete_namespace(ns)
            for link in reversed(self.links):  # veths went with their namespaces
                if Path("/sys/class/net", link).exists():
                    ip("link", "delete", link, check=False)
        self.namespaces.clear()
        self.links.clear()

    def leftovers(self) -> list[str]:
        """This lab's namespaces and links that still exist (after :meth:`close`: none)."""
        names = ip("netns", "list").split()
        left = [n for n in names if n.startswith(f"{PREFIX}-{self.token}-")]
        return left + [p.name for p in Path("/sys/class/net").iterdir()
                       if p.name.startswith(f"{PREFIX}{self.token}")]

    # --- processes -----------------------------------------------------------------
    def command(self, name: str, command: Sequence[str]) -> list[str]:
        """``command`` run in the namespace of ``name`` (an agent, or :data:`TARGETS_NS`)."""
        return ["ip", "netns", "exec", self.namespace(name), *command]

    def start(self, name: str, command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``command`` in the namespace of ``name``, stderr to ``log``; killed by close."""
        with open(log, "wb") as err:
            process = subprocess.Popen(self.command(name, command), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=err,
                                       start_new_session=True)
        self.processes.append(process)
        return process

    def serve_http(self, port: int, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """The targets' HTTP server on ``port``, once every target answers from every agent."""
        server = self.start(TARGETS_NS, [sys.executable, "-c", HTTP_SERVER, str(port)],
                            self.workdir / "targets-http.log")

        def unanswered(name: str) -> dict[str, int]:
            if server.poll() is not None:
                raise AssertionError(f"the targets' HTTP server exited {server.returncode}")
            return {a: e for a, e in self.connect(name, self.targets, port).items() if e}

        for name in self.agents:
            wait_for(lambda n=name: not unanswered(n), timeout,
                     f"every target answers on port {port} from {name}'s namespace",
                     interval=0.5)
        return server

    def connect(self, name: str, addresses: Sequence[str], port: int) -> dict[str, int]:
        """Connect from ``name``'s namespace to each of ``addresses``: address -> errno
        (0: connected; e.g. ``errno.EINVAL`` behind a blackhole route)."""
        done = subprocess.run(self.command(name, [sys.executable, "-c", CONNECT_PROBE,
                                                  str(port), *addresses]),
                              capture_output=True, text=True, timeout=60, check=True)
        return {a: int(e) for a, e in json.loads(done.stdout).items()}

    # --- faults --------------------------------------------------------------------
    def block(self, name: str, addresses: Sequence[str], kind: str = "blackhole") -> None:
        """``ip route add <kind> <address>/32`` in agent ``name``'s namespace.

        ``kind``: a route type of :data:`ROUTE_ERRNO` (what ``connect()`` then fails
        with, at once; nothing leaves the namespace).
        """
        if kind not in ROUTE_ERRNO:
            raise ValueError(f"kind: one of {sorted(ROUTE_ERRNO)}, not {kind!r}")
        for address in addresses:
            ip("-n", self.namespace(name), "route", "add", kind, f"{address}/32")
            self._blocked[name][address] = kind

    def unblock(self, name: str, addresses: Sequence[str] | None = None) -> None:
        """Remove the routes :meth:`block` added for ``addresses`` (all when None)."""
        for address in sorted(self._blocked[name] if addresses is None else addresses):
            kind = self._blocked[name].pop(address)
            ip("-n", self.namespace(name), "route", "delete", kind, f"{address}/32")

    def blocked(self, name: str) -> set[str]:
        return set(self._blocked[name])


#: Route types :meth:`Lab.block` adds, and the errno of a ``connect()`` they make
#: fail (Linux, at once): a blackhole says EINVAL, not ENETUNREACH.
ROUTE_ERRNO = {"blackhole": errno.EINVAL, "unreachable": errno.EHOSTUNREACH,
               "prohibit": errno.EACCES}
BLACKHOLE_ERRNO = ROUTE_ERRNO["blackhole"]
