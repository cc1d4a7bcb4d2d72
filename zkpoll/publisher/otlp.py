"""``otlp+http://`` and ``otlp+https://``: OTLP/HTTP metrics export, protobuf encoded.

One ``send()`` is one ``POST`` of one ``ExportMetricsServiceRequest``
(``Content-Type: application/x-protobuf``) to the URL's path (default
``/v1/metrics``); the mapping of samples to OTLP is in
:mod:`zkpoll.publisher._otlp_encoding`.  Answers, as the OTLP/HTTP
specification defines them:

- 2xx: delivered.  A ``partial_success`` with rejected points is logged as a
  warning and the batch counts as delivered: the receiver refused those
  points for good, so sending them again cannot help (the spec forbids it).
- 429, 502, 503, 504 (retryable per spec) and any other status:
  :class:`PublishError` with the status, the ``google.rpc.Status`` message
  of the body when there is one, and ``Retry-After`` when given.  The spool
  in front of every sender retries every error, in order, with backoff:
  a 400 usually needs an operator (or a fixed receiver) before it passes.
- no answer (connection refused, timeout, TLS failure): :class:`PublishError`.

The connection is kept open between batches; when a kept-open connection
turns out to be closed by the receiver before it answered, the request is
sent once more on a new connection (the usual HTTP client rule for stale
keep-alive connections, not a retry policy).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import socket
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

from zkpoll.exceptions import ConfigError, PublishError
from zkpoll.publisher.base import OptionSpec, boolean, number, redact_url, url_options
from zkpoll.publisher.http import tls_context
from zkpoll.publisher.sender import BatchSender
from zkpoll.sample import Sample
from zkpoll.version import __version__

__all__ = ["OTLPSender"]

LOG = logging.getLogger(__name__)

DEFAULT_PATH = "/v1/metrics"
_RETRYABLE = frozenset({429, 502, 503, 504})
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def _compression(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("none", "gzip"):
        raise ValueError("must be none or gzip")
    return value


class OTLPSender(BatchSender):
    """Sends each batch as one OTLP/HTTP protobuf request (see the module docstring).

    Options (query string): ``timeout`` (10.0 s, per connect and per read),
    ``compression`` (``none`` or ``gzip``), ``sample_id`` (true: add the
    ``sample_id`` point attribute), ``verify_ssl`` (true) and ``ca_file``
    (a CA bundle for ``otlp+https``; default: the system's).  Credentials in
    the URL become HTTP Basic auth and are redacted from logs.
    """

    sink = "otlp"

    OPTIONS: ClassVar[OptionSpec] = {
        "timeout": (number(0.01), 10.0),
        "compression": (_compression, "none"),
        "sample_id": (boolean, True),
        "verify_ssl": (boolean, True),
        "ca_file": (str, None),
    }

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        self.redacted_url = redact_url(url)
        if url.scheme not in ("otlp+http", "otlp+https"):
            raise ConfigError(f"publisher URL {self.redacted_url!r}: scheme must be "
                              "otlp+http or otlp+https")
        if not url.hostname:
            raise ConfigError(f"publisher URL {self.redacted_url!r} names no host")
        opts = url_options(url, self.OPTIONS)
        try:
            from zkpoll.publisher import _otlp_encoding
        except ImportError as exc:
            raise ConfigError(f"publisher URL {self.redacted_url!r}: the OTLP sender needs "
                              f"the opentelemetry-proto package (pip install 'zkpoll[otlp]'): "
                              f"{exc}") from exc
        self._encoding = _otlp_encoding
        self.timeout: float = opts["timeout"]
        self.compression: str = opts["compression"]
        self.with_sample_id: bool = opts["sample_id"]
        self._tls = url.scheme == "otlp+https"
        self._host = url.hostname
        self._port = url.port or (443 if self._tls else 4318)
        self._path = url.path or DEFAULT_PATH
        self._headers = {"Content-Type": "application/x-protobuf",
                         "User-Agent": f"zkpoll/{__version__}"}
        if self.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        if url.username is not None or url.password is not None:
            userinfo = (f"{urllib.parse.unquote(url.username or '')}:"
                        f"{urllib.parse.unquote(url.password or '')}")
            self._headers["Authorization"] = "Basic " + base64.b64encode(
                userinfo.encode()).decode("ascii")
        self._ssl = tls_context(self.url, opts["verify_ssl"], opts["ca_file"]) if self._tls else None
        self._conn: http.client.HTTPConnection | None = None
        self._host_name = _host_name(conf)

    def encode(self, samples: Sequence[Sample]) -> bytes:
        """The request body for ``samples`` (compressed if configured)."""
        body = self._encoding.encode_request(samples, self._host_name,
                              with_sample_id=self.with_sample_id).SerializeToString()
        return gzip.compress(body, compresslevel=5) if self.compression == "gzip" else body

    def send(self, samples: Sequence[Sample]) -> None:
        """POST ``samples`` as one request; return once the receiver answered 2xx."""
        if not samples:
            return
        body = self.encode(samples)
        try:
            status, reason, headers, answer = self._post(body)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise PublishError(f"OTLP receiver {self.redacted_url}: no answer: "
                               f"{type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            self._check_partial_success(answer, len(samples))
            return
        raise PublishError(self._describe_failure(status, reason, headers, answer))

    def _post(self, body: bytes) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        reused = self._conn is not None
        try:
            return self._exchange(body)
        except _STALE:
            if not reused:
                raise
            LOG.debug("publisher %s: kept-open connection was closed; reconnecting",
                      self.redacted_url)
            self._drop_connection()
            return self._exchange(body)

    def _exchange(self, body: bytes) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        conn = self._connection()
        conn.request("POST", self._path, body=body, headers=self._headers)
        response = conn.getresponse()
        answer = response.read()
        if response.will_close:
            self._drop_connection()
        return response.status, response.reason, response.headers, answer

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._ssl is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._ssl)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port,
                                                        timeout=self.timeout)
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _check_partial_success(self, answer: bytes, count: int) -> None:
        if not answer:
            return
        response = self._encoding.metrics_service_pb2.ExportMetricsServiceResponse()
        try:
            response.ParseFromString(answer)
        except Exception:  # noqa: BLE001 - a 2xx with a body we cannot read still acknowledges
            LOG.debug("publisher %s: 2xx answer is not an ExportMetricsServiceResponse",
                      self.redacted_url)
            return
        partial = response.partial_success
        if partial.rejected_data_points or partial.error_message:
            LOG.warning("publisher %s: the OTLP receiver rejected %d of %d data points "
                        "for good (not resent): %s", self.redacted_url,
                        partial.rejected_data_points, count,
                        partial.error_message or "no message")

    def _describe_failure(self, status: int, reason: str, headers: http.client.HTTPMessage,
                          answer: bytes) -> str:
        detail = None
        if "protobuf" in (headers.get("Content-Type") or ""):
            detail = self._encoding.decode_status(answer)
        if detail is None and answer:
            detail = answer[:300].decode("utf-8", "replace").strip()
        kind = "retryable" if status in _RETRYABLE else "rejected"
        text = (f"OTLP receiver {self.redacted_url} answered HTTP {status} {reason} "
                f"({kind})")
        if detail:
            text += f": {detail}"
        retry_after = headers.get("Retry-After")
        if retry_after:
            text += f" (Retry-After: {retry_after})"
        return text

    def close(self) -> None:
        """Close the kept-open connection."""
        self._drop_connection()


def _host_name(conf: Any) -> str:
    """``[DEFAULT] host`` when the agent's options are registered, else the system's."""
    try:
        host = conf.host if conf is not None else None
    except Exception:  # noqa: BLE001 - oslo.config raises NoSuchOptError when unregistered
        host = None
    return host if isinstance(host, str) and host else socket.gethostname()
