"""Forget a retired, empty group in ZooKeeper (``zkpoll-status forget``).

Delete ``<root>/groups/<g>/members``, then the claims records (they outlive
their members, docs/design.md section 3) and the handoff inboxes left by
crashed members, then ``<root>/groups/<g>``; the
deletes of ``members`` and of the group fail if a child exists, so a member
joining at the same moment makes it refuse instead of deleting the newcomer.
"""

from __future__ import annotations

from typing import Any

from kazoo.exceptions import KazooException, NoNodeError, NotEmptyError
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.coordination.admin import GroupNotFound, not_empty
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper._kazoo import explain, kazoo_client
from zkpoll.coordination.zookeeper._names import parse_member_name
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable

__all__ = ["forget_group"]


def forget_group(url: BackendURL, opts: Any, group: str, timeout: float) -> None:
    """Remove the empty ``group`` (see :func:`zkpoll.coordination.admin.forget_group`)."""
    root = url.path if url.path != "/" else "/zkpoll"
    path = f"{root}/groups/{group}"
    client = kazoo_client(url, opts, timeout)
    try:
        try:
            client.start(timeout=timeout)
            if client.exists(path) is None:
                raise GroupNotFound(f"no group {group} under {root}/groups")
            for child in ("members", "claims", "inbox", ""):
                target = f"{path}/{child}" if child else path
                try:
                    # claims records and inboxes outlive their members (docs/design.md, 3)
                    client.delete(target, recursive=child in ("claims", "inbox"))
                except NoNodeError:
                    continue
                except NotEmptyError as exc:
                    names = (client.get_children(f"{path}/members")
                             if client.exists(f"{path}/members") else client.get_children(path))
                    raise not_empty(group, [(parse_member_name(n) or (n,))[0]
                                            for n in names]) from exc
        except KazooTimeoutError as exc:
            raise CoordinatorUnreachable(f"ZooKeeper at {','.join(url.hosts)}: no answer "
                                         f"within {timeout:g}s") from exc
        except (KazooException, OSError) as exc:
            raise CoordinationError(explain(exc, ",".join(url.hosts), path)) from exc
    finally:
        client.stop()
        client.close()
