"""Read ``INFO`` from a Redis server, within a deadline and without retries."""

from __future__ import annotations

import re
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["connection_url", "display_id", "info", "replicas"]

_SCHEMES = ("redis://", "rediss://", "unix://")
_REPLICA = re.compile(r"slave\d+")


def connection_url(resource: str) -> str:
    """The redis-py URL of a resource: ``host:port`` or a redis(s)/unix URL.

    :raises ValueError: neither.
    """
    text = resource.strip()
    if text.lower().startswith(_SCHEMES):
        return text
    if "://" in text or not text:
        raise ValueError(f"expected host:port or a redis:// URL, not {resource!r}")
    return f"redis://{text}"


def display_id(resource: str) -> str:
    """``resource`` with any password replaced by ``***`` (a sample's resource id)."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", resource)


def info(resource: str, timeout: float, section: str | None = None) -> dict[str, Any]:
    """``INFO [section]`` of the server ``resource``, parsed by redis-py.

    One connection, no retry (redis-py retries 10 times by default), every
    socket operation bounded by ``timeout``.
    :raises redis.RedisError: unreachable, refused, too slow.
    """
    client = redis.Redis.from_url(connection_url(resource), socket_timeout=timeout,
                                  socket_connect_timeout=timeout,
                                  retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                  single_connection_client=True)
    try:
        return client.info(section) if section else client.info()
    finally:
        client.close()


def replicas(reading: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``slaveN`` entries of an ``INFO`` (``ip``, ``port``, ``state``, ``lag``...)."""
    return [value for key, value in sorted(reading.items())
            if _REPLICA.fullmatch(key) and isinstance(value, dict)]
