"""The ZooKeeper backend's session: kazoo client, session states and the lease.

kazoo has no client-side session timer.  The worker sends a heartbeat
(``exists``) every ``heartbeat_interval`` and records the *send* time of
each answered one (:attr:`ZooKeeperSession.last_contact`): the server
surely heard from us then, so it cannot expire us before ``last_contact +
session_timeout``.  The session timeout is the one the server negotiated
(kazoo only logs it; we capture it).  kazoo's state callbacks only put an
event on the worker's queue (:mod:`.coordinator` handles it).

The leader's clock is sampled by every answered claims write (``claims``)
and by :meth:`ZooKeeperSession.measure_clock`, a write of ``<root>/clock``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from kazoo.client import KazooState
from kazoo.exceptions import (
    AuthFailedError,
    ConnectionDropped,
    ConnectionLoss,
    KazooException,
    SessionClosedRequireSaslError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError

from zkpoll.coordination._desired import DesiredStateCoordinator
from zkpoll.coordination._repeated import RepeatedFailure
from zkpoll.coordination.base import SessionState
from zkpoll.coordination.clock import ClockEstimate
from zkpoll.coordination.url import BackendURL
from zkpoll.coordination.zookeeper import _clock
from zkpoll.coordination.zookeeper._kazoo import explain, kazoo_client
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable

__all__ = ["OP_TIMEOUT", "STATES", "ZK_ERRORS", "ZooKeeperSession"]

LOG = logging.getLogger(__name__)
OP_TIMEOUT = 10.0  # bound on any single ZooKeeper call made by the worker
#: What a failed ZooKeeper call raises: kazoo errors, and kazoo's timeout of an
#: async result, which is not a KazooException.
ZK_ERRORS = (KazooException, KazooTimeoutError)
STATES = {KazooState.CONNECTED: SessionState.CONNECTED,
          KazooState.SUSPENDED: SessionState.SUSPENDED,
          KazooState.LOST: SessionState.LOST}


class ZooKeeperSession(DesiredStateCoordinator):
    """The kazoo client of a ZooKeeper coordinator, its session and its lease.

    :param url: the parsed ``backend_url``
    :param opts: the ``[coordination]`` option group
    :param member_id: this member's id for the first session
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
        self._auth_failures = RepeatedFailure(LOG)  # kazoo's connection thread only
        self._capture_negotiated_timeout()
        self._client.add_listener(self._on_kazoo_state)
        self._session_id: int | None = None
        self._last_contact = float("-inf")
        self._beat_in_flight = False
        self._registered: set[str] = set()  # groups published in this session (worker only)
        self._failures = RepeatedFailure(LOG)  # worker only
        self._thread: threading.Thread | None = None
        self._stopping = False

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

    @property
    def _where(self) -> str:
        return f"ZooKeeper at {self._hosts}"

    def _explain(self, exc: BaseException, path: str) -> str:
        """What a failed call means, for the operator."""
        return explain(exc, self._hosts, path)

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

    def _on_kazoo_state(self, state: KazooState) -> None:
        """kazoo's callback: enqueue only, never block."""
        self._events.put(("state", state, self._client.client_state))

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
        except ZK_ERRORS:
            self._beat_in_flight = False  # not connected: no contact to record

    def measure_clock(self, timeout: float = 5.0) -> ClockEstimate:
        """Write ``<root>/clock`` (any member, any version: no conflict) and add
        the leader's ``mtime`` it carries to the estimate."""
        path = f"{self._root}/clock"
        try:
            sample = _clock.probe(self._client, path, timeout)
        except (ConnectionLoss, ConnectionDropped, SessionExpiredError,
                KazooTimeoutError) as exc:  # no answer
            raise CoordinatorUnreachable("cannot measure the clock: "
                                         + self._explain(exc, path)) from exc
        except KazooException as exc:
            raise CoordinationError("cannot measure the clock: "
                                    + self._explain(exc, path)) from exc
        try:
            return self._clock.add(sample)
        except ValueError as exc:  # the local clock stepped back during the probe
            raise CoordinationError(f"cannot measure the clock: {exc}") from exc

    def _members_path(self, group: str) -> str:
        return f"{self._root}/groups/{group}/members"

    def _claims_path(self, group: str, member_id: str | None = None) -> str:
        return f"{self._claims_parent(group)}/{member_id or self.member_id}"

    def _claims_parent(self, group: str) -> str:
        return f"{self._root}/groups/{group}/claims"
