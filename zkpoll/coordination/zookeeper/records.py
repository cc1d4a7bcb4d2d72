"""Coordination records in ZooKeeper: ``<root>/records/<kind>/<key>``, persistent.

A record's version is its znode's data version (0 when created).  Each
write is one multi-op transaction::

    check(<root>/groups/<fence group>/members/<our member znode>, any version)
    set_data(record, value, version)      or      create(record, value)

so it commits only while this member's EPHEMERAL member znode exists, that
is while its session lives and it is registered in the fence group (member
ids are fresh per session, and the znode vanishes with the session).  The
znode's name changes when member data is republished (see ``_names``): the
writes whose check lost to such a rename are retried with the new name, as
long as the name keeps changing (it is still this member's) and time is left.

Threading: every call runs in the caller's thread with kazoo's async API
(kazoo is thread-safe for requests), pipelined on the one connection and
bounded by the caller's deadline; the coordinator's worker is not involved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.coordination._records import EncodedWrite, check_int_version
from zkpoll.coordination.zookeeper._kazoo import explain
from zkpoll.coordination.zookeeper._names import parse_member_name
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable

__all__ = ["ZooKeeperRecords"]

#: Transactions in flight at once (kazoo pipelines them on one connection).
WINDOW = 500
#: Most rounds of writes whose fence check lost to a rename of our member
#: znode (each round re-lists the group; the deadline bounds them too).
FENCE_ROUNDS = 20
_UNREACHABLE = (KazooTimeoutError, ConnectionLoss, ConnectionClosedError, SessionExpiredError)
_ERRORS = (KazooException, KazooTimeoutError)


class ZooKeeperRecords:
    """The records of one coordinator (see the module docstring).

    :param client: the coordinator's kazoo client
    :param root: the coordinator's root path
    :param hosts: the connect string, for messages
    :param member_id: returns this member's id in the current session
    """

    def __init__(self, client: KazooClient, root: str, hosts: str,
                 member_id: Callable[[], str]) -> None:
        self._client = client
        self._root = root
        self._hosts = hosts
        self._member_id = member_id
        self._ensured: set[str] = set()  # kinds whose parent node is known to exist

    def _kind_path(self, kind: str) -> str:
        return f"{self._root}/records/{kind}"

    def _fail(self, exc: BaseException, what: str, path: str) -> CoordinationError:
        kind = CoordinatorUnreachable if isinstance(exc, _UNREACHABLE) else CoordinationError
        return kind(f"cannot {what}: {explain(exc, self._hosts, path)}")

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    # --- reads ----------------------------------------------------------------
    def read(self, kind: str, keys: list[str], timeout: float) -> dict[str, tuple[bytes, Any]]:
        """``key -> (data, version)`` of the keys that exist."""
        deadline = time.monotonic() + timeout
        parent = self._kind_path(kind)
        found: dict[str, tuple[bytes, Any]] = {}
        for start in range(0, len(keys), WINDOW):
            chunk = keys[start:start + WINDOW]
            try:
                pending = [(k, self._client.get_async(f"{parent}/{k}")) for k in chunk]
                for key, result in pending:
                    try:
                        data, stat = result.get(timeout=self._left(deadline))
                    except NoNodeError:
                        continue
                    found[key] = (data, stat.version)
            except _ERRORS as exc:
                raise self._fail(exc, f"read {kind} records", parent) from exc
        return found

    def list(self, kind: str, timeout: float) -> list[str]:
        """Keys of every record of ``kind``."""
        parent = self._kind_path(kind)
        try:
            return list(self._client.get_children_async(parent).get(timeout=timeout))
        except NoNodeError:
            return []
        except _ERRORS as exc:
            raise self._fail(exc, f"list {kind} records", parent) from exc

    def delete(self, kind: str, keys: list[str], timeout: float) -> int:
        """Delete the keys (any version); the number that existed."""
        deadline = time.monotonic() + timeout
        parent = self._kind_path(kind)
        deleted = 0
        try:
            for start in range(0, len(keys), WINDOW):
                pending = [self._client.delete_async(f"{parent}/{k}")
                           for k in keys[start:start + WINDOW]]
                for result in pending:
                    try:
                        result.get(timeout=self._left(deadline))
                        deleted += 1
                    except NoNodeError:
                        continue
        except _ERRORS as exc:
            raise self._fail(exc, f"delete {kind} records", parent) from exc
        return deleted

    # --- fenced writes --------------------------------------------------------------
    def write(self, kind: str, writes: list[EncodedWrite], fence_group: str,
              timeout: float) -> dict[str, Any]:
        """``key -> new version`` of the writes that won (see the module docstring)."""
        versions = {w.key: check_int_version(w.key, w.version, "ZooKeeper") for w in writes}
        deadline = time.monotonic() + timeout
        parent = self._kind_path(kind)
        won: dict[str, Any] = {}
        todo = list(writes)
        fence = None
        try:
            for _ in range(FENCE_ROUNDS):
                renamed = self._member_znode(fence_group, deadline)
                if renamed is None or renamed == fence:
                    break  # not registered; or our znode did not change: lost for good
                fence = renamed
                if kind not in self._ensured and any(versions[w.key] is None for w in todo):
                    self._client.ensure_path_async(parent).get(timeout=self._left(deadline))
                    self._ensured.add(kind)
                todo = self._commit(parent, todo, versions, fence, deadline, won)
                if not todo:
                    break
        except _ERRORS as exc:
            raise self._fail(exc, f"write {kind} records", parent) from exc
        return won

    def _member_znode(self, group: str, deadline: float) -> str | None:
        """Path of this member's znode in ``group`` now, or None if it has none."""
        members = f"{self._root}/groups/{group}/members"
        me = self._member_id()
        try:
            children = self._client.get_children_async(members).get(
                timeout=self._left(deadline))
        except NoNodeError:
            return None
        best: tuple[int, str] | None = None
        for child in children:
            parsed = parse_member_name(child)
            if parsed is not None and parsed[0] == me and (best is None or parsed[1] > best[0]):
                best = (parsed[1], child)
        return None if best is None else f"{members}/{best[1]}"

    def _commit(self, parent: str, writes: list[EncodedWrite], versions: dict[str, int | None],
                fence: str, deadline: float, won: dict[str, Any]) -> list[EncodedWrite]:
        """Commit the writes fenced by ``fence``; record the winners in ``won``;
        return the writes that lost only because the fence check failed."""
        fenced_out: list[EncodedWrite] = []
        for start in range(0, len(writes), WINDOW):
            chunk = writes[start:start + WINDOW]
            pending = [(w, self._transaction(parent, w, versions[w.key], fence)) for w in chunk]
            retry: list[EncodedWrite] = []
            for write, result in pending:
                # a failed multi answers the failed op's error, RolledBackError
                # for the ops before it and RuntimeInconsistency after it
                check, op = result.get(timeout=self._left(deadline))
                create = versions[write.key] is None
                if not isinstance(check, Exception) and not isinstance(op, Exception):
                    won[write.key] = 0 if create else op.version
                elif isinstance(check, NoNodeError):
                    fenced_out.append(write)  # our member znode is gone (or renamed)
                elif isinstance(op, NoNodeError) and create:
                    retry.append(write)  # the kind's node was deleted meanwhile
                elif isinstance(op, (BadVersionError, NodeExistsError, NoNodeError)):
                    continue  # lost the compare-and-set
                else:
                    raise _cause(check, op)
            if retry:
                self._client.ensure_path_async(parent).get(timeout=self._left(deadline))
                fenced_out += self._commit(parent, retry, versions, fence, deadline, won)
        return fenced_out

    def _transaction(self, parent: str, write: EncodedWrite, version: int | None,
                     fence: str) -> Any:
        transaction = self._client.transaction()
        transaction.check(fence, -1)  # any version: the znode must exist
        path = f"{parent}/{write.key}"
        if version is None:
            transaction.create(path, write.payload)
        else:
            transaction.set_data(path, write.payload, version=version)
        return transaction.commit_async()


def _cause(*results: Any) -> Exception:
    """The error that failed a multi (not the ones it caused in the other ops)."""
    errors = [r for r in results if isinstance(r, Exception)]
    causes = [e for e in errors if not isinstance(e, (RolledBackError, RuntimeInconsistency))]
    return (causes or errors)[0]
