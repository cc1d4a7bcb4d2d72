"""Talk to a ZooKeeper server with four-letter words (``ruok``, ``mntr``).

The server must allow them: ``4lw.commands.whitelist=mntr,ruok`` (or ``*``)
in ``zoo.cfg``; ZooKeeper 3.5+ allows only ``srvr`` by default.
"""

from __future__ import annotations

import ipaddress
import socket
import time

from zkpoll.exceptions import PluginError

__all__ = ["DEFAULT_PORT", "four_letter_word", "mntr", "parse_endpoint", "parse_mntr"]

DEFAULT_PORT = 2181
_MAX_ANSWER = 1 << 20


def parse_endpoint(resource: str) -> tuple[str, int]:
    """Return ``(host, port)`` of ``host:port``, ``[v6]:port`` or a host alone (port 2181).

    :raises ValueError: not an endpoint.
    """
    text = resource.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected [v6]:port, not {resource!r}")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        try:
            host, port_text = str(ipaddress.IPv6Address(text)), ""
        except ValueError:
            raise ValueError(f"expected host:port or [v6]:port, not {resource!r}") from None
    else:
        host, port_text = text, ""
    if not host or "/" in host or " " in host:
        raise ValueError(f"expected host:port, not {resource!r}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {resource!r}")
    return host, int(port_text)


def four_letter_word(resource: str, command: str, timeout: float) -> str:
    """Send ``command`` to the server ``resource`` and return its whole answer.

    Everything (connect, send, read until the server closes) happens within
    ``timeout`` seconds.  :raises OSError: unreachable, reset or too slow.
    """
    host, port = parse_endpoint(resource)
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(command.encode("ascii"))
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer to {command} within {timeout:.1f}s")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > _MAX_ANSWER:
                raise OSError(f"answer to {command} larger than {_MAX_ANSWER} bytes")
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def parse_mntr(text: str) -> dict[str, int | float | str]:
    """Parse a ``mntr`` answer (``key<TAB>value`` lines); numbers become numbers.

    :raises PluginError: the answer holds no statistics, e.g. ``mntr is not
        executed because it is not in the whitelist``.
    """
    stats: dict[str, int | float | str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if not sep or not key.startswith("zk_"):
            continue
        value = value.strip()
        try:
            stats[key] = int(value)
        except ValueError:
            try:
                stats[key] = float(value)
            except ValueError:
                stats[key] = value
    if not stats:
        hint = (" (allow it with 4lw.commands.whitelist=mntr,ruok in zoo.cfg)"
                if "whitelist" in text else "")
        raise PluginError(f"mntr answered no statistics: {text.strip()[:120]!r}{hint}")
    return stats


def mntr(resource: str, timeout: float) -> dict[str, int | float | str]:
    """The ``mntr`` statistics of the server ``resource``."""
    return parse_mntr(four_letter_word(resource, "mntr", timeout))
