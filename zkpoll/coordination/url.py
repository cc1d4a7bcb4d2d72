"""Parse ``[coordination] backend_url`` into a :class:`BackendURL`.

Accepted forms (tooz-style, so Ceilometer URLs carry over)::

    zookeeper://host1:2181,host2:2181/optional/root?timeout=10
    kazoo://host:2181                     (alias of zookeeper)

The URL path is the root under which zkpoll keeps its tree (default
``/zkpoll``).  Query parameters override the matching ``[coordination]``
options for this backend.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from zkpoll.exceptions import ConfigError

__all__ = ["BackendURL", "parse_backend_url", "redact"]

OPTION = "[coordination] backend_url"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL; ``hosts`` keeps the original ``host:port`` items."""

    scheme: str
    hosts: tuple[str, ...]
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    raw: str = ""

    def float_param(self, name: str, default: float, minimum: float = 0.0) -> float:
        """Return query parameter ``name`` as a finite float > ``minimum``, else ``default``."""
        if name not in self.query:
            return default
        text = self.query[name]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (value > minimum and math.isfinite(value)):
            raise ConfigError(f"{OPTION}: query parameter {name}={text!r} in "
                              f"{redact(self.raw)!r} must be a number > {minimum:g} and finite")
        return value


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def parse_backend_url(url: str) -> BackendURL:
    """Parse and validate a backend URL; raise ConfigError naming the option."""
    text = url.strip()
    if "://" not in text:
        raise ConfigError(f"{OPTION}: {redact(text)!r} is not a URL; expected "
                          "for example zookeeper://127.0.0.1:2181")
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if not _SCHEME.match(scheme):
        raise ConfigError(f"{OPTION}: invalid scheme {scheme!r} in {redact(text)!r}")
    netloc, _, tail = rest.partition("/")
    path, _, query_text = ("/" + tail).partition("?")
    if "?" in netloc:  # no path: "zookeeper://h:1?timeout=3"
        netloc, _, query_text = netloc.partition("?")
        path = "/"
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, sep, pwd = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(pwd) if sep else None
    hosts = tuple(h.strip() for h in netloc.split(",") if h.strip())
    _check_hosts(scheme, hosts, text)
    _check_path(path, text)
    try:
        pairs = urllib.parse.parse_qsl(query_text, keep_blank_values=True,
                                       strict_parsing=bool(query_text))
    except ValueError as exc:
        raise ConfigError(f"{OPTION}: malformed query in {redact(text)!r}: {exc}") from exc
    return BackendURL(scheme=scheme, hosts=hosts, path=path.rstrip("/") or "/",
                      query=dict(pairs), username=username, password=password, raw=text)


def _check_hosts(scheme: str, hosts: tuple[str, ...], text: str) -> None:
    """Refuse a URL without a server, a malformed host or a port outside 1-65535."""
    if not hosts:
        raise ConfigError(f"{OPTION}: {redact(text)!r} names no server (an empty host "
                          f"is not localhost); write {scheme}://HOST:PORT")
    for host in hosts:
        match = _HOST.match(host)
        if not match:
            raise ConfigError(f"{OPTION}: invalid host {host!r} in {redact(text)!r}")
        port = match.group(2)
        if port is not None and not 1 <= int(port) <= 65535:
            raise ConfigError(f"{OPTION}: port {port} of {host!r} in {redact(text)!r} is "
                              "out of range (1-65535)")


def _check_path(path: str, text: str) -> None:
    """Refuse a root path with control characters or empty, '.' or '..' parts."""
    if _CONTROL.search(urllib.parse.unquote(path)):
        raise ConfigError(f"{OPTION}: the path {path!r} in {redact(text)!r} contains a "
                          "control character")
    parts = path.strip("/").split("/")
    if path.strip("/") and any(part in ("", ".", "..") for part in parts):
        raise ConfigError(f"{OPTION}: the path {path!r} in {redact(text)!r} has an empty, "
                          "'.' or '..' component")
