"""ZooKeeper membership backend on kazoo.

Tree (``<root>`` is the URL path, default ``/zkpoll``)::

    <root>/groups/<group>/members/<member-id>!<rev>!<active_at>!<leave_at>!<weight>
                                                 EPHEMERAL, JSON member data
    <root>/groups/<group>/claims/<member-id>     persistent, JSON claims record
    <root>/records/<kind>/<key>                  persistent, JSON coordination record
                                                 (fenced CAS, see ``_records_zk``)

Member znodes are named by what rings need (see ``_names``): one children
watch per group is the only watch a member holds, and listing the children
is all a membership change costs; a member's full data is read only for a
watcher that asks for it (``with_data``), once per name.  A change of
member data replaces the znode by a newly named one in one multi-op
transaction.  Claims records change every cycle and are not watched by
anyone: peers read a member's record once, after it vanished; they are
deleted ``CLAIMS_RETENTION`` seconds after their member is gone.

Threading: kazoo runs our watch and state callbacks on its own sequential
callback thread; they only put an event on our queue.  One worker thread
("zkpoll-coordinator") does every ZooKeeper call: it reconciles this
member's znodes with what the caller asked for (join/update/leave, and again
after a new session), re-lists watched groups level-triggered (on every
event and on every reconnect), builds immutable :class:`Membership`
snapshots and calls the watchers, and sends the heartbeats that renew the
lease (:attr:`last_contact`).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionDropped,
    KazooException,
    NodeExistsError,
    NoNodeError,
    SessionClosedRequireSaslError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

from zkpoll.coordination._desired import DesiredStateCoordinator
from zkpoll.coordination._kazoo import explain, kazoo_client
from zkpoll.coordination._names import member_name, parse_member_name
from zkpoll.coordination._records import EncodedWrite
from zkpoll.coordination._records_zk import ZooKeeperRecords
from zkpoll.coordination._repeated import RepeatedFailure
from zkpoll.coordination.base import (
    PROTOCOL,
    Member,
    Membership,
    SessionState,
    log_change,
)
from zkpoll.coordination.loader import make_member_id
from zkpoll.coordination.url import BackendURL
from zkpoll.exceptions import CoordinatorUnreachable

__all__ = ["ZooKeeperCoordinator"]

LOG = logging.getLogger(__name__)
_OP_TIMEOUT = 10.0  # bound on any single ZooKeeper call made by the worker
#: Least seconds between two listings of one group of up to 100 members (it
#: grows with the group, to 2 s from 800 members).  A change after a quiet
#: spell is listed at once; during a join storm of N members each member lists
#: the group a few times instead of once per join (each listing returns N
#: names and costs the member O(N) work: O(N^2) per member otherwise).  Below
#: settle_time (default 5 s), so every member still sees every change in time.
RELIST_INTERVAL = 0.25
#: Seconds a vanished member's claims record is kept for late readers.
CLAIMS_RETENTION = 3600.0
#: Seconds between two sweeps of old claims records (by one member per group).
CLAIMS_SWEEP_INTERVAL = 600.0
#: What a failed ZooKeeper call raises: kazoo errors, and kazoo's timeout of an
#: async result, which is not a KazooException.
_ZK_ERRORS = (KazooException, KazooTimeoutError)
_STATES = {KazooState.CONNECTED: SessionState.CONNECTED,
           KazooState.SUSPENDED: SessionState.SUSPENDED,
           KazooState.LOST: SessionState.LOST}


class ZooKeeperCoordinator(DesiredStateCoordinator):
    """Membership in ZooKeeper through EPHEMERAL znodes (see module docstring).

    :param url: the parsed ``backend_url``
    :param opts: the ``[coordination]`` option group
    :param member_id: this member's id for the first session; every new
        session (after the old one expired) registers under a fresh id
    """

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(member_id)
        self._name = member_id.split(".", 1)[0]
        self._root = url.path if url.path != "/" else "/zkpoll"
        self._hosts = ",".join(url.hosts) or "127.0.0.1:2181"
        self._requested_timeout = url.float_param("timeout", opts.session_timeout)
        self._heartbeat = url.float_param("heartbeat", opts.heartbeat_interval)
        self._negotiated: float | None = None
        self._client = kazoo_client(url, opts, self._requested_timeout)
        self._capture_negotiated_timeout()
        self._client.add_listener(self._on_kazoo_state)
        self._session_id: int | None = None
        self._last_contact = float("-inf")
        self._beat_in_flight = False
        self._snapshots: dict[str, Membership] = {}
        self._watchers_kz: dict[str, Any] = {}
        self._dirty: set[str] = set()  # watched groups to re-list (worker thread only)
        self._relist_at: dict[str, float] = {}  # group -> earliest next listing (worker only)
        self._registered: set[str] = set()  # groups published in this session (worker only)
        self._names: dict[str, str] = {}  # group -> our znode name (worker only)
        self._published: dict[str, bytes] = {}  # group -> payload of that name (worker only)
        self._rev = 0  # publication counter of this session (worker only)
        self._attempts: dict[str, tuple[bytes, str]] = {}  # group -> unconfirmed publication
        self._cache_lock = threading.Lock()
        self._data_cache: dict[str, dict[str, Any]] = {}  # znode path -> its member data
        self._next_sweep = time.monotonic() + CLAIMS_SWEEP_INTERVAL
        self._failures = RepeatedFailure(LOG)  # worker only
        self._auth_failures = RepeatedFailure(LOG)  # kazoo's connection thread only
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- session ----------------------------------------------------------
    @property
    def last_contact(self) -> float:
        return self._last_contact

    @property
    def session_timeout(self) -> float:
        negotiated = self._negotiated
        return self._requested_timeout if negotiated is None else min(negotiated,
                                                                      self._requested_timeout)

    @property
    def hosts(self) -> str:
        """The ZooKeeper connect string."""
        return self._hosts

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """kazoo's (session id, password) of the current session, for tests."""
        return self._client.client_id

    def _capture_negotiated_timeout(self) -> None:
        """Record the server-negotiated session timeout (kazoo only logs it)."""
        conn = getattr(self._client, "_connection", None)
        original = getattr(conn, "_connect", None)
        if original is None:
            LOG.warning("kazoo internals changed: using the requested session timeout "
                        "%.1fs for the lease", self._requested_timeout)
            return

        def _connect(*args: Any, **kwargs: Any) -> Any:
            try:
                read_timeout, connect_timeout = original(*args, **kwargs)
            except (AuthFailedError, SessionClosedRequireSaslError) as exc:
                # kazoo gives up for good on these (its connection thread
                # stops or dies): retry with backoff instead, so the agent
                # recovers once the credentials or the server are fixed.
                self._auth_failures.failed("authenticate to ZooKeeper", self._explain(
                    exc, self._root))
                raise ConnectionDropped(f"authentication refused: {exc!r}") from exc
            self._auth_failures.succeeded("authenticate to ZooKeeper")
            self._negotiated = read_timeout * 1.5 / 1000.0  # kazoo: read = 2/3 negotiated
            return read_timeout, connect_timeout

        conn._connect = _connect

    # --- lifecycle ----------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="zkpoll-coordinator",
                                        daemon=True)
        self._thread.start()
        self._client.start_async()
        self._wait_connected(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._leave_all(timeout, "the session expires")
        self._stopping = True
        self._events.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self._client.stop()
            self._client.close()
        except _ZK_ERRORS as exc:  # closing a broken client must not fail stop()
            LOG.debug("kazoo stop: %s", exc)
        self._set_state(SessionState.STOPPED)

    # --- membership -----------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"ZooKeeper at {self._hosts}"

    def get_members(self, group: str, timeout: float = 10.0) -> Membership:
        try:
            members = self._read_members(group, timeout, watch=False)
        except _ZK_ERRORS as exc:
            raise CoordinatorUnreachable(f"cannot read group {group!r}: " + self._explain(
                exc, f"{self._root}/groups/{group}")) from exc
        with self._cond:
            version = self._snapshots.get(group, Membership(group)).version
        return Membership(group, tuple(members.values()), version)

    def get_groups(self, timeout: float = 10.0) -> list[str]:
        try:
            return sorted(self._client.get_children_async(f"{self._root}/groups")
                          .get(timeout=timeout))
        except NoNodeError:
            return []
        except _ZK_ERRORS as exc:
            raise CoordinatorUnreachable("cannot list groups: " + self._explain(
                exc, f"{self._root}/groups")) from exc

    def _watch_started(self, group: str) -> None:
        self._events.put(("children", group))

    def _replay(self, group: str, callback: Any) -> None:
        with self._cond:
            snapshot = self._snapshots.get(group)
        if snapshot is not None:
            self._events.put(("replay", group, callback))

    # --- kazoo callbacks: enqueue only, never block ---------------------------
    def _on_kazoo_state(self, state: KazooState) -> None:
        self._events.put(("state", state, self._client.client_state))

    def _group_watcher(self, group: str) -> Any:
        watcher = self._watchers_kz.get(group)
        if watcher is None:
            def watcher(event: Any, _group: str = group) -> None:
                self._events.put(("children", _group))
            self._watchers_kz[group] = watcher
        return watcher

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
            if time.monotonic() >= next_beat:
                self._send_heartbeat()
                next_beat = time.monotonic() + self._heartbeat

    def _handle(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            kind = event[0]
            if kind == "state":
                self._dirty |= self._on_state(event[1], event[2])
            elif kind == "children":
                self._dirty |= set(self.watched_groups) if event[1] is None else {event[1]}
            elif kind == "replay":
                with self._cond:
                    snapshot = self._snapshots.get(event[1])
                if snapshot is not None:
                    self._call_all([event[2]], snapshot)
        if self._state is not SessionState.CONNECTED:
            return  # everything stays dirty until the next CONNECTED
        self._reconcile()
        now = time.monotonic()
        for group in sorted(self._dirty):
            if self._relist_at.get(group, 0.0) > now:
                continue  # re-listed moments ago: coalesce this change with the next ones
            size = len(self._snapshots.get(group, Membership(group)).members)
            # each listing costs every member O(N): coalesce more in big groups
            self._relist_at[group] = now + min(RELIST_INTERVAL * max(1.0, size / 100), 2.0)
            if self._refresh(group):
                self._dirty.discard(group)
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
            return set(self.watched_groups)  # level-triggered: re-list after any reconnect
        self._set_state(_STATES[state])
        if state is KazooState.LOST:
            self._forget_applied()
        return set()

    def _new_session(self) -> None:
        old = self.member_id
        self.member_id = make_member_id(self._name)
        self._registered.clear()
        self._names.clear()
        self._published.clear()
        self._attempts.clear()
        self._forget_applied()
        LOG.warning("ZooKeeper session expired: member %s re-registers as %s",
                    old, self.member_id)

    def _send_heartbeat(self) -> None:
        """Renew the lease with one cheap read; at most one is ever in flight.

        kazoo detects a dead connection only when no request is sent for
        half its read timeout (every request counts as a ping).  A steady
        stream of heartbeats would hide a blackholed connection for ever,
        so a new heartbeat waits until the previous one is answered.
        """
        if self._state is SessionState.STOPPED or self._stopping or self._beat_in_flight:
            return
        sent = time.monotonic()

        def answered(result: Any) -> None:  # kazoo's thread: record only
            self._beat_in_flight = False
            if result.exception is None and sent > self._last_contact:
                self._last_contact = sent
        self._beat_in_flight = True
        try:
            self._client.exists_async(self._root).rawlink(answered)
        except _ZK_ERRORS:
            self._beat_in_flight = False  # not connected: no contact to record

    def _members_path(self, group: str) -> str:
        return f"{self._root}/groups/{group}/members"

    def _claims_path(self, group: str, member_id: str | None = None) -> str:
        return f"{self._root}/groups/{group}/claims/{member_id or self.member_id}"

    def _reconcile(self) -> None:
        """Make our znodes match what the caller asked for: member data, then
        claims records (only in a group we are registered in, this session)."""
        for group, (data, gen) in self._pending().items():
            what = f"publish member {self.member_id} in group {group}"
            try:
                if data is None:
                    self._delete_member(group)
                    self._registered.discard(group)
                else:
                    if group not in self._registered:  # first publish in this session
                        registration = self._registration(group)
                        if registration is None:
                            continue
                        data, gen = registration
                    self._publish(group, data)
                    self._registered.add(group)
            except _ZK_ERRORS as exc:
                self._failures.failed(what, self._explain(exc, self._members_path(group)))
                return
            self._failures.succeeded(what)
            self._mark_applied(group, gen)
        for group, record, gen in self._pending_claims():
            if group not in self._registered:
                continue
            path = self._claims_path(group)
            try:
                self._write_claims(path, record)
            except _ZK_ERRORS as exc:
                self._failures.failed(f"write the claims of {self.member_id}",
                                      self._explain(exc, path))
                return
            self._claims_written(group, gen)

    def _write_claims(self, path: str, record: dict[str, Any]) -> None:
        payload = json.dumps(record, sort_keys=True).encode()
        try:
            self._client.set_async(path, payload).get(timeout=_OP_TIMEOUT)
        except NoNodeError:
            self._client.ensure_path(path.rsplit("/", 1)[0])
            try:
                self._client.create_async(path, payload).get(timeout=_OP_TIMEOUT)
            except NodeExistsError:  # our own earlier attempt got through
                self._client.set_async(path, payload).get(timeout=_OP_TIMEOUT)

    def read_claims(self, group: str, member_ids: Any,
                    timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        ids = list(member_ids)
        pending = [(m, self._client.get_async(self._claims_path(group, m))) for m in ids]
        result: dict[str, dict[str, Any]] = {}
        for member_id, async_result in pending:
            try:
                raw, _ = async_result.get(timeout=timeout)
            except NoNodeError:
                result[member_id] = {}  # never claimed anything
                continue
            except _ZK_ERRORS as exc:
                raise CoordinatorUnreachable(f"cannot read the claims of {member_id}: "
                                             + self._explain(exc, self._claims_path(
                                                 group, member_id))) from exc
            result[member_id] = _decode(raw, self._claims_path(group, ""), member_id)
        return result

    # --- coordination records: in the caller's thread, see _records_zk -----------
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

    def _explain(self, exc: BaseException, path: str) -> str:
        """What a failed call means, for the operator."""
        return explain(exc, self._hosts, path)

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
            results = transaction.commit_async().get(timeout=_OP_TIMEOUT)
            failures = [r for r in results if isinstance(r, Exception)]
            if failures and not self._is_ours(path):
                raise failures[0]
        self._names[group], self._published[group] = name, payload
        self._attempts.pop(group, None)

    def _create_member(self, group: str, path: str, payload: bytes) -> None:
        try:
            self._client.create_async(path, payload, ephemeral=True).get(timeout=_OP_TIMEOUT)
        except NoNodeError:
            self._client.ensure_path(self._members_path(group))
            self._client.create_async(path, payload, ephemeral=True).get(timeout=_OP_TIMEOUT)
        except NodeExistsError:
            if not self._is_ours(path):
                raise  # another session's node: retried until it expires
            return
        LOG.info("member %s registered in group %s", self.member_id, group)

    def _is_ours(self, path: str) -> bool:
        """True when ``path`` exists as an ephemeral of our session (a retried
        call whose first attempt got through)."""
        stat = self._client.exists_async(path).get(timeout=_OP_TIMEOUT)
        return stat is not None and stat.ephemeralOwner == self._session_id

    def _delete_member(self, group: str) -> None:
        name = self._names.pop(group, None)
        self._published.pop(group, None)
        if name is None:
            return
        try:
            self._client.delete_async(f"{self._members_path(group)}/{name}") \
                .get(timeout=_OP_TIMEOUT)
            LOG.info("member %s left group %s", self.member_id, group)
        except NoNodeError:
            pass

    def _refresh(self, group: str) -> bool:
        """Re-list a watched group (re-arming watches); publish a snapshot if changed.

        Returns False when ZooKeeper could not be read (retried later).
        """
        try:
            members = self._read_members(group, _OP_TIMEOUT, watch=True,
                                         with_data=self._wants_data(group))
        except _ZK_ERRORS as exc:
            self._failures.failed(f"read group {group}",
                                  self._explain(exc, f"{self._root}/groups/{group}"))
            return False
        self._failures.succeeded(f"read group {group}")
        with self._cond:
            previous = self._snapshots.get(group, Membership(group))
            snapshot = Membership(group, tuple(members.values()), previous.version + 1)
            if snapshot.same_members(previous) and group in self._snapshots:
                return True
            self._snapshots[group] = snapshot
        log_change(LOG, previous, snapshot)
        self._notify(snapshot)
        return True

    def _read_members(self, group: str, timeout: float, watch: bool,
                      with_data: bool = True) -> dict[str, Member]:
        """List the group (one request); read the data of names not seen yet
        when ``with_data``."""
        members_path = self._members_path(group)
        watcher = self._group_watcher(group) if watch else None
        while True:
            try:
                children = self._client.get_children_async(members_path, watch=watcher) \
                    .get(timeout=timeout)
                break
            except NoNodeError:
                if not watch:
                    return {}
                # Be told when the group appears.  If it appeared in between,
                # exists() armed only a data watch: list it again instead.
                if self._client.exists_async(members_path, watch=watcher) \
                        .get(timeout=timeout) is None:
                    return {}
        named: dict[str, tuple[int, str, dict[str, Any]]] = {}  # id -> (rev, child, fields)
        for child in children:
            parsed = parse_member_name(child)
            if parsed is None:  # a member of an older protocol
                named[child] = (-1, child, {"protocol": 1})
                continue
            member_id, rev, fields = parsed
            if member_id not in named or named[member_id][0] < rev:
                named[member_id] = (rev, child, dict(fields, protocol=PROTOCOL))
        data = self._read_data(members_path, [c for _, c, _ in named.values()], timeout) \
            if with_data else {}
        return {member_id: Member(member_id, {**data.get(child, {}), **fields})
                for member_id, (_, child, fields) in named.items()}

    def _read_data(self, members_path: str, children: list[str],
                     timeout: float) -> dict[str, dict[str, Any]]:
        """Data of these member znodes, read once per name (names change with the data)."""
        paths = {child: f"{members_path}/{child}" for child in children}
        with self._cache_lock:
            known = {c: self._data_cache[p] for c, p in paths.items() if p in self._data_cache}
        pending = [(c, self._client.get_async(p)) for c, p in paths.items() if c not in known]
        for child, async_result in pending:
            try:
                raw, _ = async_result.get(timeout=timeout)
            except NoNodeError:
                continue  # replaced or gone between the listing and the read
            known[child] = _decode(raw, members_path, child)
        with self._cache_lock:
            for path in [p for p in self._data_cache if p.startswith(members_path + "/")]:
                if path.rsplit("/", 1)[1] not in paths:
                    del self._data_cache[path]
            self._data_cache.update({paths[c]: d for c, d in known.items()})
        return known

    def _sweep_claims(self) -> None:
        """Delete claims records whose member is gone for ``CLAIMS_RETENTION``
        seconds; done by the first member (by id) of each group we are in."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + CLAIMS_SWEEP_INTERVAL
        for group in sorted(self._registered):
            with self._cond:
                snapshot = self._snapshots.get(group)
            if snapshot is None or not snapshot.member_ids \
                    or snapshot.member_ids[0] != self.member_id:
                continue
            parent = self._claims_path(group, "").rstrip("/")
            try:
                owners = self._client.get_children_async(parent).get(timeout=_OP_TIMEOUT)
            except _ZK_ERRORS:
                continue
            gone = [o for o in owners if o not in snapshot.member_ids]
            cutoff = (time.time() - CLAIMS_RETENTION) * 1000
            for owner in gone:
                try:
                    stat = self._client.exists_async(f"{parent}/{owner}").get(_OP_TIMEOUT)
                    if stat is not None and stat.mtime < cutoff:
                        self._client.delete_async(f"{parent}/{owner}").get(_OP_TIMEOUT)
                except _ZK_ERRORS as exc:
                    LOG.debug("claims sweep of %s: %s", parent, exc)


def _decode(raw: bytes, path: str, child: str) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, ValueError):
        LOG.warning("member %s/%s has undecodable data; treating it as empty", path, child)
        return {}
    return data if isinstance(data, dict) else {}


