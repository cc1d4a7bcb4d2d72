"""The ZooKeeper backend's member views: one children watch per group.

Member znodes are named by what rings need (see ``_names``): listing a
group's children is all a membership change costs, and it re-arms the
group's one children watch.  A member's full data is read only for a
watcher that asks for it (``with_data``), once per name: a name never
changes its data.  Each listed name is parsed once and its :class:`Member`
built once, so an unchanged member is the same object in the next
snapshot.  The worker re-lists a watched group on every event and every
reconnect, at most every :data:`RELIST_INTERVAL` s (more in big groups).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kazoo.exceptions import NoNodeError

from zkpoll.coordination.base import PROTOCOL, Member, Membership, log_change
from zkpoll.coordination.member_data import MemberData, decode_member_data
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper._names import parse_member_name
from zkpoll.coordination.zookeeper.session import (
    OP_TIMEOUT,
    ZK_ERRORS,
    ZooKeeperSession,
)
from zkpoll.exceptions import CoordinatorUnreachable

__all__ = ["RELIST_INTERVAL", "ZooKeeperListing"]

LOG = logging.getLogger(__name__)
#: Least seconds between two listings of one group of up to 100 members (it
#: grows with the group, to 2 s from 800 members).  A change after a quiet
#: spell is listed at once; during a join storm of N members each member lists
#: the group a few times instead of once per join (each listing returns N
#: names and costs the member O(N) work: O(N^2) per member otherwise).  Below
#: settle_time (default 5 s), so every member still sees every change in time.
RELIST_INTERVAL = 0.25


class ZooKeeperListing(ZooKeeperSession):
    """Group listings and immutable :class:`Membership` snapshots (module docstring)."""

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(url, opts, member_id)
        self._snapshots: dict[str, Membership] = {}
        self._watchers_kz: dict[str, Any] = {}
        self._dirty: set[str] = set()  # watched groups to re-list (worker thread only)
        self._relist_at: dict[str, float] = {}  # group -> earliest next listing (worker only)
        self._cache_lock = threading.Lock()
        self._data_cache: dict[str, dict[str, Any]] = {}  # znode path -> its member data
        self._listed: dict[str, dict[str, _Listed]] = {}  # group -> its names (worker only)

    def get_members(self, group: str, timeout: float = 10.0) -> Membership:
        try:
            members = self._read_members(group, timeout, watch=False)
        except ZK_ERRORS as exc:
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
        except ZK_ERRORS as exc:
            raise CoordinatorUnreachable("cannot list groups: " + self._explain(
                exc, f"{self._root}/groups")) from exc

    def _watch_started(self, group: str) -> None:
        self._events.put(("children", group))

    def _replay(self, group: str, callback: Any) -> None:
        with self._cond:
            snapshot = self._snapshots.get(group)
        if snapshot is not None:
            self._events.put(("replay", group, callback))

    def _group_watcher(self, group: str) -> Any:
        """kazoo's children watch of ``group``: enqueue only, never block."""
        watcher = self._watchers_kz.get(group)
        if watcher is None:
            def watcher(event: Any, _group: str = group) -> None:
                self._events.put(("children", _group))
            self._watchers_kz[group] = watcher
        return watcher

    def _relist_due(self, now: float) -> None:
        """Worker: re-list the dirty groups not listed moments ago."""
        for group in sorted(self._dirty):
            if self._relist_at.get(group, 0.0) > now:
                continue  # re-listed moments ago: coalesce this change with the next ones
            self._relist_at[group] = now + self._relist_interval(group)
            if self._refresh(group):
                self._dirty.discard(group)

    def _relist_interval(self, group: str) -> float:
        """Least seconds between two listings of ``group``: each listing costs every
        member O(N), so big groups coalesce more changes."""
        with self._cond:
            size = len(self._snapshots.get(group, Membership(group)).members)
        return min(RELIST_INTERVAL * max(1.0, size / 100), 2.0)

    def watch_delay(self) -> float:
        """The group's re-listing interval (the longest a change waits to be
        listed, see :data:`RELIST_INTERVAL`) plus three of the largest recent
        round trips: the watch event, the listing, the new member's data.  No
        round trip measured yet: they count as 0."""
        relist = max((self._relist_interval(g) for g in self.watched_groups),
                     default=RELIST_INTERVAL)
        return relist + 3 * (self._clock.round_trip() or 0.0)

    def _refresh(self, group: str) -> bool:
        """Re-list a watched group (re-arming watches); publish a snapshot if changed.

        Returns False when ZooKeeper could not be read (retried later).
        """
        try:
            members = self._read_members(group, OP_TIMEOUT, watch=True,
                                         with_data=self._wants_data(group))
        except ZK_ERRORS as exc:
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
        listed = self._listed.get(group, {}) if watch else {}
        fresh: dict[str, _Listed] = {}
        named: dict[str, _Listed] = {}  # member id -> its newest name
        for child in children:
            entry = listed.get(child)
            if entry is None:
                entry = _Listed.parse(child)
            fresh[child] = entry
            newest = named.get(entry.member_id)
            if newest is None or newest.rev < entry.rev:
                named[entry.member_id] = entry
        if watch:  # the worker's listings: parse each name once, build each Member once
            self._listed[group] = fresh
        if not with_data:
            return {member_id: entry.member for member_id, entry in named.items()}
        data = self._read_data(members_path, [e.child for e in named.values()], timeout)
        return {member_id: entry.with_data(data.get(entry.child))
                for member_id, entry in named.items()}

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
            known[child] = decode_member_data(raw, f"{members_path}/{child}")
        with self._cache_lock:
            for path in [p for p in self._data_cache if p.startswith(members_path + "/")]:
                if path.rsplit("/", 1)[1] not in paths:
                    del self._data_cache[path]
            self._data_cache.update({paths[c]: d for c, d in known.items()})
        return known


class _Listed:
    """One listed member znode name, parsed once, with its :class:`Member` (a name
    never changes its data: a change of data is a new name)."""

    __slots__ = ("_full", "child", "member", "member_id", "rev")

    def __init__(self, child: str, member_id: str, rev: int, fields: dict[str, Any]) -> None:
        self.child, self.member_id, self.rev = child, member_id, rev
        self.member = Member(member_id, fields)  #: the member as its name tells it
        self._full: Member | None = None

    @classmethod
    def parse(cls, child: str) -> _Listed:
        parsed = parse_member_name(child)
        if parsed is None:  # a member of an older protocol
            return cls(child, child, -1, {MemberData.PROTOCOL: 1})
        member_id, rev, fields = parsed
        fields[MemberData.PROTOCOL] = PROTOCOL
        return cls(child, member_id, rev, fields)

    def with_data(self, data: dict[str, Any] | None) -> Member:
        """The member with its full data (None: not readable, the name only)."""
        if data is None:
            return self.member
        if self._full is None:
            self._full = Member(self.member_id, {**data, **self.member.data})
        return self._full
