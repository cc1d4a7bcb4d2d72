"""A source's ``scrape:`` settings: a Prometheus ``scrape_config``, checked.

A polling YAML source that scrapes Prometheus targets carries the keys of
a Prometheus ``scrape_config`` under ``scrape:`` (the job name is the
source's name)::

    sources:
      - name: node
        interval: 15
        meters: [prometheus.scrape]
        scrape:
          static_configs: [{targets: ["10.0.0.1:9100"], labels: {env: prod}}]
          file_sd_configs: [{files: [/etc/zkpoll/sd/node.json]}]
          http_sd_configs: [{url: "http://sd.example:8080/targets", refresh_interval: 1m}]
          relabel_configs: [...]
          metric_relabel_configs: [...]
          scrape_timeout: 10s
          sample_limit: 50000
          body_size_limit: 10MB
          basic_auth: {username: prom, password_file: /etc/zkpoll/prom.pass}
          tls_config: {ca_file: /etc/ssl/ca.pem, server_name: node.example}

:func:`parse_scrape` turns the mapping into a :class:`ScrapeConfig` or
raises :class:`~zkpoll.exceptions.ConfigError` naming the key.  Secrets
read from files (``password_file``, ``credentials_file``) are read here,
at load; a :class:`ScrapeConfig` never shows them (``repr``).
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zkpoll.exceptions import ConfigError
from zkpoll.scrape.targets import JobConfig, TargetGroup, parse_duration

__all__ = ["ClientSettings", "FileSD", "HttpSD", "ScrapeConfig", "TLSSettings", "parse_scrape"]

_SD_KEYS = ("static_configs", "file_sd_configs", "http_sd_configs")
_CLIENT_KEYS = ("scrape_timeout", "sample_limit", "body_size_limit", "basic_auth",
                "authorization", "bearer_token", "bearer_token_file", "tls_config")
_JOB_ONLY = ("scheme", "metrics_path", "params", "relabel_configs", "metric_relabel_configs",
             "honor_labels", "scrape_interval")
_SIZE = re.compile(r"^(\d+)(B|KB|MB|GB|KiB|MiB|GiB)?$")
_SIZES = {None: 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30,
          "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


@dataclass(frozen=True)
class TLSSettings:
    """``tls_config``: CA, client certificate and key, server name."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False

    def context(self) -> ssl.SSLContext:
        """An SSL context for these settings (raises ConfigError on unreadable files)."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"tls_config: {exc}") from None
        if self.insecure_skip_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True)
class ClientSettings:
    """How to fetch: timeout, limits, credentials, TLS (secrets never in ``repr``)."""

    timeout: float | None = None                 #: seconds; None: the polling timeout
    sample_limit: int = 0                        #: 0: no limit
    body_size_limit: int = 0                     #: bytes after decompression; 0: no limit
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    tls: TLSSettings | None = None

    def headers(self) -> dict[str, str]:
        """The Authorization header, if any."""
        if self.basic_auth is not None:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token}"}
        return {}


@dataclass(frozen=True)
class FileSD:
    """``file_sd_configs`` entry: files (globs allowed), re-read on change."""

    files: tuple[str, ...]
    refresh_interval: float = 300.0


@dataclass(frozen=True)
class HttpSD:
    """``http_sd_configs`` entry."""

    url: str
    refresh_interval: float = 60.0
    client: ClientSettings = field(default_factory=ClientSettings)


@dataclass(frozen=True)
class ScrapeConfig:
    """Everything a source's ``scrape:`` says."""

    job: JobConfig
    client: ClientSettings = field(default_factory=ClientSettings)
    static_configs: tuple[TargetGroup, ...] = ()
    file_sd: tuple[FileSD, ...] = ()
    http_sd: tuple[HttpSD, ...] = ()


