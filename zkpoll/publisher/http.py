"""``http://`` and ``https://`` sender: one JSON POST per batch, behind the spool.

The body is a JSON array of ``Sample.as_dict()`` (each with its
deterministic ``id``), ``Content-Type: application/json``, one connection
per POST.  A 2xx answer acknowledges the batch; connection errors, 5xx and
429 raise :class:`PublishError` (the spool retries, with backoff, without
limit); any other answer raises :class:`BatchRejected` (the spool drops the
batch, counted and logged).  Credentials in the URL
(``https://user:pass@host/``) become Basic auth and are redacted from logs.

Options (query string): ``timeout`` (5.0 s per POST), ``verify_ssl`` (true)
and ``ca_file`` (a CA bundle for https; default: the system's); the spool's
``batch_size`` (500), ``retry_backoff`` and ``max_backoff`` also apply.  The
query string is not sent.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

from zkpoll.exceptions import BatchRejected, ConfigError, PublishError
from zkpoll.publisher.base import OptionSpec, boolean, number, redact_url, url_options
from zkpoll.publisher.sender import BatchSender
from zkpoll.sample import Sample
from zkpoll.version import __version__

__all__ = ["HTTPSender", "post"]

LOG = logging.getLogger(__name__)

_RETRIED_STATUSES = frozenset({429}) | frozenset(range(500, 600))


def post(connection: http.client.HTTPConnection, path: str, body: bytes,
         headers: dict[str, str], retried: frozenset[int] = _RETRIED_STATUSES) -> None:
    """POST ``body``; return on 2xx, else raise PublishError (no answer, or a
    status in ``retried``: 429 and 5xx by default) or BatchRejected."""
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        detail = response.read(300).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        raise PublishError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return
    reason = f"HTTP {response.status} {response.reason}" + (f": {detail!r}" if detail else "")
    if response.status in retried:
        raise PublishError(reason)
    raise BatchRejected(reason)


class HTTPSender(BatchSender):
    """POST batches as JSON arrays (see the module docstring)."""

    sink = "http"
    batch_size = 500
    OPTIONS: ClassVar[OptionSpec] = {
        "timeout": (number(0.01), 5.0),
        "verify_ssl": (boolean, True),
        "ca_file": (str, None),
    }

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        options = url_options(url, self.OPTIONS)
        if not url.hostname:
            raise ConfigError(f"publisher URL {redact_url(url)!r} names no host")
        self.timeout: float = options["timeout"]
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme.endswith("s") else 80)
        self._path = url.path or "/"
        self.headers = {"Content-Type": "application/json",
                        "User-Agent": f"zkpoll/{__version__}"}
        if url.username is not None or url.password is not None:
            userinfo = (f"{urllib.parse.unquote(url.username or '')}:"
                        f"{urllib.parse.unquote(url.password or '')}")
            token = base64.b64encode(userinfo.encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"
        self._ssl = (tls_context(url, options["verify_ssl"], options["ca_file"])
                     if url.scheme.endswith("s") else None)

    def connection(self) -> http.client.HTTPConnection:
        """A new (not yet connected) connection to the sink."""
        if self._ssl is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def send(self, samples: Sequence[Sample]) -> None:
        """POST the batch as one JSON array."""
        body = json.dumps([s.as_dict() for s in samples], separators=(",", ":"),
                          default=str).encode()
        post(self.connection(), self._path, body, self.headers)


def tls_context(url: urllib.parse.SplitResult, verify: bool,
                ca_file: str | None, *, what: str = "publisher URL") -> ssl.SSLContext:
    """The client TLS context of a publisher URL (ConfigError naming ``what``
    and the redacted URL for a bad ca_file)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{what} {redact_url(url)!r}: cannot load ca_file "
                          f"{ca_file!r}: {exc}") from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        LOG.warning("publisher %s: TLS certificate verification is disabled", redact_url(url))
    return context
