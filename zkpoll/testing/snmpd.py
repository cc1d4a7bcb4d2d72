"""A real Net-SNMP ``snmpd`` answering on many loopback addresses: a fleet of SNMP devices.

Every 127.a.b.c address is this machine, so one ``snmpd`` bound to N of
them on one UDP port answers as N distinct devices (``devices``, each
``"host:port"``).  Each answers SNMP v2c (``community``) and v3 authPriv
(``v3_user``, SHA + AES).  They all serve the same data: this machine's
IF-MIB (ifTable and ifXTable), IP-MIB, HOST-RESOURCES, UCD disks and load::

    with ManagedSnmpd(8) as snmpd:             # 127.77.0.1 .. 127.77.0.8
        snmpd.devices                          # ['127.77.0.1:40123', ...]
        snmpd.pause()                          # every device goes silent (SIGSTOP)
        snmpd.resume()                         # and answers again (SIGCONT)
        snmpd.kill(); snmpd.start()            # a crash, then the same port and engine

It runs as our own process, never the system service: ``-C`` (only our
``snmpd.conf``), ``MIBS=`` and ``MIBDIRS=/nonexistent`` (Debian ships no
IETF MIBs: loading them only prints warnings), ``SNMP_PERSISTENT_DIR`` in
its directory (not /var/lib/snmp), no SMUX port (``-I -smux``).

Capacity (measured on 2 shared cores, Net-SNMP 5.9.3): one UDP socket
per address, so the limit is the open-file limit (``ulimit -n``, checked
here before starting).  From launch to the first answer: 8 addresses
25 ms, 1,000 45 ms, 5,000 0.13 s, 19,000 0.7 s.  snmpd scans every
socket for each packet, so a request costs more as addresses grow
(sequential GETs: 9,000/s with 8 addresses, 4,600/s with 1,000, 470/s
with 10,000): beyond a few thousand devices, run several ManagedSnmpd
(e.g. ``loopback_addresses(1000, "127.78")``).  Addresses go on the
command line, :data:`ENDPOINTS_PER_ARG` per argument: one argument may
not exceed 128 KiB (about 5,900 endpoints), and ``agentaddress`` lines
in the conf are silently cut after about 2.5 KB (116 endpoints).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import random
import resource
import signal
import socket
from collections.abc import Sequence

from zkpoll.exceptions import ZkpollError
from zkpoll.testing._server import ManagedServer

__all__ = ["ENDPOINTS_PER_ARG", "UDP_PORTS", "ManagedSnmpd", "free_udp_port",
           "loopback_addresses",
           "v2c_get_request"]

#: Endpoints given to snmpd in one command-line argument (it joins its arguments).
ENDPOINTS_PER_ARG = 1000
#: Descriptors snmpd needs besides one socket per address (log, conf, /proc reads).
_SPARE_FDS = 64
_SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
_CONF = """\
rocommunity {community} 127.0.0.0/8
createUser {user} SHA {auth} AES {priv}
rouser {user} priv
dontLogTCPWrappersConnects yes
sysName zkpoll-snmpd
sysLocation zkpoll tests
sysContact zkpoll tests
includeAllDisks 10%
load 12 10 5
"""


def loopback_addresses(count: int, prefix: str = "127.77") -> list[str]:
    """``count`` distinct addresses ``<prefix>.x.y`` (y in 1..254): 127.77.0.1, 127.77.0.2, ..."""
    if not 0 < count <= 256 * 254:
        raise ZkpollError(f"cannot make {count} addresses under {prefix}.0.0/16")
    return [f"{prefix}.{i // 254}.{i % 254 + 1}" for i in range(count)]


#: Ports :func:`free_udp_port` picks from: below Linux's ephemeral range (32768-60999),
#: so that no client socket (bound to 0.0.0.0 on an ephemeral port) takes one between
#: the check and snmpd's bind.
UDP_PORTS = range(20000, 32768)


def free_udp_port(hosts: Sequence[str], attempts: int = 200) -> int:
    """A UDP port free on every one of ``hosts`` (local IPv4 addresses) right now,
    outside the ephemeral range (:data:`UDP_PORTS`).

    Each candidate is bound once on each host (one at a time, so thousands of
    hosts need one descriptor).
    """
    for _ in range(attempts):
        port = random.choice(UDP_PORTS)
        if all(_udp_free(host, port) for host in hosts):
            return port
    raise ZkpollError(f"no UDP port free on all of {len(hosts)} addresses after "
                      f"{attempts} attempts")


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _tlv(tag: int, value: bytes) -> bytes:
    """One BER tag-length-value."""
    size = len(value)
    if size < 0x80:
        return bytes([tag, size]) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + value


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.strip(".").split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def v2c_get_request(community: str, oid: str, request_id: int) -> bytes:
    """An SNMP v2c GetRequest for one ``oid`` (dotted, numeric), BER-encoded."""
    binding = _tlv(0x30, _oid(oid) + b"\x05\x00")
    pdu = _tlv(0xA0, _integer(request_id) + _integer(0) + _integer(0) + _tlv(0x30, binding))
    return _tlv(0x30, _integer(1) + _tlv(0x04, community.encode()) + pdu)


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, value, position after it) of the BER element at ``pos``."""
    tag, size = data[pos], data[pos + 1]
    pos += 2
    if size & 0x80:
        width = size & 0x7F
        size = int.from_bytes(data[pos:pos + width], "big")
        pos += width
    if pos + size > len(data):
        raise ValueError("truncated BER element")
    return tag, data[pos:pos + size], pos + size