def _read_secret(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: expected a file path")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None


def _mapping(raw: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (expected "
                          f"{', '.join(keys)})")
    return raw


def _duration(raw: Any, where: str) -> float:
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected a duration like 10s or 1m")
    try:
        value = parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if value <= 0:
        raise ConfigError(f"{where}: must be more than 0")
    return value


def _size(raw: Any, where: str) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    match = _SIZE.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ConfigError(f"{where}: expected a size like 10MB (B, KB, MB, GB), got {raw!r}")
    return int(match.group(1)) * _SIZES[match.group(2)]


def _client(raw: Mapping[str, Any], where: str) -> ClientSettings:
    kw: dict[str, Any] = {}
    if raw.get("scrape_timeout") is not None:
        kw["timeout"] = _duration(raw["scrape_timeout"], f"{where}: scrape_timeout")
    if raw.get("sample_limit") is not None:
        limit = raw["sample_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"{where}: sample_limit: expected a whole number >= 0")
        kw["sample_limit"] = limit
    if raw.get("body_size_limit") is not None:
        kw["body_size_limit"] = _size(raw["body_size_limit"], f"{where}: body_size_limit")
    auth = raw.get("basic_auth")
    if auth is not None:
        auth = _mapping(auth, f"{where}: basic_auth", ("username", "password", "password_file"))
        user = auth.get("username")
        if not isinstance(user, str) or not user:
            raise ConfigError(f"{where}: basic_auth: username is required")
        if "password" in auth and "password_file" in auth:
            raise ConfigError(f"{where}: basic_auth: give password or password_file, not both")
        password = _read_secret(auth["password_file"], f"{where}: basic_auth: password_file") \
            if "password_file" in auth else auth.get("password", "")
        if not isinstance(password, str):
            raise ConfigError(f"{where}: basic_auth: password must be a string")
        kw["basic_auth"] = (user, password)
    bearer = _bearer(raw, where)
    if bearer is not None:
        if "basic_auth" in kw:
            raise ConfigError(f"{where}: give basic_auth or authorization, not both")
        kw["bearer_token"] = bearer
    if raw.get("tls_config") is not None:
        tls = _mapping(raw["tls_config"], f"{where}: tls_config",
                       ("ca_file", "cert_file", "key_file", "server_name",
                        "insecure_skip_verify"))
        for key in ("ca_file", "cert_file", "key_file", "server_name"):
            if tls.get(key) is not None and not isinstance(tls[key], str):
                raise ConfigError(f"{where}: tls_config: {key}: expected a string")
        if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
            raise ConfigError(f"{where}: tls_config: cert_file and key_file go together")
        skip = tls.get("insecure_skip_verify", False)
        if not isinstance(skip, bool):
            raise ConfigError(f"{where}: tls_config: insecure_skip_verify: true or false")
        settings = TLSSettings(tls.get("ca_file"), tls.get("cert_file"), tls.get("key_file"),
                               tls.get("server_name"), skip)
        settings.context()  # the files must load now, not at the first scrape
        kw["tls"] = settings
    return ClientSettings(**kw)


def _bearer(raw: Mapping[str, Any], where: str) -> str | None:
    given = [k for k in ("authorization", "bearer_token", "bearer_token_file") if k in raw]
    if len(given) > 1:
        raise ConfigError(f"{where}: give one of {', '.join(given)}")
    if "bearer_token" in raw:
        if not isinstance(raw["bearer_token"], str):
            raise ConfigError(f"{where}: bearer_token: expected a string")
        return raw["bearer_token"]
    if "bearer_token_file" in raw:
        return _read_secret(raw["bearer_token_file"], f"{where}: bearer_token_file")
    if "authorization" in raw:
        auth = _mapping(raw["authorization"], f"{where}: authorization",
                        ("type", "credentials", "credentials_file"))
        if auth.get("type", "Bearer") != "Bearer":
            raise ConfigError(f"{where}: authorization: type: only Bearer is supported")
        if "credentials_file" in auth:
            return _read_secret(auth["credentials_file"],
                                f"{where}: authorization: credentials_file")
        token = auth.get("credentials")
        if not isinstance(token, str) or not token:
            raise ConfigError(f"{where}: authorization: credentials (or credentials_file) "
                              "is required")
        return token
    return None


def _static(raw: Any, where: str) -> tuple[TargetGroup, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {{targets, labels}}")
    groups = []
    for i, entry in enumerate(raw):
        entry = _mapping(entry, f"{where}[{i}]", ("targets", "labels"))
        targets = entry.get("targets") or []
        labels = entry.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ConfigError(f"{where}[{i}]: targets: expected a list of host:port strings")
        if not isinstance(labels, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ConfigError(f"{where}[{i}]: labels: expected a mapping of strings")
        groups.append(TargetGroup(tuple(targets), dict(labels), f"static_configs[{i}]"))
    return tuple(groups)


def _file_sd(raw: Any, where: str) -> tuple[FileSD, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {{files, refresh_interval}}")
    out = []
    for i, entry in enumerate(raw):
        entry = _mapping(entry, f"{where}[{i}]", ("files", "refresh_interval"))
        files = entry.get("files")
        if not isinstance(files, list) or not files or not all(
                isinstance(f, str) and f for f in files):
            raise ConfigError(f"{where}[{i}]: files: expected a list of paths (globs allowed)")
        for path in files:
            if not path.endswith((".json", ".yml", ".yaml")):
                raise ConfigError(f"{where}[{i}]: files: {path}: must end in .json, .yml or "
                                  ".yaml")
        refresh = _duration(entry["refresh_interval"], f"{where}[{i}]: refresh_interval") \
            if "refresh_interval" in entry else 300.0
        out.append(FileSD(tuple(files), refresh))
    return tuple(out)


def _http_sd(raw: Any, where: str) -> tuple[HttpSD, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of {{url, refresh_interval, ...}}")
    out = []
    for i, entry in enumerate(raw):
        here = f"{where}[{i}]"
        entry = _mapping(entry, here, ("url", "refresh_interval", "scrape_timeout", *(
            k for k in _CLIENT_KEYS if k not in ("sample_limit", "body_size_limit",
                                                 "scrape_timeout"))))
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{here}: url: expected an http:// or https:// URL")
        refresh = _duration(entry["refresh_interval"], f"{here}: refresh_interval") \
            if "refresh_interval" in entry else 60.0
        out.append(HttpSD(url, refresh, _client(entry, here)))
    return tuple(out)


def parse_scrape(raw: Any, job_name: str, where: str = "scrape") -> ScrapeConfig:
    """Check a source's ``scrape:`` mapping; ConfigError naming the key at fault."""
    raw = _mapping(raw, where, (*_SD_KEYS, *_CLIENT_KEYS, *_JOB_ONLY))
    job = JobConfig.from_mapping({"job_name": job_name,
                                  **{k: raw[k] for k in _JOB_ONLY if k in raw}}, where)
    client = _client(raw, where)
    if client.timeout is not None and job.scrape_interval is not None \
            and client.timeout > parse_duration(job.scrape_interval):
        raise ConfigError(f"{where}: scrape_timeout is longer than scrape_interval")
    return ScrapeConfig(
        job=job, client=client,
        static_configs=_static(raw["static_configs"], f"{where}: static_configs")
        if "static_configs" in raw else (),
        file_sd=_file_sd(raw["file_sd_configs"], f"{where}: file_sd_configs")
        if "file_sd_configs" in raw else (),
        http_sd=_http_sd(raw["http_sd_configs"], f"{where}: http_sd_configs")
        if "http_sd_configs" in raw else ())
