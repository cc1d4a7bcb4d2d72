"""Durable delivery: what every publisher that must not lose data is built on.

- :mod:`zkpoll.delivery.spool`: the durable spool (sqlite3 WAL, one directory
  per destination, locked), its bounds (:func:`~zkpoll.delivery.spool.plan_drops`);
- :mod:`zkpoll.delivery.loop`: :class:`DeliveryLoop`, the one sender thread
  with backoff, bounds and close in front of a :class:`Sender`;
- :mod:`zkpoll.delivery.ledger`: :class:`Ledger`, the counters, failure state
  and rate-limited logs of one publisher, and :class:`PublisherHealth`.

Users: the network publishers (:mod:`zkpoll.publisher.spooled`) and the
alarm webhooks (:mod:`zkpoll.alarm.webhook`).  This package knows neither
samples nor notifications: a sink encodes its own items.
"""

from __future__ import annotations

from zkpoll.delivery.ledger import Ledger, PublisherHealth
from zkpoll.delivery.loop import DeliveryLoop, DeliverySettings, Sender, backoff_delay
from zkpoll.delivery.spool import FSYNC_POLICIES, Entry, Spool, orphaned_spools

__all__ = ["FSYNC_POLICIES", "DeliveryLoop", "DeliverySettings", "Entry", "Ledger",
           "PublisherHealth", "Sender", "Spool", "backoff_delay", "orphaned_spools"]
