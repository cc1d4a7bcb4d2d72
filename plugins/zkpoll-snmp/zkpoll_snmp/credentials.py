"""SNMP credentials (v2c communities, v3 USM users) and named profiles.

A :class:`Credentials` never shows its secrets: ``repr``/``str`` give
:meth:`Credentials.describe` (``v2c community ***``, ``v3 user monitor
authPriv SHA/AES``), so a log line or ``zkpoll-status`` cannot leak them.
Profiles come from ``[snmp] profiles_file`` (YAML or JSON); a bad file is
a :class:`~zkpoll.exceptions.ConfigError` naming the file, the line when
known, the profile and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zkpoll.exceptions import ConfigError
from zkpoll.yaml_lines import key_lines, read_yaml, value_node

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "PUBLIC", "Credentials", "load_profiles",
           "parse_credentials"]

#: Accepted authentication protocols (lower case, as Ceilometer's URLs spell
#: them too) -> Net-SNMP's name.
AUTH_PROTOCOLS: Mapping[str, str] = {
    "md5": "MD5", "sha": "SHA", "sha1": "SHA", "sha224": "SHA-224", "sha-224": "SHA-224",
    "sha256": "SHA-256", "sha-256": "SHA-256", "sha384": "SHA-384", "sha-384": "SHA-384",
    "sha512": "SHA-512", "sha-512": "SHA-512"}
#: Accepted privacy protocols -> Net-SNMP's name.
PRIV_PROTOCOLS: Mapping[str, str] = {
    "des": "DES", "aes": "AES", "aes128": "AES", "aes-128": "AES", "aes192": "AES-192",
    "aes-192": "AES-192", "aes256": "AES-256", "aes-256": "AES-256"}
_KEYS = frozenset({"version", "community", "user", "auth_protocol", "auth_password",
                   "priv_protocol", "priv_password"})


@dataclass(frozen=True)
class Credentials:
    """How to talk to a device: SNMPv2c with a community, or SNMPv3 USM."""

    version: str = "2c"              #: "2c" or "3"
    community: str = ""
    user: str = ""
    auth_protocol: str = ""          #: Net-SNMP name ("SHA", "SHA-256", ...) or ""
    auth_password: str = ""
    priv_protocol: str = ""          #: Net-SNMP name ("AES", ...) or ""
    priv_password: str = ""

    @property
    def security_level(self) -> str:
        """``authPriv``, ``authNoPriv`` or ``noAuthNoPriv`` (SNMPv3 only)."""
        if self.priv_protocol:
            return "authPriv"
        return "authNoPriv" if self.auth_protocol else "noAuthNoPriv"

    def describe(self) -> str:
        """A description without any secret."""
        if self.version == "2c":
            return "v2c community ***"
        protocols = "/".join(p for p in (self.auth_protocol, self.priv_protocol) if p)
        return f"v3 user {self.user} {self.security_level}" + (f" {protocols}" if protocols
                                                               else "")

    __str__ = describe

    def __repr__(self) -> str:
        return f"<Credentials {self.describe()}>"

    def session_options(self) -> dict[str, Any]:
        """Keyword arguments of an ``ezsnmp.Session`` for these credentials."""
        if self.version == "2c":
            return {"version": 2, "community": self.community}
        options: dict[str, Any] = {"version": 3, "security_username": self.user,
                                   "security_level": self.security_level}
        if self.auth_protocol:
            options.update(auth_protocol=self.auth_protocol, auth_passphrase=self.auth_password)
        if self.priv_protocol:
            options.update(privacy_protocol=self.priv_protocol,
                           privacy_passphrase=self.priv_password)
        return options


#: Ceilometer's default: SNMPv2c, community ``public``.
PUBLIC = Credentials("2c", community="public")


def parse_credentials(raw: Mapping[str, Any], where: str) -> Credentials:
    """Build credentials from a profile mapping; ``where`` prefixes errors."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; "
                          f"expected {', '.join(sorted(_KEYS))}")
    for key, value in raw.items():
        if key != "version" and not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, not {type(value).__name__}")
    version = str(raw.get("version", "3" if "user" in raw else "2c")).lower().lstrip("v")
    if version in ("2", "2c"):
        if not raw.get("community"):
            raise ConfigError(f"{where}: an SNMPv2c profile needs a community")
        extra = sorted(set(raw) & (_KEYS - {"version", "community"}))
        if extra:
            raise ConfigError(f"{where}: {', '.join(extra)} belong to SNMPv3 (version: 3)")
        return Credentials("2c", community=raw["community"])
    if version != "3":
        raise ConfigError(f"{where}: version must be 2c or 3, not {raw.get('version')!r} "
                          "(SNMPv1 is not supported)")
    if not raw.get("user"):
        raise ConfigError(f"{where}: an SNMPv3 profile needs a user")
    if raw.get("community"):
        raise ConfigError(f"{where}: community belongs to SNMPv2c (version: 2c)")
    auth = _protocol(raw, "auth", AUTH_PROTOCOLS, where)
    priv = _protocol(raw, "priv", PRIV_PROTOCOLS, where)
    if priv and not auth:
        raise ConfigError(f"{where}: priv_protocol needs auth_protocol too (USM has no "
                          "privacy without authentication)")
    return Credentials("3", user=raw["user"], auth_protocol=auth,
                       auth_password=raw.get("auth_password", ""), priv_protocol=priv,
                       priv_password=raw.get("priv_password", ""))


def _protocol(raw: Mapping[str, Any], kind: str, names: Mapping[str, str], where: str) -> str:
    given = raw.get(f"{kind}_protocol", "")
    password = raw.get(f"{kind}_password", "")
    if not given:
        if password:
            raise ConfigError(f"{where}: {kind}_password given without {kind}_protocol")
        return ""
    protocol = names.get(given.lower())
    if protocol is None:
        raise ConfigError(f"{where}: {kind}_protocol {given!r} is not one of "
                          f"{', '.join(sorted(names))}")
    if len(password) < 8:
        raise ConfigError(f"{where}: {kind}_password must have at least 8 characters "
                          "(RFC 3414)")
    return protocol


def load_profiles(path: str | None) -> dict[str, Credentials]:
    """The profiles of ``path`` plus the built-in ``public``; ConfigError when bad."""
    profiles = {"public": PUBLIC}
    if not path:
        return profiles

    def error(reason: str, line: int | None) -> ConfigError:
        return ConfigError(f"{path}{f':{line}' if line else ''}: {reason}")

    root, data = read_yaml(path, error)
    if data is None:
        return profiles
    if not isinstance(data, Mapping):
        raise error(f"expected a mapping of profile name to credentials, not "
                    f"{type(data).__name__}", None)
    lines = key_lines(root)
    for name, raw in data.items():
        line = lines.get(str(name))
        if not isinstance(raw, Mapping):
            raise error(f"profile {name!r}: expected a mapping, not {type(raw).__name__}", line)
        inner = key_lines(value_node(root, str(name)))
        try:
            profiles[str(name)] = parse_credentials(raw, f"profile {name!r}")
        except ConfigError as exc:
            bad = next((inner[k] for k in inner if f" {k}" in str(exc)), line)
            raise error(str(exc), bad) from None
    return profiles
