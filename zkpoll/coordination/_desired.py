"""Desired-state membership, shared by the ZooKeeper and heartbeat backends.

Callers record what this member wants (join, update, leave, and its
claims record); a backend worker thread makes it true and marks each change
applied, again after a new session.  ``wait`` blocks the caller until the
backend confirmed.

Two kinds of data, written to different places:

* **member data** (weight, ``active_at``, ``leave_at``, meters, ...): what
  peers need to build rings; it changes on registration and on rare
  announcements, and every watcher hears of each change;
* **the claims record** (per-cycle claims and completions): replaced whole
  by :meth:`put_claims`, written where nobody watches it, read by peers
  only when this member has vanished (:meth:`read_claims`).
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from zkpoll.coordination.base import PROTOCOL, Coordinator, SessionState
from zkpoll.coordination.member_data import MemberData
from zkpoll.coordination.ring import LAYOUT
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable, NotJoined
from zkpoll.version import __version__

__all__ = ["DesiredStateCoordinator"]

LOG = logging.getLogger(__name__)


class DesiredStateCoordinator(Coordinator):
    """A coordinator whose worker reconciles ``_desired`` with the backend.

    Subclasses implement :attr:`_where` (for messages). Their worker thread
    takes its events from :meth:`_next_events` (``("reconcile",)`` when the
    caller asked for a change, ``("stop",)`` ends it, the rest is theirs),
    publishes ``_pending()`` changes and calls :meth:`_mark_applied`.
    """

    def __init__(self, member_id: str) -> None:
        super().__init__(member_id)
        self._cond = threading.Condition()
        self._desired: dict[str, dict[str, Any]] = {}   # group -> data we want published
        self._wanted_gen: dict[str, int] = {}           # group -> generation asked for
        self._applied_gen: dict[str, int] = {}          # group -> generation applied
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()  # to the worker
        self._claims: dict[str, tuple[dict[str, Any], int]] = {}  # group -> (record, gen)
        self._claims_gen = 0
        self._claims_done: dict[str, int] = {}  # group -> newest generation written
        self._claims_void: dict[str, int] = {}  # group -> generations that cannot be confirmed

    def _wake_worker(self) -> None:
        """Tell the worker there is something to reconcile."""
        self._events.put(("reconcile",))

    def _next_events(self, deadline: float) -> list[tuple[Any, ...]] | None:
        """For the worker: what was queued, waiting for it until ``deadline``
        (monotonic), coalesced into one batch; None once it holds ``("stop",)``."""
        try:
            events = [self._events.get(timeout=max(0.0, deadline - time.monotonic()))]
        except queue.Empty:
            events = []
        with contextlib.suppress(queue.Empty):
            while True:
                events.append(self._events.get_nowait())
        return None if any(e[0] == "stop" for e in events) else events

    @property
    @abc.abstractmethod
    def _where(self) -> str:
        """The backend, for messages (``ZooKeeper at h1:2181``)."""

    def _set_state(self, state: SessionState) -> None:
        super()._set_state(state)
        with self._cond:
            self._cond.notify_all()

    def join(self, group: str, data: Mapping[str, Any] | None = None,
             wait: float | None = None) -> None:
        base = {MemberData.HOST: socket.gethostname(), MemberData.PID: os.getpid(),
                MemberData.VERSION: __version__, MemberData.WEIGHT: 1,
                MemberData.LAYOUT: LAYOUT, MemberData.PROTOCOL: PROTOCOL}
        self._request(group, dict(base, **(data or {})), wait, replace=True)

    def update(self, group: str, data: Mapping[str, Any], wait: float | None = None) -> None:
        with self._cond:
            if group not in self._desired:
                raise NotJoined(f"{self.member_id} has not joined group {group!r}")
        self._request(group, dict(data), wait, replace=False)

    def leave(self, group: str, wait: float | None = None) -> None:
        with self._cond:
            if self._desired.pop(group, None) is None:
                return
            self._void_claims(group)
        self._request(group, None, wait, replace=True)

    # --- the claims record --------------------------------------------------
    def put_claims(self, group: str, record: Mapping[str, Any]) -> int:
        json.dumps(record)  # fail early, in the caller
        with self._cond:
            gen = self._queue_claims(group, record)
        self._wake_worker()
        return gen

    def _queue_claims(self, group: str, record: Mapping[str, Any]) -> int:
        """Under ``_cond``: make ``record`` the newest record asked for; its generation.

        :raises NotJoined: the member has not joined ``group``.
        """
        if group not in self._desired:
            raise NotJoined(f"{self.member_id} has not joined group {group!r}")
        self._claims_gen += 1
        self._claims[group] = (dict(record), self._claims_gen)
        return self._claims_gen

    def wait_claims(self, group: str, gen: int, timeout: float) -> bool:
        def settled() -> bool:
            return max(self._claims_done.get(group, 0), self._claims_void.get(group, 0)) >= gen
        with self._cond:
            self._cond.wait_for(settled, timeout)
            return self._claims_done.get(group, 0) >= gen > self._claims_void.get(group, 0)

    def _pending_claims(self) -> list[tuple[str, dict[str, Any], int]]:
        """(group, record, generation) of claims records not yet written."""
        with self._cond:
            return [(g, dict(record), gen) for g, (record, gen) in self._claims.items()
                    if self._claims_done.get(g, 0) < gen]

    def _claims_written(self, group: str, gen: int) -> None:
        with self._cond:
            self._claims_done[group] = max(self._claims_done.get(group, 0), gen)
            self._cond.notify_all()

    def _void_claims(self, group: str) -> None:
        """Under ``_cond``: no record asked for so far can be confirmed any more."""
        _, gen = self._claims.pop(group, ({}, self._claims_gen))
        self._claims_void[group] = max(gen, self._claims_gen)
        self._cond.notify_all()

    def _request(self, group: str, data: dict[str, Any] | None, wait: float | None,
                 replace: bool) -> None:
        json.dumps(data)  # fail early, in the caller, on data that cannot be published
        with self._cond:
            if data is not None and replace:
                self._desired[group] = data
            elif data is not None:
                self._desired[group].update(data)
            gen = self._wanted_gen[group] = self._wanted_gen.get(group, 0) + 1
        self._wake_worker()
        if wait is not None and not self._wait_for(
                lambda: self._applied_gen.get(group, 0) >= gen, wait):
            raise CoordinatorUnreachable(
                f"membership change of {self.member_id} in {group!r} not confirmed by "
                f"{self._where} within {wait:g}s (will retry)")

    def _wait_connected(self, timeout: float | None) -> None:
        """For ``start()``: :raises CoordinatorUnreachable: not connected in ``timeout`` s."""
        if timeout is not None and not self._wait_for(
                lambda: self._state is SessionState.CONNECTED, timeout):
            raise CoordinatorUnreachable(f"cannot reach {self._where} within {timeout:g}s "
                                         "(still retrying in the background)")

    def _leave_all(self, timeout: float, expiry: str) -> None:
        """For ``stop()``: leave every group, waiting for it while connected.

        A leave that is not confirmed is logged (the member disappears when
        ``expiry``), never raised: stopping must not fail.
        """
        with self._cond:
            groups = list(self._desired)
        for group in groups:
            try:
                self.leave(group, wait=timeout if self._state is SessionState.CONNECTED else None)
            except CoordinationError:
                LOG.warning("could not remove member %s from %s before stopping; it "
                            "disappears when %s", self.member_id, group, expiry)

    def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def _pending(self) -> dict[str, tuple[dict[str, Any] | None, int]]:
        """Group -> (data to publish, or None to delete; generation) not yet applied."""
        with self._cond:
            return {g: (dict(self._desired[g]) if g in self._desired else None, gen)
                    for g, gen in self._wanted_gen.items()
                    if self._applied_gen.get(g, 0) < gen}

    def _registration(self, group: str) -> tuple[dict[str, Any], int] | None:
        """For the first publish of ``group`` in a session: the data to publish
        (the registration hook's changes merged into the data wanted *now*)
        and the generation it covers; None if the group was left meanwhile.

        The hook runs without our lock (it may take its caller's); only the
        fields it changed are merged, into the current data, so an update
        made while it ran is neither lost nor marked applied unpublished.
        """
        with self._cond:
            if group not in self._desired:
                return None
            asked = dict(self._desired[group])
        changes = self._registration_changes(group, asked)
        with self._cond:
            if group not in self._desired:
                return None
            self._desired[group].update(changes)
            return dict(self._desired[group]), self._wanted_gen.get(group, 0)

    def _mark_applied(self, group: str, gen: int) -> None:
        with self._cond:
            self._applied_gen[group] = max(self._applied_gen.get(group, 0), gen)
            self._cond.notify_all()

    def _forget_applied(self) -> None:
        """A new session: every desired change must be applied again, and no
        claims record of the old session can be confirmed in the new one."""
        with self._cond:
            self._applied_gen.clear()
            for group in list(self._claims):
                self._void_claims(group)
            self._cond.notify_all()
