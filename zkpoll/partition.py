"""Partitioning: "which of these resources are mine for the cycle starting at T?"

A :class:`Partition` is this agent's membership in one group.  Members
publish ``active_at`` and ``leave_at`` (wall-clock seconds) in their member
data; the ring for a cycle starting at ``T`` is built from the members with
``active_at <= T < leave_at``.  Every agent evaluates the same rule on the
same member data, so all agree on the owner of every resource for every
cycle, even though they hear of membership changes at slightly different
moments, as long as ``settle_time`` exceeds the worst watch delay plus the
clock skew between agents (NTP).

* A joining member announces ``active_at = now + settle_time``.
* A leaving member announces ``leave_at = now + settle_time``, keeps
  polling the cycles that start before it, then deletes its member node.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mmh3

from zkpoll.coordination import Coordinator, HashRing, Member, Membership
from zkpoll.coordination.ring import SEED
from zkpoll.exceptions import CoordinationError

__all__ = ["LostCallback", "Partition", "eligible_members", "ring_epoch"]

#: ``callback(gone)``: members whose node vanished, as they were last seen
#: (their data holds ``last_completed_cycle``).
LostCallback = Callable[[dict[str, Member]], None]

LOG = logging.getLogger(__name__)
_INF = float("inf")


def _as_time(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else default


def eligible_members(membership: Membership, at: float) -> dict[str, float]:
    """Member id to weight of the members active at wall-clock time ``at``."""
    result: dict[str, float] = {}
    for member in membership.members:
        active_at = _as_time(member.data.get("active_at"), 0.0)
        leave_at = _as_time(member.data.get("leave_at"), _INF)
        if active_at <= at < leave_at:
            result[member.member_id] = member.weight
    return result


def ring_epoch(membership: Membership, at: float) -> str:
    """A short id of the ring in force at ``at``, the same in every process."""
    eligible = sorted(eligible_members(membership, at).items())
    text = ";".join(f"{member}={weight:g}" for member, weight in eligible)
    return format(mmh3.hash(text, SEED, signed=False), "08x")


class Partition:
    """This agent's share of one group's work.

    :param coordinator: a started coordinator
    :param group: the group name, e.g. ``central`` or ``prefix-central``
    :param settle_time: seconds between announcing a join or leave and its
        taking effect; larger than the worst watch delay plus clock skew
    """

    def __init__(self, coordinator: Coordinator, group: str, settle_time: float) -> None:
        self.coordinator = coordinator
        self.group = group
        self.settle_time = settle_time
        self._lock = threading.Lock()
        self._membership = Membership(group)
        self._data: dict[str, Any] | None = None
        self._rings: dict[frozenset[tuple[str, float]], HashRing] = {}
        self._cancel_watch: Any = None
        self._lost_callbacks: list[LostCallback] = []
        self._confirmed: dict[str, int] = {}  # source -> newest cycle confirmed polled
        self._confirmed_at = 0.0               # wall time of the newest confirmation
        self._announced_as: str | None = None  # member id of the last registration logged
        coordinator.set_registration_hook(group, self._on_registration)

    def on_members_lost(self, callback: LostCallback) -> None:
        """Call ``callback(gone)`` (on the coordinator's thread: do not block)
        when members disappear (crash, expiry, or the end of a graceful leave)."""
        self._lost_callbacks.append(callback)

    def _on_registration(self, group: str, data: dict[str, Any]) -> dict[str, Any]:
        """Every (re-)registration announces a fresh ``active_at``: a member
        registering late (backend down at start, or a new session after the
        old one expired) must not become active without a settle period."""
        now = time.time()
        with self._lock:
            self._confirmed.clear()  # a new session: nothing is confirmed in it yet
            own = self._data if self._data is not None else data
            active_at = max(float(own.get("active_at") or 0.0), now + self.settle_time)
            own["active_at"] = active_at
            data = dict(data, active_at=active_at, leave_at=own.get("leave_at"))
        member_id = self.coordinator.member_id
        # Retries of a refused first publish come back here at every
        # heartbeat: say it once per member id (i.e. per session).
        level = logging.DEBUG if member_id == self._announced_as else logging.INFO
        self._announced_as = member_id
        LOG.log(level, "registering in group %s as %s: active from %s", group, member_id,
                _fmt(active_at))
        return data

    # --- membership --------------------------------------------------------
    def join(self, data: Mapping[str, Any], wait: float | None = None) -> float:
        """Announce this member; returns ``active_at``."""
        active_at = time.time() + self.settle_time
        with self._lock:
            self._data = dict(data, active_at=active_at, leave_at=None)
            published = dict(self._data)
        if self._cancel_watch is None:
            self._cancel_watch = self.coordinator.watch(self.group, self._on_membership)
        self.coordinator.join(self.group, published, wait=wait)
        LOG.info("joining group %s as %s: active from %s (settle %.1fs)", self.group,
                 self.coordinator.member_id, _fmt(active_at), self.settle_time)
        return active_at

    def announce_leave(self, wait: float | None = None,
                       extra: Mapping[str, Any] | None = None) -> float:
        """Announce a graceful leave; returns ``leave_at``.

        An earlier announced ``leave_at`` is kept: moving it later would put
        this member back into rings other agents may already have used.
        """
        with self._lock:
            current = None if self._data is None else self._data.get("leave_at")
        leave_at = time.time() + self.settle_time
        if isinstance(current, (int, float)) and current <= leave_at:
            leave_at = float(current)
        self.update(dict(extra or {}, leave_at=leave_at), wait=wait)
        LOG.info("leaving group %s: last cycle starts before %s", self.group, _fmt(leave_at))
        return leave_at

    def rejoin(self, wait: float | None = None) -> float:
        """Undo an announced leave: active again from ``now + settle_time``."""
        active_at = time.time() + self.settle_time
        self.update({"active_at": active_at, "leave_at": None, "withdrawn": None}, wait=wait)
        LOG.info("rejoining group %s: active from %s", self.group, _fmt(active_at))
        return active_at

    def leave(self, wait: float | None = None) -> None:
        """Delete this member from the group.

        Peers decide whether to re-poll a vanished member's cycle from the
        ``polling_cycle`` it confirmed; a confirmation made just before the
        delete could reach them after it.  So the delete waits until our
        newest confirmation is ``settle_time`` old: the same bound on watch
        delays that joins rely on.
        """
        with self._lock:
            linger = self._confirmed_at + self.settle_time - time.time()
            self._data = None
        if linger > 0:
            LOG.info("group %s: leaving in %.1fs, once every peer has seen our last "
                     "cycle claim", self.group, linger)
            time.sleep(min(linger, self.settle_time))
        self.coordinator.leave(self.group, wait=wait)
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None

    def update(self, data: Mapping[str, Any], wait: float | None = None) -> None:
        """Merge ``data`` into this member's published data."""
        with self._lock:
            if self._data is None:
                return
            self._data.update(data)
        self.coordinator.update(self.group, data, wait=wait)

    def announce_cycle(self, source: str, index: int, timeout: float) -> bool:
        """Write-ahead: have the backend confirm that we poll cycle ``index`` of
        ``source`` before we do (``polling_cycle`` in our member data).

        Survivors catch up a vanished member's cycle only when it never
        announced it, so a member cut off from the backend either gets this
        confirmed (and polls; nobody re-polls) or does not (and does not
        poll; the survivors will).  False when not confirmed in ``timeout``.
        """
        with self._lock:
            if self._data is None:
                return False
            if self._confirmed.get(source, -1) >= index:
                return True
            cycles = dict(self._data.get("polling_cycle") or {}, **{source: index})
        try:
            self.update({"polling_cycle": cycles}, wait=timeout)
        except CoordinationError as exc:
            LOG.warning("group %s: cycle %d of %s not confirmed by the backend (%s): not "
                        "polling it", self.group, index, source, exc)
            return False
        with self._lock:
            self._confirmed[source] = max(index, self._confirmed.get(source, -1))
            self._confirmed_at = time.time()
        return True

    @property
    def data(self) -> dict[str, Any] | None:
        """What this member publishes (None when not joined)."""
        with self._lock:
            return None if self._data is None else dict(self._data)

    def _on_membership(self, membership: Membership) -> None:
        with self._lock:
            previous, self._membership = self._membership, membership
        if previous.member_ids == membership.member_ids:
            return
        gone = set(previous.member_ids) - set(membership.member_ids)
        joined = set(membership.member_ids) - set(previous.member_ids)
        LOG.info("group %s: %d member(s); joined: %s; gone: %s", self.group,
                 len(membership.members), ", ".join(sorted(joined)) or "-",
                 ", ".join(sorted(gone)) or "-")
        # Graceful leavers are included: they confirmed every cycle they
        # polled (polling_cycle) before leaving, so catch-up finds nothing.
        lost = {m.member_id: m for m in previous.members if m.member_id in gone}
        lost.pop(self.coordinator.member_id, None)
        if lost:
            for callback in list(self._lost_callbacks):
                try:
                    callback(lost)
                except Exception:
                    LOG.exception("lost-member listener failed")

    @property
    def membership(self) -> Membership:
        """The latest snapshot of the group."""
        with self._lock:
            return self._membership

    # --- ownership ----------------------------------------------------------
    def ring_at(self, at: float) -> HashRing:
        """The ring for a cycle starting at ``at`` (this member's own data included)."""
        with self._lock:
            membership = self._membership
            own = None if self._data is None else dict(self._data)
        eligible = eligible_members(membership, at)
        me = self.coordinator.member_id
        # Our own data is authoritative even before our watch has seen it.
        eligible.pop(me, None)
        if own is not None:
            weight = own.get("weight", 1)
            if _as_time(own.get("active_at"), 0.0) <= at < _as_time(own.get("leave_at"), _INF):
                eligible[me] = float(weight) if isinstance(weight, (int, float)) else 1.0
        key = frozenset(eligible.items())
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) > 16:
                self._rings.clear()
            ring = self._rings[key] = HashRing(eligible)
        return ring

    def owned(self, keys: Sequence[str], at: float) -> list[str]:
        """The keys this member owns for the cycle starting at ``at``."""
        return self.ring_at(at).owned_by(self.coordinator.member_id, keys)

    def registered(self) -> bool:
        """True when our own latest snapshot of the group lists this member."""
        return self.coordinator.member_id in self.membership.member_ids

    def contact_age(self) -> float:
        """Seconds since the backend surely heard from us (our view's age)."""
        return time.monotonic() - self.coordinator.last_contact


def _fmt(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
