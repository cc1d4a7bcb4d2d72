"""Shared base of the TTL-heartbeat backends (Redis, Memcached).

A member is alive while its key ``<prefix>/groups/<group>/members/<id>``
exists; the key carries the member data and a TTL of one member timeout.
A backend only implements :class:`MemberStore` (a few bounded round trips);
everything else lives here, once.

One thread ("zkpoll-heartbeat") makes every call of the worker: each
heartbeat interval it renews the TTL of this member's keys in one round
trip, makes the keys match what the caller asked for (join/update/leave),
and re-lists every watched group (level-triggered: an expiry has no event).
A store that pushes changes (Redis pub/sub) wakes it in between.

Session: it lasts while every key of ours is renewed in time.  The lease is
the start of the last fully answered renewal + the member timeout.  A
renewal that finds a key gone, or a lease that runs out while the store is
unreachable, means LOST; the next contact starts a new session under a
fresh member id (registration hooks applied again), with retries backed off
from ``retry_backoff`` to ``max_retry_interval`` once the lease is gone.

Clock: every heartbeat reads the server's clock with the renewal
(:meth:`MemberStore.heartbeat`), so the offset estimate is at most one
heartbeat old; :meth:`HeartbeatCoordinator.measure_clock` reads it now.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from typing import Any

from zkpoll.coordination._desired import DesiredStateCoordinator
from zkpoll.coordination.base import Member, Membership, SessionState, log_change
from zkpoll.coordination.clock import ClockEstimate
from zkpoll.coordination.kv._store import (
    MemberStore,
    member_timeouts,
    parse_inbox_notice,
)
from zkpoll.coordination.loader import make_member_id
from zkpoll.coordination.member_data import decode_member_data, decode_object
from zkpoll.coordination.url import BackendURL
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable

__all__ = ["HeartbeatCoordinator"]

LOG = logging.getLogger(__name__)


class HeartbeatCoordinator(DesiredStateCoordinator):
    """Membership by keys with a TTL, renewed by a heartbeat thread (module docstring)."""

    store_class: type[MemberStore]

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(member_id)
        self._name = member_id.split(".", 1)[0]
        self._timeout, self._interval = member_timeouts(url, opts)
        self._backoff = (opts.retry_backoff, opts.max_retry_interval)
        self._retry_delay = opts.retry_backoff
        self._store = self.store_class(url, min(5.0, max(0.5, self._timeout / 2)))
        self._snapshots: dict[str, Membership] = {}
        self._registered: set[str] = set()   # groups with a key in this session (worker)
        self._stale: list[tuple[str, str]] = []  # keys of a lost session to delete (worker)
        self._dirty: set[str] = set()        # watched groups to re-list (worker)
        self._lost = False                   # next contact starts a new session (worker)
        self._session = 0
        self._last_contact = float("-inf")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reader = futures.ThreadPoolExecutor(2, thread_name_prefix="zkpoll-read")

    # --- session ------------------------------------------------------------
    @property
    def last_contact(self) -> float:
        return self._last_contact

    @property
    def session_timeout(self) -> float:
        return self._timeout

    @property
    def client_id(self) -> tuple[int, bytes]:
        """``(session number, member id)``, shaped like kazoo's, for tests and tools."""
        return self._session, self.member_id.encode()

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """The one place where backend exceptions become zkpoll's."""
        try:
            yield
        except self._store.errors as exc:
            kind = (CoordinatorUnreachable if isinstance(exc, self._store.unreachable)
                    else CoordinationError)
            raise kind(f"{what}: {self._store.name} at {self._store.address}: "
                       f"{exc!r}") from exc

    # --- lifecycle ------------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        self._stop.clear()
        targets = [self._run] + ([self._listen] if self._store.pushes else [])
        for target, name in zip(targets, ("zkpoll-heartbeat", "zkpoll-changes")):
            self._threads.append(threading.Thread(target=target, name=name, daemon=True))
            self._threads[-1].start()
        self._wait_connected(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._leave_all(timeout, "its key expires")
        self._stop.set()
        self._events.put(("stop",))
        for thread in self._threads:
            thread.join(timeout)
        self._reader.shutdown(wait=False)
        with contextlib.suppress(*self._store.errors):
            self._store.close()
        self._set_state(SessionState.STOPPED)

    # --- membership -------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"{self._store.name} at {self._store.address}"

    def get_members(self, group: str, timeout: float = 10.0) -> Membership:
        members = self._read(lambda: self._store.members(group), timeout, f"read {group!r}")
        with self._cond:
            version = self._snapshots.get(group, Membership(group)).version
        return Membership(group, _members(members), version)

    def get_groups(self, timeout: float = 10.0) -> list[str]:
        return sorted(self._read(self._store.groups, timeout, "list groups"))

    def read_claims(self, group: str, member_ids: Iterable[str],
                    timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        ids = list(member_ids)
        raw = self._read(lambda: self._store.read_claims(group, ids), timeout,
                         f"read the claims in {group!r}")
        return {m: decode_object(raw.get(m), m) for m in ids}

    def _read(self, call: Callable[[], Any], timeout: float, what: str) -> Any:
        """Run a read on the reader pool: the caller waits ``timeout`` s at most."""
        try:
            future = self._reader.submit(call)
        except RuntimeError as exc:  # the pool is shut down
            raise CoordinationError(f"{what}: the coordinator is stopped") from exc
        with self._translated(what):
            try:
                return future.result(timeout)
            except futures.TimeoutError as exc:
                raise CoordinatorUnreachable(f"{what}: no answer from {self._store.name} at "
                                             f"{self._store.address} within {timeout:g}s") \
                    from exc

    # --- the server's clock ----------------------------------------------------------
    def measure_clock(self, timeout: float = 5.0) -> ClockEstimate:
        sample = self._read(self._store.clock_sample, timeout, "read the server's clock")
        if sample is None:
            raise CoordinationError(f"{self._where} has no clock to read")
        try:
            return self._clock.add(sample)
        except ValueError as exc:  # the local clock stepped back during the request
            raise CoordinationError(f"read the clock of {self._where}: {exc}") from exc

    def watch_delay(self) -> float:
        """Counted in the largest recent round trip (0 until one is measured).
        A store that pushes changes (Redis): the push, a heartbeat the worker
        may be busy with, then the re-listing (the index, the member keys): 4
        round trips.  One that does not (Memcached): the next heartbeat's
        re-listing, one heartbeat interval away, plus the re-listing's 2 round
        trips and 2 for a heartbeat slower than the previous one."""
        round_trip = self._clock.round_trip() or 0.0
        return 4 * round_trip + (0.0 if self._store.pushes else self._interval)

    def _watch_started(self, group: str) -> None:
        self._events.put(("changed", group))

    def _replay(self, group: str, callback: Any) -> None:
        self._events.put(("replay", group, callback))

    # --- threads ------------------------------------------------------------------
    def _listen(self) -> None:
        """Turn the store's pushed changes into worker events; resubscribe with backoff."""
        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                for change in self._store.changes(self._stop):
                    notice = parse_inbox_notice(change)
                    if notice is None:
                        self._events.put(("changed", change))
                    if change is None or notice is not None and notice[1] == self.member_id:
                        self._events.put(("inbox", None if notice is None else notice[0]))
                    delay = self._backoff[0]
            except self._store.errors as exc:
                LOG.debug("change notifications from %s interrupted: %r", self._store.name, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])

    def _run(self) -> None:
        next_beat = 0.0
        while True:
            events = self._next_events(next_beat)
            if events is None:
                return
            watched = set(self.watched_groups)
            for event in events:
                if event[0] == "changed":
                    self._dirty |= watched if event[1] is None else {event[1]} & watched
                elif event[0] == "replay" and event[1] in self._snapshots:
                    self._call_all([event[2]], self._snapshots[event[1]])
                elif event[0] == "inbox":
                    self._inbox_event(event[1])
            try:
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self._interval
                    self._beat()
                if self._state is SessionState.CONNECTED:
                    self._apply()
            except CoordinationError as exc:
                next_beat = time.monotonic() + self._failed(exc)
            except Exception:  # the worker must survive anything; retried next beat
                LOG.exception("coordinator worker error; retrying")

    def _beat(self) -> None:
        """Renew every key of ours in one round trip (or ping in a new session)."""
        keys = [] if self._lost else [(g, self.member_id) for g in sorted(self._registered)]
        started = time.monotonic()
        with self._translated("heartbeat"):
            alive, sample = self._store.heartbeat(keys, self._timeout)
        self._add_clock_sample(sample)
        if not all(alive):
            self._key_gone()
        elif self._lost:
            self._new_session()
        self._last_contact = started
        self._retry_delay = self._backoff[0]
        self._dirty |= set(self.watched_groups)
        if self._state is not SessionState.CONNECTED:
            self._inbox_event(None)  # handoffs may have arrived meanwhile
        self._set_state(SessionState.CONNECTED)

    def _failed(self, exc: CoordinationError) -> float:
        """Record a failed exchange; return the delay before the next attempt."""
        LOG.debug("%s", exc)
        if self._state is SessionState.CONNECTED:
            LOG.warning("%s; member %s suspended", exc, self.member_id)
            self._set_state(SessionState.SUSPENDED)
        if self._state is SessionState.SUSPENDED and self.lease_remaining() <= 0:
            self._set_state(SessionState.LOST)
            self._lost = True
        if self.lease_remaining() > 0:
            return self._interval  # the keys may still live: keep renewing
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2,
                                                          self._backoff[1])
        return delay

    def _key_gone(self) -> None:
        """The server answered but dropped a key of ours: start a new session now."""
        LOG.warning("member %s: key gone from %s", self.member_id, self._store.name)
        self._set_state(SessionState.LOST)
        self._new_session()

    def _new_session(self) -> None:
        old, self.member_id = self.member_id, make_member_id(self._name)
        self._stale += [(group, old) for group in self._registered]
        self._registered.clear()
        self._session += 1
        self._lost = False
        self._forget_applied()
        LOG.warning("member %s lost its session: re-registering as %s", old, self.member_id)

    def _apply(self) -> None:
        """Make our keys match the requests, drop stale keys, re-list dirty groups."""
        todo = self._pending()
        for group, (data, gen) in todo.items():
            with self._translated(f"publish member {self.member_id} in {group!r}"):
                if data is None:
                    self._store.remove(group, self.member_id)
                    self._registered.discard(group)
                elif group in self._registered:
                    if not self._store.replace(group, self.member_id, _encode(data),
                                               self._timeout):
                        self._key_gone()
                        self._set_state(SessionState.CONNECTED)
                        self._apply()  # re-register everything, now
                        return
                else:  # first publication in this session
                    registration = self._registration(group)
                    if registration is None:
                        continue
                    data, gen = registration
                    self._store.register(group, self.member_id, _encode(data), self._timeout)
                    self._registered.add(group)
                    LOG.info("member %s registered in %s", self.member_id, group)
            self._mark_applied(group, gen)
        for group, record, gen in self._pending_claims():
            if group not in self._registered:
                continue
            with self._translated(f"write the claims of {self.member_id} in {group!r}"):
                alive = self._store.write_claims(group, self.member_id, _encode(record),
                                                 self._timeout)
            if not alive:
                self._key_gone()
                self._set_state(SessionState.CONNECTED)
                return
            self._claims_written(group, gen)
        while self._stale:
            with self._translated("remove a stale member"):
                self._store.remove(*self._stale[0])
            self._stale.pop(0)
        for group in sorted(self._dirty):
            self._refresh(group)
            self._dirty.discard(group)
        self._list_inboxes()

    # handoff inboxes: a store with inboxes gets them from kv.inbox.StoreInbox
    def _inbox_event(self, group: str | None) -> None:
        """List ``group``'s inbox (None: every watched one) at the next pass."""

    def _list_inboxes(self) -> None:
        """List the inboxes to list and deliver what is new in them."""

    def _refresh(self, group: str) -> None:
        with self._translated(f"read {group!r}"):
            members = _members(self._store.members(group))
        with self._cond:
            previous = self._snapshots.get(group, Membership(group))
            snapshot = Membership(group, members, previous.version + 1)
            if snapshot.same_members(previous) and group in self._snapshots:
                return
            self._snapshots[group] = snapshot
        log_change(LOG, previous, snapshot)
        self._notify(snapshot)


def _encode(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def _members(raw: Mapping[str, bytes]) -> tuple[Member, ...]:
    return tuple(Member(member_id, decode_member_data(payload, member_id))
                 for member_id, payload in raw.items())
