"""Operator actions on a backend's stored groups: forget a retired, empty group.

A group whose agents were all retired stays listed (ZooKeeper keeps its
group node, Redis and Memcached its name in the group list), so
``zkpoll-status`` keeps reporting it.  :func:`forget_group` removes it,
only when it has no live member, and never a member's data.  Each backend
does it its own way (``Coordinator.forget_group``: ``zookeeper/admin.py``,
``kv/redis.py``, ``kv/memcached.py``), talking to its servers with its
client library directly; a member joining at the same moment makes it
refuse instead of deleting the newcomer.

Coordination records (``<root>/records/<kind>/<key>`` in ZooKeeper,
``<prefix>/records/...`` keys in Redis and Memcached; see docs/backends.md)
are not groups: they live outside ``<root>/groups`` and the group lists,
so listing groups never shows them and forgetting a group never touches
them (even a group named ``records``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zkpoll.coordination.loader import backend_class
from zkpoll.coordination.url import OPTION, BackendURL, redact
from zkpoll.exceptions import ConfigError, ZkpollError

__all__ = ["FORGET_ATTEMPTS", "GroupNotEmpty", "GroupNotFound", "forget_group", "not_empty"]

#: Compare-and-set attempts of a backend before it gives up ("kept changing").
FORGET_ATTEMPTS = 20


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
    unknown = ConfigError(f"{OPTION}: zkpoll-status forget does not know the {url.scheme!r} "
                          f"backend of {redact(url.raw)!r}")
    try:
        backend = backend_class(url)
    except ConfigError as exc:
        raise unknown from exc
    if not backend.forget_group(url, opts, group, timeout):
        raise unknown


def not_empty(group: str, member_ids: Iterable[str]) -> GroupNotEmpty:
    """The refusal to forget ``group``, naming its live members."""
    ids = sorted(member_ids)
    return GroupNotEmpty(f"group {group} has {len(ids)} live member(s): "
                         f"{', '.join(ids)}; stop them first (a group is "
                         "forgotten only when empty)")
