"""Operator actions on a backend's stored groups: forget a retired, empty group.

A group whose agents were all retired stays listed (ZooKeeper keeps its
group node, Redis and Memcached its name in the group list), so
``zkpoll-status`` keeps reporting it.  :func:`forget_group` removes it,
only when it has no live member, and never a member's data::

    ZooKeeper  delete <root>/groups/<g>/members, then <root>/groups/<g>; both
               deletes fail if a child exists, so a member joining at the same
               moment makes it refuse instead of deleting the newcomer
    Redis      under WATCH of the group's index: no live member key, then
               MULTI: delete the index, SREM the group from <prefix>/groups
    Memcached  no live member key; the index emptied by compare-and-swap,
               then the group dropped from <prefix>/groups by CAS; a member
               listed again afterwards puts it back and it refuses

These talk to the servers with the backends' client libraries directly
(the key and node layout is the backends' documented wire format).

Coordination records (``<root>/records/<kind>/<key>`` in ZooKeeper,
``<prefix>/records/...`` keys in Redis and Memcached; see docs/backends.md)
are not groups: they live outside ``<root>/groups`` and the group lists,
so listing groups never shows them and forgetting a group never touches
them (even a group named ``records``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import redis
from kazoo.exceptions import KazooException, NoNodeError, NotEmptyError
from kazoo.handlers.threading import KazooTimeoutError
from pymemcache.client.base import Client as MemcacheClient
from pymemcache.exceptions import MemcacheError
from redis.backoff import NoBackoff
from redis.retry import Retry

from zkpoll.coordination._kazoo import explain, kazoo_client
from zkpoll.coordination._names import parse_member_name
from zkpoll.coordination._store import host_port
from zkpoll.coordination.url import OPTION, BackendURL, redact
from zkpoll.exceptions import (
    ConfigError,
    CoordinationError,
    CoordinatorUnreachable,
    ZkpollError,
)

__all__ = ["GroupNotEmpty", "GroupNotFound", "forget_group"]

_ATTEMPTS = 20


class GroupNotEmpty(ZkpollError):
    """The group still has live members: nothing was removed."""


class GroupNotFound(ZkpollError):
    """The backend lists no such group."""


def forget_group(url: BackendURL, opts: Any, group: str, timeout: float) -> None:
    """Remove the empty ``group`` from the backend at ``url``.

    :raises GroupNotEmpty: it has live members (their ids are named).
    :raises GroupNotFound: there is no such group.
    :raises CoordinatorUnreachable: the backend did not answer in ``timeout``.
    :raises CoordinationError: it answered with an error (access denied...).
    :raises ConfigError: a backend zkpoll cannot administer.
    """
    if not group or "/" in group:
        raise ConfigError(f"forget: invalid group name {group!r}")
    scheme = url.scheme
    if scheme in ("zookeeper", "kazoo"):
        _forget_zookeeper(url, opts, group, timeout)
    elif scheme == "redis":
        _forget_redis(url, group, timeout)
    elif scheme == "memcached":
        _forget_memcached(url, group, timeout)
    else:
        raise ConfigError(f"{OPTION}: zkpoll-status forget does not know the {scheme!r} "
                          f"backend of {redact(url.raw)!r}")


def _not_empty(group: str, members: list[str]) -> GroupNotEmpty:
    ids = sorted((parse_member_name(m) or (m,))[0] for m in members)  # ZooKeeper names
    return GroupNotEmpty(f"group {group} has {len(ids)} live member(s): "
                         f"{', '.join(ids)}; stop them first (a group is "
                         "forgotten only when empty)")


# --- ZooKeeper ----------------------------------------------------------------
def _forget_zookeeper(url: BackendURL, opts: Any, group: str, timeout: float) -> None:
    root = url.path if url.path != "/" else "/zkpoll"
    path = f"{root}/groups/{group}"
    client = kazoo_client(url, opts, timeout)
    try:
        try:
            client.start(timeout=timeout)
            if client.exists(path) is None:
                raise GroupNotFound(f"no group {group} under {root}/groups")
            for child in ("members", "claims", ""):
                target = f"{path}/{child}" if child else path
                try:
                    # claims records outlive their members (docs/design.md, 3)
                    client.delete(target, recursive=child == "claims")
                except NoNodeError:
                    continue
                except NotEmptyError as exc:
                    raise _not_empty(group, client.get_children(f"{path}/members")
                                     if client.exists(f"{path}/members") else
                                     client.get_children(path)) from exc
        except KazooTimeoutError as exc:
            raise CoordinatorUnreachable(f"ZooKeeper at {','.join(url.hosts)}: no answer "
                                         f"within {timeout:g}s") from exc
        except (KazooException, OSError) as exc:
            raise CoordinationError(explain(exc, ",".join(url.hosts), path)) from exc
    finally:
        client.stop()
        client.close()


# --- Redis --------------------------------------------------------------------
def _forget_redis(url: BackendURL, group: str, timeout: float) -> None:
    host, port = host_port(url, 6379)
    segments = [s for s in url.path.split("/") if s]
    db = int(segments.pop(0)) if segments and segments[0].isdigit() else 0
    db = int(url.query["db"]) if url.query.get("db", "").isdigit() else db
    prefix = "/".join(segments) or "zkpoll"
    index = f"{prefix}/groups/{group}/index"
    client = redis.Redis(host=host, port=port, db=db, username=url.username,
                         password=url.password, socket_timeout=timeout,
                         socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    try:
        if not client.sismember(f"{prefix}/groups", group):
            raise GroupNotFound(f"no group {group} in {prefix}/groups")
        for _ in range(_ATTEMPTS):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(index)
                    ids = sorted(m.decode() for m in pipe.smembers(index))
                    values = pipe.mget([f"{prefix}/groups/{group}/members/{i}" for i in ids]) \
                        if ids else []
                    live = [i for i, value in zip(ids, values) if value is not None]
                    if live:
                        raise _not_empty(group, live)
                    pipe.multi()
                    pipe.delete(index)
                    pipe.srem(f"{prefix}/groups", group)
                    pipe.publish(f"{prefix}/changes", group)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise GroupNotEmpty(f"group {group} kept changing; try again")
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise CoordinatorUnreachable(f"Redis at {host}:{port}: {exc}") from exc
    except redis.RedisError as exc:  # e.g. a wrong password
        raise CoordinationError(f"Redis at {host}:{port}: {type(exc).__name__}: {exc}") \
            from exc
    finally:
        client.close()


# --- Memcached ----------------------------------------------------------------
def _ids(raw: bytes | None) -> set[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return set()
    return {str(v) for v in value} if isinstance(value, list) else set()


def _forget_memcached(url: BackendURL, group: str, timeout: float) -> None:
    host, port = host_port(url, 11211)
    prefix = quote(url.path.strip("/"), safe="/") or "zkpoll"
    groups_key = f"{prefix}/groups"
    index = f"{prefix}/groups/{quote(group, safe='')}/index"

    def member_key(member_id: str) -> str:
        return f"{prefix}/groups/{quote(group, safe='')}/members/{quote(member_id, safe='')}"

    client = MemcacheClient((host, port), connect_timeout=timeout, timeout=timeout,
                    default_noreply=False)
    try:
        if group not in _ids(client.get(groups_key)):
            raise GroupNotFound(f"no group {group} in {groups_key}")
        for _ in range(_ATTEMPTS):
            raw, token = client.gets(index)
            ids = sorted(_ids(raw))
            found = client.get_many([member_key(i) for i in ids]) if ids else {}
            live = [i for i in ids if found.get(member_key(i)) is not None]
            if live:
                raise _not_empty(group, live)
            if raw is None or client.cas(index, b"[]", token, expire=0):
                break
        else:
            raise GroupNotEmpty(f"group {group} kept changing; try again")
        for _ in range(_ATTEMPTS):
            raw, token = client.gets(groups_key)
            names = _ids(raw)
            if group not in names:
                break
            payload = json.dumps(sorted(names - {group})).encode()
            if client.cas(groups_key, payload, token, expire=0):
                break
        else:
            raise GroupNotEmpty(f"{groups_key} kept changing; try again")
        joined = sorted(_ids(client.get(index)))
        if joined:  # a member registered meanwhile: list the group again
            for _ in range(_ATTEMPTS):
                raw, token = client.gets(groups_key)
                payload = json.dumps(sorted(_ids(raw) | {group})).encode()
                if (client.add(groups_key, payload, expire=0) if raw is None
                        else client.cas(groups_key, payload, token, expire=0)):
                    break
            raise _not_empty(group, joined)
    except (MemcacheError, OSError) as exc:
        raise CoordinatorUnreachable(f"Memcached at {host}:{port}: {type(exc).__name__}: "
                                     f"{exc}") from exc
    finally:
        client.close()
