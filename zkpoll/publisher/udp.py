"""``udp://`` publisher: samples as JSON lines packed into datagrams."""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import OptionSpec, Publisher, integer
from zkpoll.sample import Sample

__all__ = ["DEFAULT_PORT", "UDPPublisher"]

#: Port used when the URL names none: what Ceilometer's UDP publisher uses then
#: (its ``[collector] udp_port`` default), so a ``udp://HOST`` copied from a
#: Ceilometer pipeline goes to the same port (the payload differs: JSON here).
DEFAULT_PORT = 4952


class UDPPublisher(Publisher):
    """Send samples to ``udp://HOST[:PORT]`` as newline-separated JSON.

    Without a port, samples go to :data:`DEFAULT_PORT` (4952), with one
    WARNING at load naming it; port 0 is refused.  Each datagram holds one
    or more whole lines (one ``Sample.as_dict()`` each), packed up to
    ``max_datagram`` bytes (default 60000, at most 65507); a receiver splits
    a datagram on newlines.  A sample larger than ``max_datagram`` is
    dropped.  The socket is non-blocking, so a full send buffer drops the
    datagram instead of stalling the polling thread; the host name is
    resolved on the first send and again after an error.
    """

    OPTIONS: ClassVar[OptionSpec] = {"max_datagram": (integer(512, 65507), 60000)}

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        if not url.hostname:
            raise ConfigError(f"publisher URL {self.redacted_url!r} names no host")
        self.host = url.hostname
        if url.port == 0:
            raise ConfigError(f"publisher URL {self.redacted_url!r}: port 0 is not a "
                              f"destination; name the receiver's port")
        self.port = DEFAULT_PORT if url.port is None else url.port
        if url.port is None:
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.log.warning("publisher %s names no port: sending to port %d, the default "
                             "of Ceilometer's UDP publisher (write udp://%s:%d to say so)",
                             self.redacted_url, DEFAULT_PORT, host, DEFAULT_PORT)
        self.max_datagram: int = self.options["max_datagram"]
        self._lock = threading.Lock()
        self._target: tuple[socket.socket, Any] | None = None

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Send ``samples`` now; a socket error loses that datagram (no spool:
        counted as ``send_failed``, degraded at once) and the next one reconnects."""
        sent = lost = 0
        error: OSError | None = None
        for datagram, count in self._pack(self._encode(samples)):
            try:
                sock, address = self._connect()
                sock.sendto(datagram, address)
            except OSError as exc:
                self.close()
                lost, error = lost + count, exc
            else:
                sent += count
        self._batch_done(sent, lost, f"cannot send to {self.host}:{self.port}: {error}; "
                         f"samples lost", "send_failed")

    def close(self, timeout: float = 5.0) -> None:
        """Close the socket (the next send opens a new one)."""
        with self._lock:
            target, self._target = self._target, None
        if target is not None:
            target[0].close()

    def _connect(self) -> tuple[socket.socket, Any]:
        with self._lock:
            if self._target is None:
                family, kind, proto, _, address = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                self._target = (sock, address)
            return self._target

    def _pack(self, lines: list[str]) -> Iterator[tuple[bytes, int]]:
        """Yield (datagram, sample count), each datagram at most max_datagram bytes."""
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            data = line.encode()
            if len(data) > self.max_datagram:
                self._failed(f"dropped a sample of {len(data)} bytes: larger than "
                             f"max_datagram={self.max_datagram}", 1, error=False,
                             drop_reason="max_datagram")
                continue
            if chunk and size + 1 + len(data) > self.max_datagram:
                yield b"\n".join(chunk), len(chunk)
                chunk, size = [], 0
            size += len(data) + bool(chunk)
            chunk.append(data)
        if chunk:
            yield b"\n".join(chunk), len(chunk)
