"""Parse ``[coordination] backend_url`` into a :class:`BackendURL`.

Accepted forms (tooz-style, so Ceilometer URLs carry over)::

    zookeeper://host1:2181,host2:2181/optional/root?timeout=10
    kazoo://host:2181                     (alias of zookeeper)

The URL path is the root under which zkpoll keeps its tree (default
``/zkpoll``).  Query parameters override the matching ``[coordination]``
options for this backend.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from zkpoll.exceptions import ConfigError

__all__ = ["BackendURL", "parse_backend_url", "redact"]

OPTION = "[coordination] backend_url"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?$")


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
        """Return query parameter ``name`` as a float > ``minimum``, else ``default``."""
        if name not in self.query:
            return default
        text = self.query[name]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value > minimum:
            raise ConfigError(f"{OPTION}: query parameter {name}={text!r} in "
                              f"{redact(self.raw)!r} must be a number > {minimum:g}")
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
    for host in hosts:
        if not _HOST.match(host):
            raise ConfigError(f"{OPTION}: invalid host {host!r} in {redact(text)!r}")
    try:
        pairs = urllib.parse.parse_qsl(query_text, keep_blank_values=True,
                                       strict_parsing=bool(query_text))
    except ValueError as exc:
        raise ConfigError(f"{OPTION}: malformed query in {redact(text)!r}: {exc}") from exc
    return BackendURL(scheme=scheme, hosts=hosts, path=path.rstrip("/") or "/",
                      query=dict(pairs), username=username, password=password, raw=text)
