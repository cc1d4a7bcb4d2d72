"""Build the coordinator named by ``[coordination] backend_url``.

Backends are stevedore plugins in the ``zkpoll.coordination.backends``
namespace, one per URL scheme.  No ``backend_url`` means standalone.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

import stevedore
from oslo_config import cfg

from zkpoll.coordination.base import Coordinator
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.coordination.url import OPTION, BackendURL, parse_backend_url, redact
from zkpoll.exceptions import ConfigError

__all__ = ["GROUP", "OPTS", "backend_class", "get_coordinator", "make_member_id",
           "register_opts"]

LOG = logging.getLogger(__name__)
GROUP = "coordination"
NAMESPACE = "zkpoll.coordination.backends"

OPTS = [
    cfg.StrOpt("backend_url", secret=True,
               help="URL of the coordination backend, for example "
                    "zookeeper://zk1:2181,zk2:2181,zk3:2181/zkpoll?timeout=10, "
                    "redis://:password@host:6379/0/zkpoll?timeout=10 or "
                    "memcached://host:11211/zkpoll?timeout=10. The path is the "
                    "root of zkpoll's tree or key prefix (default zkpoll; for "
                    "Redis a leading number is the database). Unset: "
                    "standalone, this agent owns every resource, and only one "
                    "agent may run with this configuration."),
    cfg.FloatOpt("session_timeout", default=10.0, min=0.4,
                 help="Seconds without contact after which the backend "
                      "declares this agent dead and others take over its "
                      "work. ZooKeeper bounds it to 2-20 server ticks; the "
                      "negotiated value is used. For Redis and Memcached it "
                      "is the TTL of the member keys (Memcached: rounded up "
                      "to whole seconds, plus 1) and must be greater than "
                      "heartbeat_interval. A 'timeout' query parameter in "
                      "backend_url overrides this option."),
    cfg.FloatOpt("heartbeat_interval", default=1.0, min=0.05,
                 help="Seconds between the agent's heartbeats. Each answered "
                      "heartbeat renews the agent's lease; for Redis and "
                      "Memcached it also renews the TTL of the member keys and "
                      "re-lists the watched groups. Must be well below "
                      "session_timeout (Redis and Memcached refuse to start "
                      "otherwise). A 'heartbeat' query parameter in "
                      "backend_url overrides this option."),
    cfg.FloatOpt("retry_backoff", default=0.5, min=0.01,
                 help="First delay in seconds before reconnecting to the "
                      "backend; doubled on every failed attempt."),
    cfg.FloatOpt("max_retry_interval", default=30.0, min=0.1,
                 help="Upper bound in seconds of the reconnection delay."),
    cfg.StrOpt("member_name",
               help="Prefix of this agent's member id (default: the host "
                    "name). A random suffix is added for every session, so "
                    "two agents on one host never collide."),
    cfg.BoolOpt("zookeeper_use_ssl", default=False,
                help="Connect to ZooKeeper with TLS."),
    cfg.StrOpt("zookeeper_ca", help="CA bundle that signs the ZooKeeper servers' certificates."),
    cfg.StrOpt("zookeeper_certfile", help="Client certificate for ZooKeeper TLS."),
    cfg.StrOpt("zookeeper_keyfile", help="Private key of the client certificate."),
    cfg.StrOpt("zookeeper_keyfile_password", secret=True,
               help="Password of the client private key, if encrypted."),
    cfg.BoolOpt("zookeeper_verify_certs", default=True,
                help="Verify the ZooKeeper servers' certificates."),
    cfg.BoolOpt("zookeeper_check_hostname", default=True,
                help="Check that a ZooKeeper server certificate matches its "
                     "host name (kazoo's default is off; zkpoll turns it on)."),
    cfg.StrOpt("zookeeper_sasl_mechanism", choices=["DIGEST-MD5", "GSSAPI"],
               help="SASL mechanism to authenticate to ZooKeeper; unset: none."),
    cfg.StrOpt("zookeeper_username", help="SASL user name (DIGEST-MD5)."),
    cfg.StrOpt("zookeeper_password", secret=True, help="SASL password (DIGEST-MD5)."),
    cfg.StrOpt("zookeeper_digest_auth", secret=True,
               help="'user:password' for ZooKeeper digest authentication. "
                    "When set, the znodes zkpoll creates are readable and "
                    "writable by that user only."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[coordination]`` options on ``conf`` (idempotent)."""
    conf.register_opts(OPTS, group=GROUP)


def make_member_id(name: str | None = None) -> str:
    """Return a fresh member id: ``<name or host>.<pid>.<random>``."""
    base = (name or socket.gethostname() or "zkpoll").replace("/", "_")
    return f"{base}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def get_coordinator(conf: cfg.ConfigOpts, member_id: str | None = None) -> Coordinator:
    """Create (not start) the coordinator configured in ``conf``.

    :raises ConfigError: malformed URL, unknown scheme or a bad parameter,
        with a message naming ``[coordination] backend_url``.
    """
    register_opts(conf)
    opts = conf[GROUP]
    member_id = member_id or make_member_id(opts.member_name)
    if not opts.backend_url:
        return StandaloneCoordinator(member_id)
    try:
        url = parse_backend_url(opts.backend_url)
        backend: Any = backend_class(url)
        return backend(url, opts, member_id)
    except ConfigError as exc:
        if not str(exc).startswith(OPTION):
            raise
        raise ConfigError(f"{exc}{_origin(conf)}") from exc


def backend_class(url: BackendURL) -> type[Coordinator]:
    """The coordinator class of ``url``'s scheme (a stevedore plugin, not loaded twice).

    :raises ConfigError: no backend has this scheme.
    """
    try:
        manager = stevedore.DriverManager(NAMESPACE, url.scheme, invoke_on_load=False)
    except stevedore.exception.NoMatches as exc:
        available = sorted(stevedore.ExtensionManager(NAMESPACE).names())
        raise ConfigError(f"{OPTION}: unknown scheme {url.scheme!r} in "
                          f"{redact(url.raw)!r}; available: {', '.join(available)}") from exc
    backend: type[Coordinator] = manager.driver
    return backend


def _origin(conf: cfg.ConfigOpts) -> str:
    """`` (in FILE)`` or `` (from $VAR)``: where backend_url was set, when oslo.config knows."""
    try:
        location = conf.get_location("backend_url", GROUP)
    except (cfg.Error, AttributeError, KeyError):
        return ""
    if location is None or not location.detail:
        return ""
    if location.location is cfg.Locations.environment:
        return f" (from ${location.detail})"
    return f" (in {location.detail})" if location.location is cfg.Locations.user else ""
