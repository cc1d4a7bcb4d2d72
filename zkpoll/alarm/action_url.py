"""Alarm action URLs: which are accepted, their options, where they spool.

Schemes: ``log://`` (the notification is logged at WARNING; nothing else
in the URL matters, no options), ``http://host[:port]/path`` and
``https://...``.  Credentials in the URL (``https://user:pass@host/``)
become HTTP Basic auth and are redacted from every message.  The query
string carries zkpoll's options and is not sent:

- ``timeout``: seconds per connect and per read of one POST (10.0);
- ``retry_backoff`` (1.0) and ``max_backoff`` (60.0): the first retry
  waits ``retry_backoff`` s, doubled per failed attempt up to
  ``max_backoff``, with jitter;
- https only: ``verify`` (or ``verify_ssl``, as the publishers spell it;
  true), ``ca_file`` (a CA bundle; default: the system's), ``cert_file``
  and ``key_file`` (a client certificate; ``key_file`` defaults to the key
  in ``cert_file``).

Every error is a :class:`~zkpoll.exceptions.ConfigError` naming the
redacted URL.  Parsing reads no file: certificates are loaded when the
notifier opens (:func:`client_tls_context`).
"""

from __future__ import annotations

import base64
import logging
import ssl
import urllib.parse
from dataclasses import dataclass

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import OptionSpec, boolean, number, redact_url, url_options
from zkpoll.publisher.http import tls_context
from zkpoll.publisher.spool_options import spool_name

__all__ = ["SCHEMES", "WHAT", "ActionURL", "WebhookOptions", "client_tls_context",
           "parse_action_url"]

LOG = logging.getLogger(__name__)

#: Accepted action URL schemes.
SCHEMES = ("log", "http", "https")
#: How messages name an action URL.
WHAT = "alarm action URL"

_SPEC: OptionSpec = {
    "timeout": (number(0.01), 10.0),
    "retry_backoff": (number(0.001), 1.0),
    "max_backoff": (number(0.001), 60.0),
    "verify": (boolean, None),
    "verify_ssl": (boolean, None),
    "ca_file": (str, None),
    "cert_file": (str, None),
    "key_file": (str, None),
}
_TLS_ONLY = ("verify", "verify_ssl", "ca_file", "cert_file", "key_file")


@dataclass(frozen=True)
class WebhookOptions:
    """The query-string options of an ``http(s)://`` action (module docstring)."""

    timeout: float = 10.0
    retry_backoff: float = 1.0
    max_backoff: float = 60.0
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class ActionURL:
    """One parsed action URL."""

    url: str                    #: as configured (may hold a password: never log it)
    scheme: str                 #: one of :data:`SCHEMES`
    redacted: str               #: for messages
    spool: str | None = None    #: spool directory name (http/https), stable per destination
    host: str = ""
    port: int = 0
    path: str = "/"
    authorization: str | None = None  #: ``Basic ...`` header value from the URL's credentials
    options: WebhookOptions = WebhookOptions()

    @property
    def label(self) -> str:
        """The redacted URL without its query string: the destination, for metrics."""
        return self.redacted.split("?", 1)[0]

    def same_delivery(self, other: ActionURL) -> bool:
        """Whether ``other`` delivers exactly like this one (host, path, auth, options)."""
        return (self.host, self.port, self.path, self.authorization, self.options) == (
            other.host, other.port, other.path, other.authorization, other.options)


def _error(redacted: str, reason: str) -> ConfigError:
    return ConfigError(f"{WHAT} {redacted!r}: {reason}")


def parse_action_url(url: str) -> ActionURL:
    """Validate ``url`` and its options (reads no file).

    :raises ConfigError: unknown scheme, no host, bad port, unknown, repeated
        or invalid option, TLS option on ``http://``, ``key_file`` without
        ``cert_file``; the message names the redacted URL.
    """
    redacted = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise _error(redacted, f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _error(redacted, f"unsupported scheme {parts.scheme!r} (accepted: "
                               f"{', '.join(s + '://' for s in SCHEMES)})")
    if scheme == "log":
        if parts.query:
            raise _error(redacted, "log:// takes no options")
        return ActionURL(url, scheme, redacted)
    raw = url_options(parts, _SPEC, what=WHAT)
    given = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "http":
        tls = [name for name in _TLS_ONLY if name in given]
        if tls:
            raise _error(redacted, f"{', '.join(tls)} apply to https:// only")
    if raw["verify"] is not None and raw["verify_ssl"] is not None:
        raise _error(redacted, "give verify or verify_ssl, not both")
    if raw["key_file"] is not None and raw["cert_file"] is None:
        raise _error(redacted, "key_file needs cert_file")
    if not parts.hostname:
        raise _error(redacted, "names no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise _error(redacted, f"bad port: {exc}") from exc
    verify = raw["verify"] if raw["verify"] is not None else raw["verify_ssl"]
    options = WebhookOptions(raw["timeout"], raw["retry_backoff"], raw["max_backoff"],
                             True if verify is None else verify, raw["ca_file"],
                             raw["cert_file"], raw["key_file"])
    return ActionURL(url, scheme, redacted, spool_name(parts), parts.hostname, port,
                     parts.path or "/", _basic_auth(parts), options)


def _basic_auth(parts: urllib.parse.SplitResult) -> str | None:
    if parts.username is None and parts.password is None:
        return None
    userinfo = (f"{urllib.parse.unquote(parts.username or '')}:"
                f"{urllib.parse.unquote(parts.password or '')}")
    return "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")


def client_tls_context(action: ActionURL) -> ssl.SSLContext:
    """The TLS context of an ``https://`` action: CA, verification, client certificate.

    :raises ConfigError: ``ca_file``, ``cert_file`` or ``key_file`` cannot be loaded
    """
    options = action.options
    parts = urllib.parse.urlsplit(action.url)
    context = tls_context(parts, True, options.ca_file, what=WHAT)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        LOG.warning("%s %s: TLS certificate verification is disabled", WHAT, action.redacted)
    if options.cert_file:
        try:
            context.load_cert_chain(options.cert_file, options.key_file)
        except (OSError, ssl.SSLError) as exc:
            files = options.cert_file + (f" / {options.key_file}" if options.key_file else "")
            raise _error(action.redacted, f"cannot load cert_file/key_file {files!r}: "
                                          f"{exc}") from exc
    return context