def _is_response(reply: bytes, request_id: int) -> bool:
    """True if ``reply`` is a v2c Response to ``request_id`` without error."""
    try:
        _, message, _ = _read_tlv(reply, 0)
        _, _, pos = _read_tlv(message, 0)             # version
        _, _, pos = _read_tlv(message, pos)           # community
        tag, pdu, _ = _read_tlv(message, pos)
        _, rid, pos = _read_tlv(pdu, 0)
        _, status, _ = _read_tlv(pdu, pos)
    except (IndexError, ValueError):
        return False
    return (tag == 0xA2 and int.from_bytes(rid, "big", signed=True) == request_id
            and int.from_bytes(status, "big") == 0)


class ManagedSnmpd(ManagedServer):
    """One ``snmpd`` on N loopback addresses and one UDP port (``ZKPOLL_SNMPD`` overrides it).

    ``addresses`` is a list of local IPv4 addresses, or a count of
    addresses made by :func:`loopback_addresses`.  The port (free for UDP
    on all of them unless given) and the v3 engine survive stop and kill.
    ``extra_conf`` is appended to ``snmpd.conf`` (e.g. ``extend`` lines).
    """

    program = "snmpd"
    env_var = "ZKPOLL_SNMPD"
    package = "snmpd"
    scheme = "snmp"

    def __init__(self, addresses: Sequence[str] | int = 4, *, port: int | None = None,
                 community: str = "public", v3_user: str = "zkv3",
                 v3_auth_password: str = "zkauthpass123",
                 v3_priv_password: str = "zkprivpass123", extra_conf: str = "") -> None:
        hosts = (loopback_addresses(addresses) if isinstance(addresses, int)
                 else list(addresses))
        _check_addresses(hosts)
        _check_words(community=community, v3_user=v3_user)
        for name, password in (("v3_auth_password", v3_auth_password),
                               ("v3_priv_password", v3_priv_password)):
            _check_words(**{name: password})
            if len(password) < 8:
                raise ZkpollError(f"{name} must have at least 8 characters (Net-SNMP's rule)")
        self._addresses = hosts
        self._community = community
        self._v3 = (v3_user, v3_auth_password, v3_priv_password)
        self._extra_conf = extra_conf
        self._paused = False
        self._request_ids = itertools.count(random.randrange(1, 2**30))
        self._port_given = port is not None
        super().__init__(port or free_udp_port(hosts), hosts[0])

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return (f"<{type(self).__name__} {len(self._addresses)} devices "
                f"{self.address}.. {state}>")

    @property
    def addresses(self) -> list[str]:
        """The device addresses (hosts), in order."""
        return list(self._addresses)

    @property
    def devices(self) -> list[str]:
        """``"host:port"`` of every device, in order of :attr:`addresses`."""
        return [f"{host}:{self.port}" for host in self._addresses]

    @property
    def community(self) -> str:
        """The SNMP v1/v2c read-only community."""
        return self._community

    @property
    def v3_user(self) -> str:
        """The SNMP v3 user (authPriv: SHA authentication, AES privacy)."""
        return self._v3[0]

    @property
    def v3_auth_password(self) -> str:
        return self._v3[1]

    @property
    def v3_priv_password(self) -> str:
        return self._v3[2]

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (the process is alive, silent)."""
        return self._paused and self.running

    def conf_text(self) -> str:
        """The ``snmpd.conf`` this server runs with."""
        user, auth, priv = self._v3
        conf = _CONF.format(community=self._community, user=user, auth=auth, priv=priv)
        return conf + self._extra_conf + ("\n" if self._extra_conf else "")

    def command(self) -> list[str]:
        conf = self._dir / "snmpd.conf"
        conf.write_text(self.conf_text())
        endpoints = [f"udp:{host}:{self.port}" for host in self._addresses]
        arguments = [",".join(endpoints[i:i + ENDPOINTS_PER_ARG])
                     for i in range(0, len(endpoints), ENDPOINTS_PER_ARG)]
        environment = ["MIBS=", "MIBDIRS=/nonexistent",
                       f"SNMP_PERSISTENT_DIR={self._dir / 'state'}"]
        return ["env", *environment, self.find_binary(), "-f", "-Lo", "-C", "-I", "-smux",
                "-c", str(conf), "-p", str(self._dir / "snmpd.pid"), *arguments]

    def start(self, timeout: float | None = None) -> None:
        """Start snmpd (resume it if paused) and wait until it answers a v2c GET.

        A port chosen here that another socket took between the check and
        snmpd's bind ("Error opening specified endpoint") is chosen again,
        up to 3 times; a port the caller gave is not.
        """
        self.resume()
        for attempt in range(3):
            try:
                super().start(timeout)
                return
            except ZkpollError as exc:
                if self._port_given or attempt == 2 or \
                        "Error opening specified endpoint" not in str(exc):
                    raise
                self._port = free_udp_port(self._addresses)

    def answers(self, timeout: float = 1.0, device: str | None = None) -> bool:
        """True if ``device`` (default: the last, bound last) answers a v2c GET of sysUpTime.0."""
        host, _, port = (device or self.devices[-1]).rpartition(":")
        request_id = next(self._request_ids)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect((host, int(port)))  # a closed port fails fast (ICMP)
                sock.send(v2c_get_request(self._community, _SYS_UPTIME, request_id))
                return _is_response(sock.recv(65535), request_id)
        except OSError:
            return False

    def pause(self) -> None:
        """Freeze snmpd (SIGSTOP): every device stops answering, like a hung device.

        Requests sent meanwhile wait in the socket buffers: snmpd answers
        the ones still there after :meth:`resume`.
        """
        if self._process is None or not self.running:
            raise ZkpollError(f"{self!r}: cannot pause, not running")
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let a paused snmpd run again (SIGCONT); no-op if not paused."""
        if self._paused and self._process is not None and self.running:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop snmpd gracefully (resumed first: a stopped process cannot exit)."""
        self.resume()
        super().stop(timeout)

    def kill(self) -> None:
        super().kill()
        self._paused = False


def _check_addresses(hosts: list[str]) -> None:
    if not hosts:
        raise ZkpollError("ManagedSnmpd needs at least one address")
    if len(set(hosts)) != len(hosts):
        raise ZkpollError("ManagedSnmpd addresses must be distinct")
    for host in hosts:
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise ZkpollError(f"ManagedSnmpd address {host!r} is not an IPv4 address") from exc
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and len(hosts) + _SPARE_FDS > limit:
        raise ZkpollError(f"{len(hosts)} addresses need {len(hosts) + _SPARE_FDS} open files "
                          f"in snmpd (one UDP socket each) but `ulimit -n` is {limit}")


def _check_words(**values: str) -> None:
    for name, value in values.items():
        if not value or any(char.isspace() for char in value) or "#" in value:
            raise ZkpollError(f"{name} {value!r} must be one word without '#' (snmpd.conf)")
