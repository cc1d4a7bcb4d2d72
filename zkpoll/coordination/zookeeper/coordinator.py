"""The ZooKeeper coordinator: its worker, and this member's znodes.

The coordinator is built in layers, one module each::

    session.py    ZooKeeperSession   kazoo client, session states, the lease
    listing.py    ZooKeeperListing   children watches, Membership snapshots
    claims.py     ZooKeeperClaims    claims records: written, read, swept
    inbox.py      ZooKeeperInbox     handoff inboxes: sent, watched, acknowledged
    coordinator   ZooKeeperCoordinator   the worker; member znodes; records

Threading: kazoo runs our watch and state callbacks on its own sequential
callback thread; they only put an event on our queue.  One worker thread
("zkpoll-coordinator") does every ZooKeeper call: it reconciles this
member's znodes with what the caller asked for (join/update/leave, and again
after a new session), re-lists watched groups level-triggered (on every
event and on every reconnect), builds immutable :class:`Membership`
snapshots and calls the watchers, lists watched handoff inboxes and
delivers what is new in them, and sends the heartbeats that renew the
lease (:attr:`last_contact`), unless an answered claims write renewed it
within the heartbeat interval.  Claims records are the exception to "one
thread makes every call": the caller's thread sends them (``_claims_writer``);
so are coordination records (``records``), handoffs and their
acknowledgements (``inbox``).

A change of member data replaces the member znode by a newly named one
(see ``_names``) in one multi-op transaction (create new, delete old).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.protocol.states import KeeperState

from zkpoll.coordination._records import EncodedWrite
from zkpoll.coordination.base import SessionState
from zkpoll.coordination.loader import make_member_id
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper._names import member_name
from zkpoll.coordination.zookeeper.admin import forget_group
from zkpoll.coordination.zookeeper.inbox import ZooKeeperInbox
from zkpoll.coordination.zookeeper.records import ZooKeeperRecords
from zkpoll.coordination.zookeeper.session import OP_TIMEOUT, STATES, ZK_ERRORS
from zkpoll.exceptions import CoordinationError

__all__ = ["ZooKeeperCoordinator"]

LOG = logging.getLogger(__name__)


class ZooKeeperCoordinator(ZooKeeperInbox):
    """Membership in ZooKeeper through EPHEMERAL znodes (see the package docstring).

    :param url: the parsed ``backend_url``
    :param opts: the ``[coordination]`` option group
    :param member_id: this member's id for the first session; every new
        session (after the old one expired) registers under a fresh id
    """

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(url, opts, member_id)
        self._names: dict[str, str] = {}  # group -> our znode name (worker only)
        self._published: dict[str, bytes] = {}  # group -> payload of that name (worker only)
        self._rev = 0  # publication counter of this session (worker only)
        self._attempts: dict[str, tuple[bytes, str]] = {}  # group -> unconfirmed publication

    forgetter = staticmethod(forget_group)  # zookeeper.admin's

    # --- lifecycle ----------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="zkpoll-coordinator",
                                        daemon=True)
        self._thread.start()
        self._client.start_async()
        self._wait_connected(timeout)
        if timeout is not None:  # an estimate before any join; claims writes add more
            try:
                self.measure_clock(min(timeout, 5.0))
            except CoordinationError as exc:
                LOG.info("clock offset against ZooKeeper not measured at start: %s", exc)

    def stop(self, timeout: float = 5.0) -> None:
        self._leave_all(timeout, "the session expires")
        self._stopping = True
        self._events.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._client.stop()
            self._client.close()
        except ZK_ERRORS as exc:  # closing a broken client must not fail stop()
            LOG.debug("kazoo stop: %s", exc)
        self._set_state(SessionState.STOPPED)

    # --- worker ---------------------------------------------------------------
    def _run(self) -> None:
        next_beat = 0.0
        while True:
            relist = next_beat
            if self._dirty and self._state is SessionState.CONNECTED:
                relist = min((self._relist_at.get(g, 0.0) for g in self._dirty),
                             default=next_beat)
            events = self._next_events(min(next_beat, relist))
            if events is None:
                return
            try:
                self._handle(events)
            except Exception:  # the worker must survive anything; retried on next tick
                LOG.exception("coordinator worker error; retrying")
                time.sleep(min(1.0, self._heartbeat))
            now = time.monotonic()
            if now >= next_beat and now - self._last_contact < self._heartbeat:
                next_beat = self._last_contact + self._heartbeat  # a claims write renewed it
            elif now >= next_beat:
                self._send_heartbeat()
                next_beat = time.monotonic() + self._heartbeat

    def _handle(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            kind = event[0]
            if kind == "state":
                self._dirty |= self._on_state(event[1], event[2])
            elif kind == "children":
                self._dirty |= set(self.watched_groups) if event[1] is None else {event[1]}
            elif kind == "inbox":
                self._inbox_event(event[1])
            elif kind == "replay":
                with self._cond:
                    snapshot = self._snapshots.get(event[1])
                if snapshot is not None:
                    self._call_all([event[2]], snapshot)
        if self._state is not SessionState.CONNECTED:
            return  # everything stays dirty until the next CONNECTED
        self._reconcile()
        self._relist_due(time.monotonic())
        self._list_inboxes()
        self._sweep_claims()

    def _on_state(self, state: KazooState, keeper_state: Any) -> set[str]:
        if state is KazooState.CONNECTED and keeper_state == KeeperState.CONNECTED_RO:
            LOG.warning("ZooKeeper server is read-only: not counting as a member")
            state = KazooState.SUSPENDED
        if state is KazooState.CONNECTED:
            session = self._client.client_id[0] if self._client.client_id else None
            if self._session_id is not None and session != self._session_id:
                self._new_session()
            self._session_id = session
            self._send_heartbeat()
            self._set_state(SessionState.CONNECTED)
            self._inbox_event(None)
            return set(self.watched_groups)  # level-triggered: re-list after any reconnect
        self._set_state(STATES[state])
        if state is KazooState.LOST:
            self._forget_applied()
        return set()

    def _new_session(self) -> None:
        with self._cond:
            self._claims_writer.reset()
        old = self.member_id
        self.member_id = make_member_id(self._name)
        self._inbox_session_ended(old, self._registered)
        self._registered.clear()
        self._names.clear()
        self._published.clear()
        self._attempts.clear()
        self._forget_applied()
        LOG.warning("ZooKeeper session expired: member %s re-registers as %s",
                    old, self.member_id)

    def _reconcile(self) -> None:
        """Make our znodes match what the caller asked for: member data, then
        claims records (only in a group we are registered in, this session)."""
        for group, (data, gen) in self._pending().items():
            what = f"publish member {self.member_id} in group {group}"
            try:
                if data is None:
                    with self._cond:
                        self._claims_writer.forbid(group)
                    self._delete_member(group)
                    self._registered.discard(group)
                    self._inbox_left(group)
                else:
                    if group not in self._registered:  # first publish in this session
                        registration = self._registration(group)
                        if registration is None:
                            continue
                        data, gen = registration
                    self._publish(group, data)
                    self._registered.add(group)
                    with self._cond:
                        self._claims_writer.allow(group, self._session_id,
                                                  self._claims_path(group))
            except ZK_ERRORS as exc:
                self._failures.failed(what, self._explain(exc, self._members_path(group)))
                return
            self._failures.succeeded(what)
            self._mark_applied(group, gen)
        for group, _record, _gen in self._pending_claims():
            if group not in self._registered:
                continue
            path = self._claims_path(group)
            try:
                self._write_claims(group)
            except ZK_ERRORS as exc:
                self._failures.failed(f"write the claims of {self.member_id}",
                                      self._explain(exc, path))
                return
            self._failures.succeeded(f"write the claims of {self.member_id}")

    # --- this member's znode ------------------------------------------------------
    def _publish(self, group: str, data: dict[str, Any]) -> None:
        """Publish ``data`` under a new name (see the module docstring); a
        retry after a lost answer reuses the name, so it is idempotent."""
        payload = json.dumps(data, sort_keys=True).encode()
        registered = group in self._registered
        if registered and self._published.get(group) == payload:
            return
        attempt = self._attempts.get(group)
        if attempt is None or attempt[0] != payload:
            self._rev += 1
            attempt = self._attempts[group] = (payload, member_name(self.member_id,
                                                                    self._rev, data))
        name = attempt[1]
        path = f"{self._members_path(group)}/{name}"
        old = self._names.get(group) if registered else None
        if old is None:
            self._create_member(group, path, payload)
        else:
            transaction = self._client.transaction()
            transaction.create(path, payload, ephemeral=True)
            transaction.delete(f"{self._members_path(group)}/{old}")
            results = transaction.commit_async().get(timeout=OP_TIMEOUT)
            failures = [r for r in results if isinstance(r, Exception)]
            if failures and not self._is_ours(path):
                raise failures[0]
        self._names[group], self._published[group] = name, payload
        self._attempts.pop(group, None)

    def _create_member(self, group: str, path: str, payload: bytes) -> None:
        self._make_inbox(group)  # first: a member peers can list has an inbox
        try:
            self._client.create_async(path, payload, ephemeral=True).get(timeout=OP_TIMEOUT)
        except NoNodeError:  # a new group: its claims parent too (first claims: one create)
            self._client.ensure_path(self._members_path(group))
            self._client.ensure_path(self._claims_parent(group))
            self._client.create_async(path, payload, ephemeral=True).get(timeout=OP_TIMEOUT)
        except NodeExistsError:
            if not self._is_ours(path):
                raise  # another session's node: retried until it expires
            return
        LOG.info("member %s registered in group %s", self.member_id, group)

    def _is_ours(self, path: str) -> bool:
        """True when ``path`` exists as an ephemeral of our session (a retried
        call whose first attempt got through)."""
        stat = self._client.exists_async(path).get(timeout=OP_TIMEOUT)
        return stat is not None and stat.ephemeralOwner == self._session_id

    def _delete_member(self, group: str) -> None:
        name = self._names.pop(group, None)
        self._published.pop(group, None)
        if name is None:
            return
        try:
            self._client.delete_async(f"{self._members_path(group)}/{name}") \
                .get(timeout=OP_TIMEOUT)
            LOG.info("member %s left group %s", self.member_id, group)
        except NoNodeError:
            pass

    # --- coordination records: in the caller's thread, see records ----------------
    @functools.cached_property
    def _records(self) -> ZooKeeperRecords:
        return ZooKeeperRecords(self._client, self._root, self._hosts, lambda: self.member_id)

    def _read_records(self, kind: str, keys: list[str],
                      timeout: float) -> dict[str, tuple[bytes, Any]]:
        return self._records.read(kind, keys, timeout)

    def _write_records(self, kind: str, writes: list[EncodedWrite], fence_group: str,
                       timeout: float) -> dict[str, Any]:
        return self._records.write(kind, writes, fence_group, timeout)

    def _list_records(self, kind: str, timeout: float) -> list[str]:
        return self._records.list(kind, timeout)

    def _delete_records(self, kind: str, keys: list[str], timeout: float) -> int:
        return self._records.delete(kind, keys, timeout)
