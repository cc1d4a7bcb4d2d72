"""Claims records written straight from the caller's thread (ZooKeeper backend).

A claim's latency is what decides whether a member polls its share of a
cycle, so the write does not wait for the coordinator's worker: the thread
that asks for a record submits it to kazoo at once, and the thread that
waits for it is woken by kazoo's connection thread when the answer arrives.

Order is what makes this safe.  Every claims write of a member is
submitted under the coordinator's lock, together with the generation it
carries, so kazoo queues them in generation order; kazoo sends its queue in
order on one connection and ZooKeeper applies one session's requests in
order, so the record never goes back to an older generation.  A write is
submitted only while the member's znode exists in the session the write
goes to (``allow`` after the znode is created, ``forbid`` before it is
deleted, everything forgotten with the session), and counts only if kazoo
still holds that session when it is answered: a request that kazoo sent in
a newer session (queued while it reconnected after an expiry) never
confirms a claim.  Whatever cannot be sent or fails is left to the
worker, which writes the newest record again.

Every answered write is also a sample of the leader's clock (``_clock``):
its ``mtime``, between the time it was sent and the time the answer
arrived (stamped on kazoo's connection thread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError

from zkpoll.coordination.clock import ClockSample
from zkpoll.coordination.zookeeper._clock import AnswerClock

__all__ = ["ClaimsWriter", "SentClaims"]


@dataclass(frozen=True)
class SentClaims:
    """One submitted write of a claims record."""

    gen: int
    result: Any  #: kazoo's async result
    session: int
    sent_at: float  #: monotonic time before it was submitted
    created: bool = field(default=False)  #: a create (the session's first write)
    clock: AnswerClock | None = None  #: when it was sent and answered (wall clock)

    def clock_sample(self) -> ClockSample | None:
        """The leader's clock as this answered write carries it (None: failed,
        or taken already)."""
        return None if self.clock is None else self.clock.take(self.result)


class ClaimsWriter:
    """Per-group submission state of one member's claims records.

    Every method must be called under the coordinator's lock, the one that
    also orders generations (:meth:`settle` too: it updates what exists).

    :param client: the kazoo client
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._allowed: dict[str, tuple[int, str]] = {}  # group -> (session, record path)
        self._exists: set[str] = set()                  # groups whose record exists
        self._sent: dict[str, SentClaims] = {}          # group -> newest submitted write

    def session(self) -> int | None:
        """The session kazoo holds now (None while it has none)."""
        session = getattr(self._client, "_session_id", None)
        if session is None and not hasattr(self._client, "_session_id"):
            client_id = self._client.client_id  # kazoo without that attribute
            session = client_id[0] if client_id else None
        return session

    def allow(self, group: str, session: int | None, path: str) -> None:
        """Our znode in ``group`` exists in ``session``: records may go to ``path``."""
        if session is not None and self._allowed.get(group) != (session, path):
            self.forbid(group)  # another record: it starts with a create
            self._allowed[group] = (session, path)

    def forbid(self, group: str) -> None:
        """Our znode in ``group`` is about to be deleted: no more direct writes."""
        self._allowed.pop(group, None)
        self._exists.discard(group)
        self._sent.pop(group, None)

    def reset(self) -> None:
        """A new session: nothing of the old one may be written or confirmed."""
        self._allowed.clear()
        self._exists.clear()
        self._sent.clear()

    def in_flight(self, group: str) -> SentClaims | None:
        """The newest write submitted for ``group`` and not settled yet."""
        return self._sent.get(group)

    def send(self, group: str, payload: bytes, gen: int) -> SentClaims | None:
        """Submit ``payload`` (generation ``gen``, the newest) without waiting;
        None when it cannot be sent now (the worker writes it later)."""
        allowed = self._allowed.get(group)
        if allowed is None or allowed[0] != self.session():
            return None
        session, path = allowed
        sent_at, clock = time.monotonic(), AnswerClock()
        create = group not in self._exists
        if create:  # this member id's first record: one create, no set that fails first
            result = self._client.create_async(path, payload, include_data=True)
            self._exists.add(group)  # later writes queue behind the create: sets
        else:
            result = self._client.set_async(path, payload)
        clock.watch(result)
        sent = self._sent[group] = SentClaims(gen, result, session, sent_at, create, clock)
        return sent

    def settle(self, group: str, sent: SentClaims) -> BaseException | None:
        """For an answered write (``sent.result`` ready), under the lock: None
        when it confirms ``sent.gen`` (answered in its session), else why not.

        A missing record (or parent) makes the next write a create; a record
        that exists makes it a set.
        """
        if self._sent.get(group) is sent:
            del self._sent[group]
        exc = sent.result.exception
        if exc is None and self.session() != sent.session:
            return SessionExpiredError(f"answered after the session {sent.session:#x} ended")
        if isinstance(exc, NoNodeError):
            self._exists.discard(group)
        elif isinstance(exc, NodeExistsError):
            self._exists.add(group)
        return exc
