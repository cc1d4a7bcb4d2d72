"""The ZooKeeper backend's claims records: ``<root>/groups/<group>/claims/<member-id>``.

Persistent znodes that change every cycle and that nobody watches: peers
read a member's record once, after it vanished (:meth:`read_claims`).
Records are written from the caller's thread (``_claims_writer``: in
generation order, woken by kazoo's connection thread); whatever cannot be
sent at once or fails is written again by the worker (:meth:`_write_claims`).
The group's first member deletes records whose member is gone for
:data:`CLAIMS_RETENTION` seconds, every :data:`CLAIMS_SWEEP_INTERVAL`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.coordination.base import Membership, SessionState
from zkpoll.coordination.member_data import decode_object
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper._claims_writer import ClaimsWriter, SentClaims
from zkpoll.coordination.zookeeper.listing import ZooKeeperListing
from zkpoll.coordination.zookeeper.session import OP_TIMEOUT, ZK_ERRORS
from zkpoll.exceptions import CoordinatorUnreachable

__all__ = ["CLAIMS_RETENTION", "CLAIMS_SWEEP_INTERVAL", "ZooKeeperClaims"]

LOG = logging.getLogger(__name__)
#: Seconds a vanished member's claims record is kept for late readers.
CLAIMS_RETENTION = 3600.0
#: Seconds between two sweeps of old claims records (by one member per group).
CLAIMS_SWEEP_INTERVAL = 600.0


class ZooKeeperClaims(ZooKeeperListing):
    """This member's claims records and the reading and sweeping of others'."""

    def __init__(self, url: BackendURL, opts: Any, member_id: str) -> None:
        super().__init__(url, opts, member_id)
        self._next_sweep = time.monotonic() + CLAIMS_SWEEP_INTERVAL
        self._claims_writer = ClaimsWriter(self._client)  # under self._cond

    def put_claims(self, group: str, record: Mapping[str, Any]) -> int:
        payload = json.dumps(record, sort_keys=True).encode()  # fails early, in the caller
        with self._cond:
            gen = self._queue_claims(group, record)
            sent = self._state is SessionState.CONNECTED and \
                self._claims_writer.send(group, payload, gen) is not None
        if not sent:
            self._wake_worker()  # not registered or not connected: the worker writes it
        return gen

    def wait_claims(self, group: str, gen: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            sent = self._claims_writer.in_flight(group)
        if sent is not None and sent.gen >= gen and sent.result.wait(timeout):
            self._settle_claims(group, sent)  # woken by kazoo's connection thread
        return super().wait_claims(group, gen, max(0.0, deadline - time.monotonic()))

    def _settle_claims(self, group: str, sent: SentClaims) -> BaseException | None:
        """Account for an answered write: its clock sample first (in the estimate
        before the generation is confirmed), then confirm its generation, or
        have the worker write the newest record again."""
        self._add_clock_sample(sent.clock_sample())
        with self._cond:
            exc = self._claims_writer.settle(group, sent)
            if exc is None:
                self._claims_done[group] = max(self._claims_done.get(group, 0), sent.gen)
                self._cond.notify_all()
        if exc is None:  # the server heard from us when it was sent
            self._last_contact = max(self._last_contact, sent.sent_at)
        else:
            LOG.debug("claims record of %s in %s (generation %d) not written: %r",
                      self.member_id, group, sent.gen, exc)
            self._wake_worker()
        return exc

    def _write_claims(self, group: str) -> None:
        """Worker: write the newest claims record of ``group`` and wait for it
        (creating the parent once if missing), unless a write of it is in
        flight (its waiter, or the next pass, settles that one)."""
        for _ in range(3):
            with self._cond:
                newest = self._claims.get(group)
                if newest is None or self._claims_done.get(group, 0) >= newest[1]:
                    return
                sent = self._claims_writer.in_flight(group)
                if sent is None or not sent.result.ready():
                    if sent is not None and sent.gen >= newest[1]:
                        return
                    payload = json.dumps(newest[0], sort_keys=True).encode()
                    sent = self._claims_writer.send(group, payload, newest[1])
                    if sent is None:
                        return  # not registered in kazoo's session: after re-registering
            if not sent.result.wait(OP_TIMEOUT):
                raise KazooTimeoutError(f"no answer within {OP_TIMEOUT:g}s")
            exc = self._settle_claims(group, sent)
            if isinstance(exc, NoNodeError) and sent.created:
                self._client.ensure_path(self._claims_parent(group))
            elif exc is not None and not isinstance(exc, (NoNodeError, NodeExistsError)):
                raise exc
            # else: confirmed, or the next write is a create (record gone) or a set

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
            except ZK_ERRORS as exc:
                raise CoordinatorUnreachable(f"cannot read the claims of {member_id}: "
                                             + self._explain(exc, self._claims_path(
                                                 group, member_id))) from exc
            result[member_id] = decode_object(raw, self._claims_path(group, member_id))
        return result

    def _sweep_claims(self) -> None:
        """Sweep what members gone long ago left behind (:meth:`_sweep_group`);
        done by the first member (by id) of each group we are in."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + CLAIMS_SWEEP_INTERVAL
        for group in sorted(self._registered):
            with self._cond:
                snapshot = self._snapshots.get(group)
            if snapshot is None or not snapshot.member_ids \
                    or snapshot.member_ids[0] != self.member_id:
                continue
            self._sweep_group(group, snapshot)

    def _sweep_group(self, group: str, snapshot: Membership) -> None:
        """Delete claims records whose member is gone for ``CLAIMS_RETENTION`` seconds."""
        parent = self._claims_parent(group)
        try:
            owners = self._client.get_children_async(parent).get(timeout=OP_TIMEOUT)
        except ZK_ERRORS:
            return
        gone = [o for o in owners if o not in snapshot.member_ids]
        cutoff = (time.time() - CLAIMS_RETENTION) * 1000
        for owner in gone:
            try:
                stat = self._client.exists_async(f"{parent}/{owner}").get(OP_TIMEOUT)
                if stat is not None and stat.mtime < cutoff:
                    self._client.delete_async(f"{parent}/{owner}").get(OP_TIMEOUT)
            except ZK_ERRORS as exc:
                LOG.debug("claims sweep of %s: %s", parent, exc)
