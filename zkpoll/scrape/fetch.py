"""One HTTP scrape: GET a target's URL as Prometheus does, within limits.

:func:`fetch` sends Prometheus's ``Accept`` header and ``Accept-Encoding:
gzip``, the source's credentials and TLS settings, and returns the body
(decompressed) and its ``Content-Type``.  It raises :class:`ScrapeError`
with ``unreachable`` True when the connection could not be made (refused,
no route, name unknown, connect timed out: another member may reach it),
False when the target answered badly (an HTTP status other than 200, a
read timeout, a body over ``body_size_limit``, a broken gzip stream).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
import zlib

from zkpoll.exceptions import ZkpollError
from zkpoll.pollsters import connect_failed
from zkpoll.scrape.config import ClientSettings
from zkpoll.scrape.exposition import ACCEPT
from zkpoll.version import __version__

__all__ = ["ScrapeError", "fetch"]

_CHUNK = 1 << 16
_USER_AGENT = f"zkpoll/{__version__}"


class ScrapeError(ZkpollError):
    """A scrape failed; ``unreachable``: not even connected."""

    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS with a server name of our own for SNI and the certificate check."""

    def __init__(self, host: str, port: int | None, timeout: float, context: ssl.SSLContext,
                 server_name: str | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name or host
        self._tls_context = context

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


def _connection(url: urllib.parse.SplitResult, client: ClientSettings, timeout: float,
                context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    host, port = url.hostname or "", url.port
    if url.scheme == "https":
        tls = client.tls
        return _TLSConnection(host, port, timeout, context or ssl.create_default_context(),
                              tls.server_name if tls else None)
    return http.client.HTTPConnection(host, port, timeout=timeout)


def fetch(url: str, client: ClientSettings, timeout: float,
          context: ssl.SSLContext | None = None) -> tuple[bytes, str | None]:
    """GET ``url``; (body, content type).  :class:`ScrapeError` on failure."""
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    connection = _connection(parts, client, timeout, context)
    try:
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            unreachable = connect_failed(exc) and not isinstance(exc, ssl.SSLError)
            raise ScrapeError(_describe(exc), unreachable=unreachable) from None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip", "User-Agent": _USER_AGENT,
                   "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}", **client.headers()}
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                raise ScrapeError(f"server returned HTTP status {response.status} "
                                  f"{response.reason}")
            body = _read(response, client.body_size_limit, deadline)
        except (OSError, http.client.HTTPException) as exc:
            raise ScrapeError(_describe(exc)) from None
        return body, response.getheader("Content-Type")
    finally:
        connection.close()


def _read(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    gzipped = (response.getheader("Content-Encoding") or "").lower() == "gzip"
    inflate = zlib.decompressobj(wbits=31) if gzipped else None
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise ScrapeError("context deadline exceeded (scrape_timeout)")
        chunk = response.read(_CHUNK)
        if not chunk:
            break
        if inflate is not None:
            try:
                chunk = inflate.decompress(chunk, (limit - size + 1) if limit else 0)
            except zlib.error as exc:
                raise ScrapeError(f"invalid gzip body: {exc}") from None
        size += len(chunk)
        if limit and size > limit:
            raise ScrapeError(f"body size limit exceeded ({limit} bytes)")
        parts.append(chunk)
    return b"".join(parts)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "context deadline exceeded (scrape_timeout)"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
