"""One webhook (``http://`` / ``https://`` action URL) behind the durable-delivery loop.

:meth:`WebhookNotifier.enqueue` commits the notifications to the spool of
the URL (:class:`zkpoll.delivery.Spool`, sqlite3 WAL, one row per call)
before returning.  The sender thread of the URL's
:class:`zkpoll.delivery.DeliveryLoop` POSTs them, oldest first, one
request per notification::

    POST <path>                      (the query string is not sent)
    Content-Type: application/json
    User-Agent: zkpoll/<version>
    Idempotency-Key: <key>           (the same on every redelivery)
    X-OpenStack-Request-Id: req-<uuid4>   (new per attempt, as Aodh sends)
    Authorization: Basic ...         (when the URL has credentials)

Answers: 2xx delivered; no answer (connection error, timeout, TLS failure),
408, 429 and 5xx are retried, in order, with capped exponential backoff and
jitter, without limit; any other status (3xx, 4xx) drops that notification,
counted as ``rejected`` and logged at ERROR with its key.  The spool bounds
(``[alarm] notify_spool_max_bytes`` / ``notify_spool_max_age``) drop the
oldest notifications, counted and logged at ERROR (at most once a minute
per bound, with the total).  A row is deleted once
each of its notifications is delivered or rejected; after a crash, the
notifications of an unfinished row are sent again (same key and body).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zkpoll.alarm.action_url import WHAT, ActionURL, client_tls_context
from zkpoll.alarm.notify_codec import Notification, decode_row, encode_body, encode_row
from zkpoll.alarm.notify_options import NotifySettings
from zkpoll.delivery import (
    DeliveryLoop,
    DeliverySettings,
    Ledger,
    PublisherHealth,
    Sender,
    Spool,
)
from zkpoll.exceptions import ConfigError
from zkpoll.publisher.http import post
from zkpoll.version import __version__

__all__ = ["RETRIED_STATUSES", "WebhookNotifier"]

LOG = logging.getLogger(__name__)

#: Statuses retried (besides no answer at all); other non-2xx answers reject.
RETRIED_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))

#: One notification as the spool row holds it: (idempotency key, JSON body).
Keyed = tuple[str, dict[str, Any]]


class _WebhookSender(Sender[Keyed]):
    """POSTs one notification per call (see the module docstring)."""

    kind = "webhook"
    noun = "notifications"
    stamped = "enqueued"
    send_size = 1

    def __init__(self, action: ActionURL) -> None:
        self.action = action
        self._ssl = client_tls_context(action) if action.scheme == "https" else None
        self._headers = {"Content-Type": "application/json",
                         "User-Agent": f"zkpoll/{__version__}"}
        if action.authorization:
            self._headers["Authorization"] = action.authorization

    def decode(self, body: bytes) -> Sequence[Keyed]:
        return decode_row(body)

    def describe(self, items: Sequence[Keyed], rejected: int) -> str:
        return f"notification {items[0][0]}"

    def send(self, items: Sequence[Keyed]) -> None:
        for key, body in items:
            headers = dict(self._headers)
            headers["Idempotency-Key"] = key
            headers["X-OpenStack-Request-Id"] = f"req-{uuid.uuid4()}"
            post(self._connection(), self.action.path, encode_body(body), headers,
                 retried=RETRIED_STATUSES)

    def _connection(self) -> http.client.HTTPConnection:
        timeout = self.action.options.timeout
        if self._ssl is not None:
            return http.client.HTTPSConnection(self.action.host, self.action.port,
                                               timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(self.action.host, self.action.port, timeout=timeout)


class WebhookNotifier:
    """Spool and delivery loop of one action URL (see the module docstring).

    :raises ConfigError: the spool directory or a TLS file cannot be used
    """

    def __init__(self, action: ActionURL, directory: Path, settings: NotifySettings) -> None:
        self.action = action
        self.settings = settings
        sender = _WebhookSender(action)
        try:
            self.spool = Spool(directory, settings.fsync)
        except ConfigError as exc:
            raise ConfigError(f"{WHAT} {action.redacted!r}: {exc}") from exc
        try:
            (directory / "url").write_text(action.redacted + "\n")
        except OSError:
            pass  # only a hint for operators
        self.ledger = Ledger(LOG, f"{WHAT} {action.redacted}")
        self.loop: DeliveryLoop[Keyed] = DeliveryLoop(
            self.spool, sender, self.ledger,
            DeliverySettings(1, action.options.retry_backoff, action.options.max_backoff,
                             settings.max_bytes, settings.max_age,
                             "notify_spool_max_bytes", "notify_spool_max_age"),
            thread_name=f"zkpoll-alarm-{action.scheme}")
        self._lock = threading.Lock()
        self._enqueued = 0
        if self.spool.depth:
            LOG.warning("%s %s: %d notifications from an earlier run wait in the spool %s; "
                        "delivering them first", WHAT, action.redacted, self.spool.depth,
                        self.spool.directory)
            self.loop.start()

    def enqueue(self, notifications: Sequence[Notification]) -> None:
        """Commit ``notifications`` (in order) to the spool as one row.

        :raises sqlite3.Error: the spool cannot be written (nothing was enqueued)
        :raises RuntimeError: the notifier is closed
        """
        if not notifications:
            return
        if not self.loop.append(encode_row(notifications), len(notifications), time.time()):
            raise RuntimeError(f"{WHAT} {self.action.redacted}: notifier is closed")
        with self._lock:
            self._enqueued += len(notifications)
        self.loop.enforce_bounds()

    def stats(self) -> dict[str, Any]:
        """Counters: ``enqueued``, ``delivered``, ``retried`` (failed attempts, each
        retried), ``rejected`` (refused for good by the webhook, dropped),
        ``dropped`` (by the spool bounds, or unreadable) and ``drops`` (every loss
        by reason: rejected, max_bytes, max_age, corrupt); gauges: ``queued``
        (notifications waiting), ``oldest_age_s``, ``spool_bytes``,
        ``failing_since``, ``last_error``."""
        health = self.loop.health()
        counts = self.ledger.counts()
        with self._lock:
            enqueued = self._enqueued
        rejected = health.drops.get("rejected", 0)
        return {
            "enqueued": enqueued, "delivered": counts["published"],
            "retried": self.loop.retried, "rejected": rejected,
            "dropped": counts["dropped"] - rejected, "drops": dict(health.drops),
            "queued": health.depth, "spool_bytes": health.spool_bytes,
            "oldest_age_s": None if health.oldest is None
            else max(0.0, time.time() - health.oldest),
            "failing_since": health.failing_since, "last_error": health.last_error,
        }

    @property
    def health(self) -> PublisherHealth:
        """Failure state and backlog, as :mod:`zkpoll.publisher.health` summarises it."""
        return self.loop.health()

    def begin_close(self, deadline: float) -> None:
        """Stop accepting; the sender delivers what it can until ``deadline`` (monotonic)."""
        self.loop.begin_close(deadline)

    def finish_close(self, deadline: float) -> int:
        """Wait for the sender until ``deadline`` (+1 s); close the spool; return
        the notifications left on disk."""
        return self.loop.finish_close(deadline)

    def close(self, timeout: float = 5.0) -> int:
        """Deliver what the webhook takes within ``timeout`` s; the rest stays on disk."""
        return self.loop.close(timeout)
