"""Alarm notifications: durable delivery to the action URLs of alarms.

:class:`Notifiers` holds one notifier per action URL::

    notifiers = Notifiers(conf, spool_root, urls_of_every_alarm)   # ConfigError
    notifiers.notify([Notification("web-cpu:3", url, body), ...])  # durable on return
    notifiers.stats()      # per URL, for /metrics
    notifiers.close(5.0)   # what is not delivered stays on disk

- ``log://``: logged at WARNING at once (one line per notification, see
  :func:`zkpoll.alarm.notify_codec.log_line`); no spool.
- ``http://`` / ``https://``: enqueued in the durable spool of the URL
  (``<spool_root>/<scheme>-<mmh3 of the URL without credentials and query>``)
  and POSTed as JSON by one sender thread per URL, with the
  ``Idempotency-Key`` header: see :mod:`zkpoll.alarm.webhook` for the
  protocol and the retry and drop rules, :mod:`zkpoll.alarm.action_url` for
  the URL options, :mod:`zkpoll.alarm.notify_options` for the bounds.

Notifications left in a spool by an earlier process (a crash, ``kill -9``)
are delivered as soon as their URL's notifier opens, which for the ``urls``
given to the constructor is at start-up; a receiver deduplicates them by
key.  Spools under ``spool_root`` whose URL is not configured any more are
named in a WARNING at start-up.

Two spellings of one destination (same scheme, host, port and path) share
the spool when they deliver alike; when their credentials or options
differ, :meth:`Notifiers.ensure` refuses the second (ConfigError).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zkpoll.alarm.action_url import WHAT, ActionURL, parse_action_url
from zkpoll.alarm.notify_codec import Notification, log_line
from zkpoll.alarm.notify_options import notify_settings
from zkpoll.alarm.webhook import WebhookNotifier
from zkpoll.delivery import PublisherHealth
from zkpoll.delivery.spool import orphaned_spools
from zkpoll.exceptions import ConfigError, PublishError
from zkpoll.publisher.base import redact_url

if TYPE_CHECKING:  # typing.Self is 3.11+; only type checkers import it
    from typing import Self

__all__ = ["Notification", "Notifiers", "NotifyError"]

LOG = logging.getLogger(__name__)


class NotifyError(PublishError):
    """Notifications could not be enqueued durably (spool write failed, closed)."""


class Notifiers:
    """One notifier per action URL, opened on demand (see the module docstring).

    :param conf: the agent's ``cfg.ConfigOpts`` (``[alarm]`` options of
        :mod:`zkpoll.alarm.notify_options`; their defaults when None or
        unregistered)
    :param spool_root: directory of the spools (created when needed)
    :param urls: action URLs to open now (their backlog is delivered at once)
    :raises ConfigError: a URL or its options are invalid, a spool cannot be used
    """

    def __init__(self, conf: Any, spool_root: Path, urls: Iterable[str] = ()) -> None:
        self.settings = notify_settings(conf)
        self.root = Path(spool_root).absolute()
        self._lock = threading.Lock()
        self._actions: dict[str, ActionURL] = {}          # URL as given -> parsed
        self._webhooks: dict[str, WebhookNotifier] = {}   # spool name -> notifier
        self._logged = 0
        self._skipped = 0
        self._closed = False
        self.ensure(urls)
        self._warn_orphans()

    def ensure(self, urls: Iterable[str]) -> None:
        """Open a notifier for each URL not open yet (idempotent).

        :raises ConfigError: a URL is invalid, conflicts with an open spelling of
            the same destination, or its spool or TLS files cannot be used
        """
        with self._lock:
            for url in urls:
                if url not in self._actions:
                    self._actions[url] = self._open(url)

    def _open(self, url: str) -> ActionURL:
        action = parse_action_url(url)
        if action.spool is None:
            return action
        existing = self._webhooks.get(action.spool)
        if existing is not None:
            if not existing.action.same_delivery(action):
                raise ConfigError(
                    f"{WHAT} {action.redacted!r}: same destination as {existing.action.redacted!r}"
                    f" but different credentials or options; spell it one way everywhere")
            return action
        self._webhooks[action.spool] = WebhookNotifier(action, self.root / action.spool,
                                                       self.settings)
        return action

    def _warn_orphans(self) -> None:
        if not self.root.is_dir():
            return
        for directory, count in orphaned_spools(self.root):
            try:
                url = (directory / "url").read_text().strip()
            except OSError:
                url = "unknown"
            LOG.warning("notification spool %s (%s %s) holds %d undelivered notifications "
                        "that no alarm uses now: use that action URL again to deliver them, "
                        "or delete the directory", directory, WHAT, url, count)

    def notify(self, notifications: Sequence[Notification]) -> None:
        """Log the ``log://`` ones; enqueue the others durably; return when done.

        A notification whose URL is invalid cannot ever be sent: it is dropped,
        counted (``skipped`` in :meth:`stats`) and logged at ERROR.

        :raises NotifyError: closed, or a spool could not be written; every
            other URL's notifications are enqueued all the same
        """
        if self._closed:
            raise NotifyError(f"alarm notifiers are closed: {len(notifications)} "
                              f"notifications not enqueued")
        groups: dict[str, list[Notification]] = {}
        for notification in notifications:
            action = self._action(notification)
            if action is None:
                continue
            if action.spool is None:
                LOG.warning("%s", log_line(notification))
                with self._lock:
                    self._logged += 1
            else:
                groups.setdefault(action.spool, []).append(notification)
        failed = []
        for spool, items in groups.items():
            notifier = self._webhooks[spool]
            try:
                notifier.enqueue(items)
            except (sqlite3.Error, RuntimeError) as exc:
                failed.append(f"{notifier.action.redacted}: {exc}")
        if failed:
            raise NotifyError("cannot enqueue alarm notifications for " + "; ".join(failed))

    def _action(self, notification: Notification) -> ActionURL | None:
        action = self._actions.get(notification.url)
        if action is not None:
            return action
        try:
            self.ensure([notification.url])
        except ConfigError as exc:
            with self._lock:
                self._skipped += 1
            LOG.error("alarm notification %s DROPPED: %s", notification.key, exc)
            return None
        return self._actions[notification.url]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per destination (redacted URL without query): see :meth:`WebhookNotifier.stats`;
        ``log://`` has ``delivered`` (lines logged); ``invalid`` has ``dropped``
        (notifications whose URL is invalid), when there were any."""
        with self._lock:
            webhooks = list(self._webhooks.values())
            out: dict[str, dict[str, Any]] = {"log://": {"delivered": self._logged}}
            if self._skipped:
                out["invalid"] = {"dropped": self._skipped}
        for notifier in webhooks:
            out[notifier.action.label] = notifier.stats()
        return out

    def health(self) -> dict[str, PublisherHealth]:
        """Per webhook (redacted URL without query), for :func:`zkpoll.publisher.health.publisher_summary`."""
        with self._lock:
            webhooks = list(self._webhooks.values())
        return {n.action.label: n.health for n in webhooks}

    def urls(self) -> list[str]:
        """The redacted action URLs open now."""
        with self._lock:
            return sorted({redact_url(url) for url in self._actions})

    def close(self, timeout: float = 5.0) -> int:
        """Deliver what the webhooks take within ``timeout`` s (all together);
        the rest stays on disk.  Returns the notifications left."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            webhooks = list(self._webhooks.values())
        deadline = time.monotonic() + max(0.0, timeout)
        for notifier in webhooks:
            notifier.begin_close(deadline)
        return sum(notifier.finish_close(deadline) for notifier in webhooks)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
