"""The contract of a network publisher's sender, behind the durable spool.

A :class:`BatchSender` delivers one batch of samples synchronously and
either returns (the sink acknowledged every sample of the batch) or raises
:class:`~zkpoll.exceptions.PublishError` (nothing is known to be delivered;
the spool keeps the batch and retries it, in order, with backoff).  It keeps
no queue and no retry loop of its own: ordering, persistence, retries and
drop accounting belong to the delivery loop (:mod:`zkpoll.delivery`), once,
for every network publisher.

Senders are built from a publisher URL (``scheme://host:port/path?opt=v``)
and the agent's configuration, like publishers; options in the query string
are parsed with :func:`zkpoll.publisher.base.url_options`.  Every sample
keeps its deterministic ``sample.id`` (meter, resource, cycle start), which
a sender passes on where the sink has a place for it, so a redelivered
batch can be recognised downstream.
"""

from __future__ import annotations

import abc
import urllib.parse
from collections.abc import Sequence
from typing import Any

from zkpoll.sample import Sample

__all__ = ["BatchSender"]


class BatchSender(abc.ABC):
    """Delivers batches of samples to one sink (see the module docstring).

    :param conf: the agent's ``cfg.ConfigOpts``
    :param url: the parsed publisher URL
    """

    #: Human-readable name of the sink for logs and metrics (e.g. ``prometheus``).
    sink = "sink"

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        self.conf = conf
        self.url = url

    @abc.abstractmethod
    def send(self, samples: Sequence[Sample]) -> None:
        """Deliver ``samples`` as one request (or one acknowledged unit).

        :raises PublishError: the sink did not acknowledge the batch; the
            message says why (status, connection error) for the operator.
        """

    def close(self) -> None:
        """Release connections (called once, after the last :meth:`send`)."""
