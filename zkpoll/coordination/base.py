"""The coordinator interface every membership backend implements.

A coordinator keeps this process's *membership* in named groups and tells
the caller who else is there.  It knows nothing of polling.  The contract:

* :meth:`Coordinator.join`, :meth:`Coordinator.update` and
  :meth:`Coordinator.leave` record what this member wants; the backend
  makes it true as soon as it can, and again after a lost session
  (re-registration is automatic).  ``wait`` blocks until it is true.
* :meth:`Coordinator.watch` pushes a fresh immutable :class:`Membership`
  on every change, from the coordinator's own thread (never the backend
  client's), and once right away if the group is already known.
* :attr:`Coordinator.state` is a :class:`SessionState`; listeners hear
  every transition.  :attr:`Coordinator.last_contact` is the monotonic time
  of the last request the server is known to have received, the basis of
  the self-fencing lease.
* Coordination records (:meth:`Coordinator.write_records` and friends) are
  small JSON objects written by compare-and-set, fenced by this member's
  registration in a group: only a live member wins a write.
* :meth:`Coordinator.clock` is this member's clock offset against the
  backend's clock, measured from answers that carry the backend's time;
  :meth:`Coordinator.watch_delay` how late a membership change may reach
  this member (:mod:`zkpoll.coordination.backend_clock`).
* Handoff inboxes (:mod:`zkpoll.coordination.handoff`, where backends that
  have them say ``supports_handoffs``).
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from zkpoll.coordination._records import (
    EncodedWrite,
    check_keys,
    check_kind,
    decode_value,
    encode_value,
)
from zkpoll.coordination.backend_clock import BackendClock
from zkpoll.coordination.clock import ClockEstimator
from zkpoll.coordination.handoff import HandoffInbox
from zkpoll.coordination.membership import Member, Membership, log_change
from zkpoll.coordination.url import BackendURL
from zkpoll.exceptions import CoordinationError

__all__ = [
    "PROTOCOL",
    "Coordinator",
    "Member",
    "Membership",
    "MembershipCallback",
    "Record",
    "RecordWrite",
    "RegistrationHook",
    "SessionState",
    "StateCallback",
    "log_change",
]

LOG = logging.getLogger(__name__)

#: Membership protocol, published in member data: 2 = stable member data
#: (changes only on registration and announcements) and per-cycle claims
#: records where nobody watches them.  Members without it are of zkpoll
#: 0.x (claims in member data) and cannot share a group with this version.
PROTOCOL = 2


class SessionState(enum.Enum):
    """Our view of the session with the backend."""

    CONNECTING = "connecting"  #: started, never connected yet
    CONNECTED = "connected"    #: registered and hearing from the server
    SUSPENDED = "suspended"    #: connection lost; the session may still live
    LOST = "lost"              #: session expired; re-registering with a new one
    STOPPED = "stopped"        #: stop() was called


@dataclass(frozen=True)
class Record:
    """A coordination record as read or written: a JSON object and its version.

    ``version`` is opaque and backend-specific (ZooKeeper: the znode's data
    version; Redis: a write counter; Memcached: the CAS token): give it back
    unchanged in a :class:`RecordWrite` to replace exactly this value.
    """

    value: dict[str, Any]
    version: Any


@dataclass(frozen=True)
class RecordWrite:
    """One compare-and-set of :meth:`Coordinator.write_records`.

    ``key`` matches ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``; ``value`` is a JSON
    object of at most 64 KiB serialized; ``version`` is the one read, or None
    to create the record only if it does not exist.
    """

    key: str
    value: Mapping[str, Any]
    version: Any | None = None


MembershipCallback = Callable[[Membership], None]
StateCallback = Callable[[SessionState], None]
#: ``hook(group, data) -> data``: called before publishing in a NEW session;
#: the fields it adds or changes are published with the registration.
RegistrationHook = Callable[[str, dict[str, Any]], Mapping[str, Any]]


class Coordinator(BackendClock, HandoffInbox, abc.ABC):
    """Base class of membership backends (one module per backend).

    Subclasses implement the abstract methods; listener bookkeeping and
    notification live here.  Callbacks run on one coordinator thread, in
    order; a callback that raises is logged and does not stop the others.
    """

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self._listeners_lock = threading.Lock()
        self._state_listeners: list[StateCallback] = []
        self._watchers: dict[str, list[MembershipCallback]] = {}
        self._data_watchers: set[tuple[str, int]] = set()  # (group, id(callback)) wanting data
        self._state = SessionState.CONNECTING
        self._registration_hooks: dict[str, RegistrationHook] = {}
        self._clock = ClockEstimator()  # backends add the samples their answers carry

    # --- lifecycle -------------------------------------------------------
    @abc.abstractmethod
    def start(self, timeout: float | None = None) -> None:
        """Start talking to the backend; with a timeout, wait until connected.

        :raises CoordinatorUnreachable: not connected within ``timeout``
            (the coordinator keeps trying in the background).
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Leave every group, close the session and stop background threads."""

    #: ``forgetter(url, opts, group, timeout)``: the backend's way to remove an empty
    #: group (no coordinator needed); None when it cannot.
    forgetter: ClassVar[Callable[[BackendURL, Any, str, float], None] | None] = None

    @classmethod
    def forget_group(cls, url: BackendURL, opts: Any, group: str, timeout: float) -> bool:
        """Remove the empty ``group`` from the backend at ``url`` with the backend's
        :attr:`forgetter` (see :func:`zkpoll.coordination.admin.forget_group` for the
        errors); False when this backend cannot forget groups."""
        if cls.forgetter is None:
            return False
        cls.forgetter(url, opts, group, timeout)
        return True

    # --- membership ------------------------------------------------------
    @abc.abstractmethod
    def join(self, group: str, data: Mapping[str, Any] | None = None,
             wait: float | None = None) -> None:
        """Become a member of ``group`` with ``data`` (JSON-serialisable)."""

    @abc.abstractmethod
    def update(self, group: str, data: Mapping[str, Any],
               wait: float | None = None) -> None:
        """Merge ``data`` into this member's published data in ``group``.

        :raises NotJoined: the member has not joined ``group``.
        """

    @abc.abstractmethod
    def leave(self, group: str, wait: float | None = None) -> None:
        """Stop being a member of ``group`` (no error if not a member)."""

    @abc.abstractmethod
    def get_members(self, group: str, timeout: float = 10.0) -> Membership:
        """Read the group from the backend now (blocking, bounded)."""

    @abc.abstractmethod
    def get_groups(self, timeout: float = 10.0) -> list[str]:
        """Return the names of every group in the backend."""

    @abc.abstractmethod
    def _watch_started(self, group: str) -> None:
        """Begin tracking ``group`` (called on the first watcher)."""

    # --- session ---------------------------------------------------------
    @property
    def state(self) -> SessionState:
        """The current :class:`SessionState`."""
        return self._state

    @property
    @abc.abstractmethod
    def last_contact(self) -> float:
        """``time.monotonic()`` of the last request the server surely received."""

    @property
    @abc.abstractmethod
    def session_timeout(self) -> float:
        """Seconds after last contact at which the server may expire us."""

    def lease_remaining(self, margin: float = 0.0) -> float:
        """Seconds left before the server may consider this member dead, less ``margin``."""
        return self.last_contact + self.session_timeout - margin - time.monotonic()

    def set_registration_hook(self, group: str, hook: RegistrationHook | None) -> None:
        """Let ``hook(group, data)`` rewrite this member's data before every
        registration in a new session (the first one and each one after the
        old session was lost).  The returned dict replaces the data that
        :meth:`join`/:meth:`update` asked for, from then on.  Partitioning
        uses it to announce a fresh ``active_at`` after re-registering.
        """
        with self._listeners_lock:
            if hook is None:
                self._registration_hooks.pop(group, None)
            else:
                self._registration_hooks[group] = hook

    def _registration_changes(self, group: str, data: dict[str, Any]) -> dict[str, Any]:
        """The fields the group's registration hook adds to or changes in ``data``
        (backends call this, without holding their own locks)."""
        with self._listeners_lock:
            hook = self._registration_hooks.get(group)
        if hook is None:
            return {}
        result = hook(group, dict(data))
        return {k: v for k, v in result.items() if k not in data or data[k] != v}

    # --- the claims record ---------------------------------------------------
    @abc.abstractmethod
    def put_claims(self, group: str, record: Mapping[str, Any]) -> int:
        """Ask for this member's claims record in ``group`` to be ``record``
        (replaced whole; JSON-serialisable); returns its generation at once.

        The record lives where no peer watches it (per-cycle writes cost no
        watch fires); peers read it with :meth:`read_claims` after this
        member vanished.  The backend writes it only while this member is
        registered in the current session.
        """

    @abc.abstractmethod
    def wait_claims(self, group: str, gen: int, timeout: float) -> bool:
        """True once a record of generation ``gen`` or newer is written and
        this member was still registered then; False after ``timeout``, or
        at once when the session that asked for it has ended."""

    @abc.abstractmethod
    def read_claims(self, group: str, member_ids: Iterable[str],
                    timeout: float = 10.0) -> dict[str, dict[str, Any]]:
        """The claims records of these members (``{}`` for a member without one).

        :raises CoordinationError: the backend could not be read in time.
        """

    # --- coordination records ---------------------------------------------------
    def read_records(self, kind: str, keys: Iterable[str],
                     timeout: float = 10.0) -> dict[str, Record]:
        """The records of ``kind`` under these keys; a missing key is absent.

        :raises ValueError: an invalid kind or key.
        :raises CoordinationError: the backend failed (:class:`CoordinatorUnreachable`
            when it did not answer within ``timeout`` s).
        """
        kind, wanted = check_kind(kind), check_keys(keys)
        if not wanted:
            return {}
        raw = self._read_records(kind, wanted, timeout)
        return {key: Record(decode_value(raw[key][0], f"{kind}/{key}"), raw[key][1])
                for key in wanted if key in raw}

    def write_records(self, kind: str, writes: Sequence[RecordWrite], fence_group: str,
                      timeout: float = 10.0) -> dict[str, Record | None]:
        """Compare-and-set each write; the result maps every key to the record
        now stored (its new version) or to None when the write lost.

        A write loses when the stored version is not ``write.version`` (or,
        for ``version=None``, when the record exists), or when the fence
        fails: this member is not registered in ``fence_group`` in its
        current session at the time of the write.  Writes are independent
        (not one transaction) and batched: thousands per call are fine.

        :raises ValueError: an invalid kind, key, value or version, or a key
            given twice (checked before anything is written).
        :raises CoordinationError: the backend failed, or the coordinator
            is stopped; some writes may have been applied
            (:class:`CoordinatorUnreachable`: no answer within ``timeout`` s).
        """
        kind = check_kind(kind)
        if not isinstance(fence_group, str) or not fence_group or "/" in fence_group:
            raise ValueError(f"invalid fence group {fence_group!r}")
        keys = check_keys(w.key for w in writes)
        if not keys:
            return {}
        encoded = [EncodedWrite(w.key, encode_value(w.key, w.value), w.version)
                   for w in writes]
        versions = self._write_records(kind, encoded, fence_group, timeout)
        return {w.key: None if versions.get(w.key) is None
                else Record(decode_value(w.payload, f"{kind}/{w.key}"), versions[w.key])
                for w in encoded}

    def list_records(self, kind: str, timeout: float = 10.0) -> list[str]:
        """The keys of every record of ``kind``, sorted.

        :raises ValueError: an invalid kind. :raises CoordinationError: as above.
        """
        return sorted(self._list_records(check_kind(kind), timeout))

    def delete_records(self, kind: str, keys: Iterable[str], timeout: float = 10.0) -> int:
        """Delete these records (unconditionally, not fenced); return how many existed.

        :raises ValueError: an invalid kind or key. :raises CoordinationError: as above.
        """
        kind, doomed = check_kind(kind), check_keys(keys)
        return self._delete_records(kind, doomed, timeout) if doomed else 0

    # Backends implement these four; arguments are validated and non-empty.
    def _read_records(self, kind: str, keys: list[str],
                      timeout: float) -> dict[str, tuple[bytes, Any]]:
        """``key -> (stored JSON bytes, version)`` of the keys that exist."""
        raise self._no_records()

    def _write_records(self, kind: str, writes: list[EncodedWrite], fence_group: str,
                       timeout: float) -> dict[str, Any]:
        """``key -> new version`` of the writes that won (None or absent: lost)."""
        raise self._no_records()

    def _list_records(self, kind: str, timeout: float) -> list[str]:
        """The keys of every record of ``kind``."""
        raise self._no_records()

    def _delete_records(self, kind: str, keys: list[str], timeout: float) -> int:
        """Delete the keys; the number that existed."""
        raise self._no_records()

    def _no_records(self) -> CoordinationError:
        return CoordinationError(f"the {type(self).__name__} backend stores no records")

    # --- listeners -------------------------------------------------------
    def add_state_listener(self, callback: StateCallback) -> None:
        """Call ``callback(state)`` on every session state change."""
        with self._listeners_lock:
            self._state_listeners.append(callback)

    def remove_state_listener(self, callback: StateCallback) -> None:
        """Forget a state listener (no error if unknown)."""
        with self._listeners_lock:
            if callback in self._state_listeners:
                self._state_listeners.remove(callback)

    def watch(self, group: str, callback: MembershipCallback,
              with_data: bool = True) -> Callable[[], None]:
        """Call ``callback(membership)`` on every change of ``group``.

        With ``with_data=False`` the snapshots may carry only what rings are
        built from (``active_at``, ``leave_at``, ``weight``, ``protocol``):
        a backend that stores the rest apart (ZooKeeper) then reads no
        member's data at all while no watcher of the group wants it.
        Returns a function that cancels the watch.
        """
        with self._listeners_lock:
            first = group not in self._watchers
            self._watchers.setdefault(group, []).append(callback)
            if with_data:
                self._data_watchers.add((group, id(callback)))
        if first:
            self._watch_started(group)
        else:
            self._replay(group, callback)

        def cancel() -> None:
            with self._listeners_lock:
                callbacks = self._watchers.get(group, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                self._data_watchers.discard((group, id(callback)))

        return cancel

    def _wants_data(self, group: str) -> bool:
        """True when some watcher of ``group`` wants full member data."""
        with self._listeners_lock:
            return any(g == group for g, _ in self._data_watchers)

    def _replay(self, group: str, callback: MembershipCallback) -> None:
        """Give a late watcher the current snapshot (backends override)."""

    def _set_state(self, state: SessionState) -> None:
        if state is self._state:
            return
        LOG.info("coordinator %s: session %s -> %s", self.member_id,
                 self._state.value, state.value)
        self._state = state
        with self._listeners_lock:
            listeners = list(self._state_listeners)
        self._call_all(listeners, state)

    def _notify(self, membership: Membership) -> None:
        with self._listeners_lock:
            callbacks = list(self._watchers.get(membership.group, ()))
        self._call_all(callbacks, membership)

    @staticmethod
    def _call_all(callbacks: Iterable[Callable[[Any], None]], arg: Any) -> None:
        for callback in callbacks:
            try:
                callback(arg)
            except Exception:  # a broken listener must not stop the others
                LOG.exception("coordination listener %r failed", callback)

    @property
    def watched_groups(self) -> list[str]:
        """Groups with at least one watcher."""
        with self._listeners_lock:
            return [g for g, cbs in self._watchers.items() if cbs]
