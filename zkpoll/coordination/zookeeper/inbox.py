"""The ZooKeeper backend's handoff inboxes: ``<root>/groups/<group>/inbox/<member-id>/h-<seq>``.

* **The inbox** ``inbox/<member-id>`` is a persistent znode the member
  creates when it registers in the group, just *before* its member znode:
  a member that peers can list has an inbox.  It deletes it (with what is
  left in it) when it leaves the group, and the inbox of an ended session
  once it has re-registered; the group's sweeper deletes inboxes whose
  member is not in the group and that are older than :data:`INBOX_GRACE`
  (a crash).  A watched inbox found missing while registered is created
  again.
* **A handoff** is one request of the sender: a multi-op of ``check`` (the
  recipient's member znode, as the sender's own listing names it, exists)
  and ``create`` of a persistent sequential ``h-`` node holding the JSON
  (:func:`~zkpoll.coordination.handoff.encode_handoff`); without a listing
  of the group, a plain ``create``, which fails as well when the inbox is
  gone.  Confirmed means the member was registered, and its inbox there,
  when ZooKeeper applied the write.
* **The recipient** holds one children watch per watched group, on its own
  inbox, re-armed by each listing (worker thread, like the group listings):
  every fire and every reconnect lists the inbox, reads each handoff not
  read yet once, and delivers through :class:`~zkpoll.coordination._inbox.InboxDelivery`.
  An acknowledgement is one ``delete`` per handoff, sent at once from the
  caller's thread; its fire is listed once more (nothing new is read).

Handoff ids are ``<member-id>/h-<seq>``: they name the inbox, so an
acknowledgement never deletes a handoff of another session's inbox.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError, RolledBackError

from zkpoll.coordination._inbox import InboxDelivery
from zkpoll.coordination.base import Membership, SessionState
from zkpoll.coordination.handoff import (
    Handoff,
    HandoffCallback,
    check_inbox_name,
    decode_handoff,
    encode_handoff,
)
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper.claims import ZooKeeperClaims
from zkpoll.coordination.zookeeper.session import OP_TIMEOUT, ZK_ERRORS

__all__ = ["HANDOFF_PREFIX", "INBOX_GRACE", "ZooKeeperInbox"]

LOG = logging.getLogger(__name__)
#: Name prefix of the sequential handoff znodes in an inbox.
HANDOFF_PREFIX = "h-"
#: Seconds after its creation an inbox whose member is not in the group may be
#: swept (far above the moments between creating it and the member znode).
INBOX_GRACE = 600.0


class ZooKeeperInbox(ZooKeeperClaims):
    """This member's handoff inboxes, and handoffs to others' (module docstring)."""

    supports_handoffs = True

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(url, opts, member_id)
        self._inbox = InboxDelivery()
        self._inbox_watchers_kz: dict[str, Callable[[Any], None]] = {}
        self._inbox_dirty: set[str] = set()  # watched inboxes to list (worker only)
        self._inbox_listed: dict[str, str] = {}  # group -> member id last listed (worker only)
        self._stale_inboxes: set[tuple[str, str]] = set()  # of ended sessions (worker only)

    def _inbox_path(self, group: str, member_id: str | None = None) -> str:
        return f"{self._root}/groups/{group}/inbox/{member_id or self.member_id}"

    # --- the sender: the caller's thread ----------------------------------------
    def send_handoff(self, group: str, member_id: str, payload: Mapping[str, Any],
                     timeout: float) -> bool:
        check_inbox_name("group", group)
        path = f"{self._inbox_path(group, check_inbox_name('member id', member_id))}/"
        raw = encode_handoff(self.member_id, payload)
        if self._state is not SessionState.CONNECTED:  # sent later, it could land late
            LOG.debug("handoff to %s in %s not sent: %s", member_id, group, self._state.value)
            return False
        member = self._member_znode(group, member_id)
        try:
            if member is None:
                self._client.create_async(path + HANDOFF_PREFIX, raw, sequence=True) \
                    .get(timeout=timeout)
            else:
                transaction = self._client.transaction()
                transaction.check(member, -1)  # -1: any version; fails if it does not exist
                transaction.create(path + HANDOFF_PREFIX, raw, sequence=True)
                for result in transaction.commit_async().get(timeout=timeout):
                    if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                        raise result
        except NoNodeError:
            LOG.info("handoff to %s in %s not sent: it is not a member (any more)",
                     member_id, group)
            return False
        except ZK_ERRORS as exc:
            LOG.warning("handoff to %s in %s not confirmed: %s", member_id, group,
                        self._explain(exc, path))
            return False
        return True

    def _member_znode(self, group: str, member_id: str) -> str | None:
        """Path of ``member_id``'s newest znode in our listing of ``group`` (None
        when we do not list the group, or do not see the member yet)."""
        listed = self._listed.get(group)  # replaced whole by the worker: a consistent dict
        newest = max((e for e in (listed or {}).values() if e.member_id == member_id),
                     key=lambda e: e.rev, default=None)
        return None if newest is None else f"{self._members_path(group)}/{newest.child}"

    # --- the recipient ------------------------------------------------------------
    def watch_inbox(self, group: str, callback: HandoffCallback) -> Callable[[], None]:
        cancel = self._inbox.add(check_inbox_name("group", group), callback)
        self._events.put(("inbox", group))
        return cancel

    def ack_handoffs(self, group: str, handoff_ids: Iterable[str]) -> None:
        ids = list(handoff_ids)
        self._inbox.ack(group, ids)
        for handoff_id in ids:
            owner, _, name = handoff_id.partition("/")
            if not owner or not name.startswith(HANDOFF_PREFIX) or "/" in name:
                LOG.warning("not a handoff id of this backend: %r", handoff_id)
                continue
            path = f"{self._inbox_path(group, owner)}/{name}"
            try:
                self._client.delete_async(path).rawlink(functools.partial(_deleted, path))
            except ZK_ERRORS as exc:  # a closed client
                LOG.warning("acknowledged handoff %s not deleted: %r", path, exc)

    def _inbox_watcher(self, group: str) -> Callable[[Any], None]:
        """kazoo's children watch of our inbox in ``group``: enqueue only (one
        function per group, so kazoo and the server hold one watch per inbox)."""
        watcher = self._inbox_watchers_kz.get(group)
        if watcher is None:
            def watcher(event: Any, _group: str = group) -> None:
                self._events.put(("inbox", _group))
            self._inbox_watchers_kz[group] = watcher
        return watcher

    # --- the worker ----------------------------------------------------------------
    def _inbox_event(self, group: str | None) -> None:
        """Worker: list ``group``'s inbox (None: every watched one) at the next pass."""
        self._inbox_dirty |= set(self._inbox.groups()) if group is None else {group}

    def _list_inboxes(self) -> None:
        """Worker, connected: list the watched inboxes that changed, or that are
        new (a registration in this session); delete the inboxes of ended sessions."""
        watched = self._inbox.groups()
        self._inbox_dirty &= set(watched)
        for group in watched:
            due = group in self._inbox_dirty or self._inbox_listed.get(group) != self.member_id
            if group in self._registered and due and self._list_inbox(group):
                self._inbox_dirty.discard(group)
                self._inbox_listed[group] = self.member_id
        for group, member_id in sorted(self._stale_inboxes):
            self._stale_inboxes.discard((group, member_id))
            self._drop_inbox(group, member_id)  # failed: the sweep deletes it

    def _list_inbox(self, group: str) -> bool:
        """List our inbox (re-arming its watch), read what is new, deliver it;
        False when ZooKeeper could not be read (listed again at the next pass)."""
        path, watcher = self._inbox_path(group), self._inbox_watcher(group)
        read: dict[str, Handoff | None] = {}
        try:
            try:
                names = self._client.get_children_async(path, watch=watcher).get(OP_TIMEOUT)
            except NoNodeError:  # deleted while we are registered (a sweep's race): again
                LOG.warning("inbox %s was missing; creating it again", path)
                self._make_inbox(group)
                names = self._client.get_children_async(path, watch=watcher).get(OP_TIMEOUT)
            listed = [f"{self.member_id}/{n}" for n in sorted(names)
                      if n.startswith(HANDOFF_PREFIX)]
            pending = [(i, self._client.get_async(f"{path}/{i.partition('/')[2]}"))
                       for i in self._inbox.unread(group, listed)]
            for handoff_id, result in pending:
                try:
                    raw, _ = result.get(OP_TIMEOUT)
                except NoNodeError:
                    read[handoff_id] = None  # deleted between the listing and the read
                    continue
                read[handoff_id] = decode_handoff(handoff_id, raw)
        except ZK_ERRORS as exc:
            self._failures.failed(f"read the inbox of {self.member_id} in {group}",
                                  self._explain(exc, path))
            return False
        self._failures.succeeded(f"read the inbox of {self.member_id} in {group}")
        bad = [i for i, handoff in read.items() if handoff is None and i in listed]
        if bad:
            self.ack_handoffs(group, bad)  # never deliverable: delete them
        for callback, handoffs in self._inbox.deliveries(group, listed, read):
            self._call_all([callback], handoffs)
        return True

    def _make_inbox(self, group: str) -> None:
        """Worker: create our inbox in ``group`` (before our member znode)."""
        path = self._inbox_path(group)
        try:
            self._client.create_async(path).get(timeout=OP_TIMEOUT)
        except NodeExistsError:
            pass  # a retry whose first attempt got through, or a rejoin in this session
        except NoNodeError:  # a new group
            self._client.ensure_path(path)

    def _inbox_left(self, group: str) -> None:
        """Worker: we left ``group``: delete our inbox there, with what is left in it."""
        self._inbox_listed.pop(group, None)
        self._drop_inbox(group, self.member_id)

    def _inbox_session_ended(self, old_member_id: str, groups: Iterable[str]) -> None:
        """Worker: a new session; the inboxes of ``old_member_id`` are deleted
        once connected (their handoffs are not delivered: a gap, never a duplicate)."""
        self._stale_inboxes.update((group, old_member_id) for group in groups)
        self._inbox_listed.clear()

    def _drop_inbox(self, group: str, member_id: str) -> bool:
        """Delete an inbox and the handoffs in it, in one multi-op (again if one
        arrived in between); best effort: False when it failed."""
        path = self._inbox_path(group, member_id)
        for _ in range(3):
            try:
                names = self._client.get_children_async(path).get(OP_TIMEOUT)
                transaction = self._client.transaction()
                for name in names:
                    transaction.delete(f"{path}/{name}")
                transaction.delete(path)
                results = transaction.commit_async().get(OP_TIMEOUT)
            except NoNodeError:
                return True
            except ZK_ERRORS as exc:
                LOG.info("inbox %s not deleted (the sweep will): %s", path,
                         self._explain(exc, path))
                return False
            if not any(isinstance(r, Exception) for r in results):
                LOG.debug("inbox %s deleted with %d handoff(s)", path, len(names))
                return True
        return False

    def _sweep_group(self, group: str, snapshot: Membership) -> None:
        """Claims records (see ``claims``), then the inboxes of members not in
        the group, created more than :data:`INBOX_GRACE` seconds ago."""
        super()._sweep_group(group, snapshot)
        parent = f"{self._root}/groups/{group}/inbox"
        try:
            owners = self._client.get_children_async(parent).get(timeout=OP_TIMEOUT)
        except ZK_ERRORS:
            return
        members, cutoff = set(snapshot.member_ids), (time.time() - INBOX_GRACE) * 1000
        for owner in owners:
            if owner in members:
                continue
            try:
                stat = self._client.exists_async(f"{parent}/{owner}").get(OP_TIMEOUT)
            except ZK_ERRORS as exc:
                LOG.debug("inbox sweep of %s: %s", parent, exc)
                continue
            if stat is not None and stat.ctime < cutoff:
                self._drop_inbox(group, owner)


def _deleted(path: str, result: Any) -> None:
    """kazoo's answer to an acknowledgement's delete (connection thread: log only)."""
    if result.exception is not None and not isinstance(result.exception, NoNodeError):
        LOG.warning("acknowledged handoff %s not deleted: %r (not delivered again in "
                    "this session; deleted with the inbox)", path, result.exception)
