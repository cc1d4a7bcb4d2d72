"""Devices: where to send SNMP requests, and with which credentials.

A resource is a device in one of two forms:

- a URL in Ceilometer's format, ``snmp://[USER[:AUTH_PASSWORD]@]HOST[:PORT][?...]``:
  no user part means the default profile; a user part alone is an SNMPv2c
  community (``snmp://public@h``); a password, ``auth_proto`` or
  ``priv_proto`` make it an SNMPv3 user (``?auth_proto=sha&priv_proto=aes128
  &priv_password=...``); ``?profile=NAME`` names a profile instead;
- a mapping (from a device file): ``{host, port, profile}``, or inline
  credentials with the keys of a profile.

The resource key (what partitioning hashes and logs show) never holds a
credential: ``snmp://HOST:PORT`` (see :data:`zkpoll.plugin.CREDENTIAL_SCHEMES`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from zkpoll.exceptions import ConfigError
from zkpoll.plugin import resource_key
from zkpoll_snmp.credentials import Credentials, parse_credentials

__all__ = ["DEFAULT_PORT", "Device", "parse_device"]

DEFAULT_PORT = 161
_URL_QUERY = frozenset({"auth_proto", "priv_proto", "priv_password", "profile"})
_MAPPING_KEYS = frozenset({"id", "host", "port", "profile", "version", "community", "user",
                           "auth_protocol", "auth_password", "priv_protocol", "priv_password"})


@dataclass(frozen=True)
class Device:
    """One SNMP agent: address, credentials, and the resource key it came with."""

    host: str
    port: int
    credentials: Credentials
    key: str

    @property
    def address(self) -> str:
        """``host:port`` as Net-SNMP takes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def resource_id(self) -> str:
        """Ceilometer's resource id: the host (``host:port`` off port 161)."""
        return self.host if self.port == DEFAULT_PORT else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.address} ({self.credentials.describe()})"


def parse_device(resource: Any, profiles: Mapping[str, Credentials],
                 default_profile: str) -> Device:
    """The :class:`Device` of a resource; ConfigError (no secret in it) when invalid."""
    if isinstance(resource, str):
        return _from_url(resource, profiles, default_profile)
    if isinstance(resource, Mapping):
        return _from_mapping(resource, profiles, default_profile)
    raise ConfigError(f"an SNMP device is an snmp:// URL or a mapping, not "
                      f"{type(resource).__name__}")


def _profile(name: str, profiles: Mapping[str, Credentials], where: str) -> Credentials:
    try:
        return profiles[name]
    except KeyError:
        raise ConfigError(f"{where}: unknown profile {name!r} (known: "
                          f"{', '.join(sorted(profiles))})") from None


def _from_url(url: str, profiles: Mapping[str, Credentials], default_profile: str) -> Device:
    key = resource_key(url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "snmp":
        raise ConfigError(f"{key}: not an snmp:// URL")
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"{key}: invalid port: {exc}") from None
    if not host:
        raise ConfigError(f"{key}: no host")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(query) - _URL_QUERY)
    if unknown:
        raise ConfigError(f"{key}: unknown query parameter(s) {', '.join(unknown)}; expected "
                          f"{', '.join(sorted(_URL_QUERY))}")
    user = unquote(parts.username) if parts.username else ""
    password = unquote(parts.password) if parts.password else ""
    if "profile" in query:
        if user or len(query) > 1:
            raise ConfigError(f"{key}: give either profile= or credentials in the URL")
        credentials = _profile(query["profile"], profiles, key)
    elif not user:
        if query:
            raise ConfigError(f"{key}: {', '.join(sorted(query))} need a user "
                              "(snmp://USER:AUTH_PASSWORD@HOST?...)")
        credentials = _profile(default_profile, profiles, key)
    elif not password and not query:
        credentials = Credentials("2c", community=user)
    else:  # Ceilometer's SNMPv3 form
        raw = {"version": "3", "user": user}
        if password or "auth_proto" in query:
            raw.update(auth_protocol=query.get("auth_proto", "sha"), auth_password=password)
        if "priv_proto" in query or "priv_password" in query:
            raw.update(priv_protocol=query.get("priv_proto", "aes128"),
                       priv_password=query.get("priv_password", ""))
        credentials = parse_credentials(raw, key)
    return Device(host, port, credentials, key)


def _from_mapping(raw: Mapping[str, Any], profiles: Mapping[str, Credentials],
                  default_profile: str) -> Device:
    host = raw.get("host")
    if not isinstance(host, str) or not host:
        raise ConfigError(f"device {raw.get('id', '?')!r}: needs a host (a string)")
    port = raw.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"device {host}: port must be 1-65535, not {port!r}")
    where = f"device {host}:{port}"
    unknown = sorted(set(raw) - _MAPPING_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    inline = {k: v for k, v in raw.items() if k not in ("id", "host", "port", "profile")}
    if inline and "profile" in raw:
        raise ConfigError(f"{where}: give either a profile or inline credentials")
    if inline:
        credentials = parse_credentials(inline, where)
    else:
        credentials = _profile(str(raw.get("profile", default_profile)), profiles, where)
    shown = f"[{host}]" if ":" in host else host
    return Device(host, port, credentials, str(raw.get("id") or f"snmp://{shown}:{port}"))
