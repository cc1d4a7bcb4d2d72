"""A kazoo client built from ``[coordination]`` options, and its refusals explained.

Credentials and TLS files are checked here, before any connection, so that
a mistake is a start-up error naming the option rather than a retry loop.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    NoAuthError,
    NodeExistsError,
    SessionClosedRequireSaslError,
)
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper._kazoo_handler import make_handler
from zkpoll.exceptions import ConfigError

__all__ = ["explain", "kazoo_client"]


def kazoo_client(url: BackendURL, opts: Any, timeout: float) -> KazooClient:
    """A kazoo client for ``url`` with the TLS, SASL and digest options of ``opts``.

    Connections are retried for ever with backoff; commands are not retried
    (the coordinator's worker decides). :raises ConfigError: a bad option.
    """
    kwargs: dict[str, Any] = {}
    if opts.zookeeper_use_ssl or url.query.get("ssl", "").lower() in ("1", "true", "yes"):
        for name in ("zookeeper_ca", "zookeeper_certfile", "zookeeper_keyfile"):
            _check_readable(name, getattr(opts, name))
        kwargs.update(use_ssl=True, ca=opts.zookeeper_ca, certfile=opts.zookeeper_certfile,
                      keyfile=opts.zookeeper_keyfile,
                      keyfile_password=opts.zookeeper_keyfile_password,
                      verify_certs=opts.zookeeper_verify_certs,
                      check_hostname=opts.zookeeper_check_hostname)
    if opts.zookeeper_sasl_mechanism:
        _check_sasl(opts)
        kwargs["sasl_options"] = {"mechanism": opts.zookeeper_sasl_mechanism,
                                  "username": opts.zookeeper_username,
                                  "password": opts.zookeeper_password}
    if opts.zookeeper_digest_auth:
        user, colon, password = opts.zookeeper_digest_auth.partition(":")
        if not (user and colon):
            raise ConfigError("[coordination] zookeeper_digest_auth: expected "
                              "'user:password' (the value is not shown)")
        kwargs["auth_data"] = [("digest", opts.zookeeper_digest_auth)]
        kwargs["default_acl"] = [make_digest_acl(user, password, all=True)]
    retry = KazooRetry(max_tries=-1, delay=opts.retry_backoff, backoff=2,
                       max_delay=opts.max_retry_interval, ignore_expire=False)
    return KazooClient(hosts=",".join(url.hosts), timeout=timeout, read_only=False,
                       connection_retry=retry, command_retry=None, handler=make_handler(),
                       **kwargs)


def _check_readable(option: str, path: str | None) -> None:
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"[coordination] {option}: cannot read {path!r}")


def _check_sasl(opts: Any) -> None:
    mechanism = opts.zookeeper_sasl_mechanism
    if importlib.util.find_spec("puresasl") is None:  # kazoo imports it only for SASL
        raise ConfigError(f"[coordination] zookeeper_sasl_mechanism = {mechanism} needs the "
                          "pure-sasl package: pip install 'zkpoll[sasl]'")
    if mechanism == "DIGEST-MD5" and not (opts.zookeeper_username and opts.zookeeper_password):
        raise ConfigError("[coordination] zookeeper_sasl_mechanism = DIGEST-MD5 needs "
                          "zookeeper_username and zookeeper_password")


def explain(exc: BaseException, hosts: str, path: str) -> str:
    """What a failed ZooKeeper call on ``path`` means, for the operator."""
    if isinstance(exc, NoAuthError):
        return (f"ZooKeeper at {hosts} refused access to {path} (NoAuth): its ACL "
                "does not admit this agent's credentials; check [coordination] "
                "zookeeper_digest_auth (or the SASL options) against the ACL of the "
                "nodes under the backend_url path")
    if isinstance(exc, (AuthFailedError, SessionClosedRequireSaslError)):
        return (f"ZooKeeper at {hosts} rejected this agent's authentication "
                f"({type(exc).__name__}); check [coordination] zookeeper_sasl_mechanism, "
                "zookeeper_username and zookeeper_password against the server's "
                "authentication settings")
    if isinstance(exc, NodeExistsError):
        return (f"{path} still belongs to an older session; waiting until ZooKeeper "
                "expires it")
    return f"ZooKeeper at {hosts}: {exc!r}"
