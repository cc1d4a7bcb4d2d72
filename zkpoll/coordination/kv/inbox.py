"""Handoff inboxes of the TTL-heartbeat backends whose store has them (Redis).

A mixin, before ``HeartbeatCoordinator`` in the bases (like ``StoreRecords``).
The store does the work in one exchange per call (``MemberStore.send_handoff``,
``read_inbox``, ``ack_handoffs``); this puts the calls on the right threads:

* **send**: on the coordinator's reader pool, the caller waiting ``timeout``
  s at most (not confirmed in time: False; the write may still land);
* **watch**: the worker lists the inbox (one read returns every entry with
  its handoff) when an inbox notice for this member arrives on the store's
  change channel, after every resubscription and reconnection, and at the
  first pass after a registration in a new session;
* **ack**: on the reader pool, fire and forget.

Handoff ids are ``<member-id>/<entry id>``: an acknowledgement names its inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Any

from zkpoll.coordination._inbox import InboxDelivery
from zkpoll.coordination._repeated import RepeatedFailure
from zkpoll.coordination.base import SessionState
from zkpoll.coordination.handoff import (
    Handoff,
    HandoffCallback,
    check_inbox_name,
    decode_handoff,
    encode_handoff,
)
from zkpoll.coordination.url import BackendURL

__all__ = ["StoreInbox"]

LOG = logging.getLogger(__name__)


class StoreInbox:
    """Handoff inboxes through a store with ``inboxes`` (module docstring)."""

    # HeartbeatCoordinator provides these (not declared as methods here: this
    # class precedes it in the MRO and would shadow them)
    _store: Any
    _reader: futures.ThreadPoolExecutor
    _registered: set[str]
    _events: Any
    _state: SessionState
    member_id: str
    _call_all: Callable[..., None]

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(url, opts, member_id)  # type: ignore[call-arg]
        self._inbox = InboxDelivery()
        self._inbox_dirty: set[str] = set()  # watched inboxes to list (worker only)
        self._inbox_listed: dict[str, str] = {}  # group -> member id last listed (worker only)
        self._inbox_failures = RepeatedFailure(LOG)  # worker only

    def send_handoff(self, group: str, member_id: str, payload: Mapping[str, Any],
                     timeout: float) -> bool:
        check_inbox_name("group", group)
        check_inbox_name("member id", member_id)
        raw = encode_handoff(self.member_id, payload)
        if self._state is not SessionState.CONNECTED:
            LOG.debug("handoff to %s in %s not sent: %s", member_id, group, self._state.value)
            return False
        try:
            future = self._reader.submit(self._store.send_handoff, group, member_id, raw)
        except RuntimeError:  # the pool is shut down: stopped
            return False
        try:
            if future.result(timeout):
                return True
            LOG.info("handoff to %s in %s not sent: it is not a member (any more)",
                     member_id, group)
        except futures.TimeoutError:
            LOG.warning("handoff to %s in %s not confirmed by %s within %gs", member_id,
                        group, self._store.name, timeout)
        except self._store.errors as exc:
            LOG.warning("handoff to %s in %s not confirmed: %s at %s: %r", member_id, group,
                        self._store.name, self._store.address, exc)
        return False

    def watch_inbox(self, group: str, callback: HandoffCallback) -> Callable[[], None]:
        cancel = self._inbox.add(check_inbox_name("group", group), callback)
        self._events.put(("inbox", group))
        return cancel

    def ack_handoffs(self, group: str, handoff_ids: Iterable[str]) -> None:
        ids = list(handoff_ids)
        self._inbox.ack(group, ids)
        by_inbox: dict[str, list[str]] = {}
        for handoff_id in ids:
            owner, _, entry = handoff_id.partition("/")
            if not owner or not entry or "/" in entry:
                LOG.warning("not a handoff id of this backend: %r", handoff_id)
                continue
            by_inbox.setdefault(owner, []).append(entry)
        for owner, entries in by_inbox.items():
            try:
                future = self._reader.submit(self._store.ack_handoffs, group, owner, entries)
            except RuntimeError:  # stopped
                LOG.warning("acknowledged handoffs of %s not deleted: stopped", owner)
                continue
            future.add_done_callback(lambda f, o=owner: _deleted(f, o))

    # --- the worker (called by HeartbeatCoordinator) -----------------------------------
    def _inbox_event(self, group: str | None) -> None:
        """List ``group``'s inbox (None: every watched one) at the next pass."""
        self._inbox_dirty |= set(self._inbox.groups()) if group is None else {group}

    def _list_inboxes(self) -> None:
        """List the watched inboxes that changed, or are new in this session, and
        deliver.  A failure is logged and listed again at the next pass; it does
        not end the session (the heartbeat judges the connection)."""
        watched = self._inbox.groups()
        self._inbox_dirty &= set(watched)
        for group in watched:
            due = group in self._inbox_dirty or self._inbox_listed.get(group) != self.member_id
            if group not in self._registered or not due:
                continue
            what = f"read the inbox of {self.member_id} in {group}"
            try:
                entries = self._store.read_inbox(group, self.member_id)
            except self._store.errors as exc:
                self._inbox_failures.failed(what, f"{self._store.name} at "
                                                  f"{self._store.address}: {exc!r}")
                continue
            self._inbox_failures.succeeded(what)
            self._inbox_dirty.discard(group)
            self._inbox_listed[group] = self.member_id
            stored = {f"{self.member_id}/{entry}": raw for entry, raw in entries}
            listed = list(stored)
            read: dict[str, Handoff | None] = {
                i: decode_handoff(i, stored[i]) for i in self._inbox.unread(group, listed)}
            bad = [i for i, handoff in read.items() if handoff is None]
            if bad:
                self.ack_handoffs(group, bad)  # never deliverable: delete them
            for callback, handoffs in self._inbox.deliveries(group, listed, read):
                self._call_all([callback], handoffs)


def _deleted(future: futures.Future[None], owner: str) -> None:
    """The answer to an acknowledgement (a reader thread: log only)."""
    exc = future.exception()
    if exc is not None:
        LOG.warning("acknowledged handoffs in the inbox of %s not deleted: %r (not "
                    "delivered again in this session)", owner, exc)
