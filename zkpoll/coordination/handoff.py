"""Handoff inboxes: the transport of per-resource failover (issue 21).

When the owner of a resource cannot reach it in a cycle, it hands the
resource over to the next member of the resource's ring preference order.
The backend gives every member an *inbox* per group; this module holds the
backend-neutral part of it:

* :class:`Handoff` (what a recipient reads) and :data:`HandoffCallback`;
* :class:`HandoffInbox`, mixed into :class:`~zkpoll.coordination.base.Coordinator`:
  the API, refused by default (``supports_handoffs = False``) with a
  :class:`CoordinationError` that says so;
* :func:`encode_handoff` and :func:`decode_handoff`: the stored form (compact
  JSON ``{"sender": ..., "payload": {...}}`` of at most :data:`MAX_HANDOFF_BYTES`).

Exactly once is the caller's rule, built on two promises of the backend:
:meth:`HandoffInbox.send_handoff` returns True only for a write the backend
confirmed, and :meth:`HandoffInbox.watch_inbox` delivers every handoff in
the inbox at least once until it is acknowledged.  The layout and the cost
of each backend are in docs/design.md, section 3 ("Handoff inboxes").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from zkpoll.exceptions import CoordinationError

__all__ = [
    "MAX_HANDOFF_BYTES",
    "Handoff",
    "HandoffCallback",
    "HandoffInbox",
    "check_inbox_name",
    "decode_handoff",
    "encode_handoff",
]

LOG = logging.getLogger(__name__)

#: Largest stored handoff (compact JSON of sender and payload, UTF-8).  Far
#: below ZooKeeper's 1 MiB node limit (``jute.maxbuffer``), which also bounds
#: the whole request; about 10,000 resource keys of 50 bytes.
MAX_HANDOFF_BYTES = 512 * 1024


@dataclass(frozen=True)
class Handoff:
    """One handoff read from this member's inbox."""

    handoff_id: str             #: backend id, for :meth:`HandoffInbox.ack_handoffs`
    sender: str                 #: member id of the sender
    payload: Mapping[str, Any]  #: JSON object, opaque to the backend


HandoffCallback = Callable[[list[Handoff]], None]


def check_inbox_name(what: str, name: str) -> str:
    """``name`` (a group or member id in an inbox's address), checked.

    :raises ValueError: empty, or holding ``/`` or a newline.
    """
    if not isinstance(name, str) or not name or "/" in name or "\n" in name:
        raise ValueError(f"invalid {what} {name!r}")
    return name


def encode_handoff(sender: str, payload: Mapping[str, Any]) -> bytes:
    """The stored form of a handoff from ``sender``.

    :raises TypeError: ``payload`` is not a mapping, or not JSON-serialisable.
    :raises CoordinationError: it is larger than :data:`MAX_HANDOFF_BYTES`.
    """
    if not isinstance(payload, Mapping):
        raise TypeError(f"a handoff payload is a JSON object, not {type(payload).__name__}")
    raw = json.dumps({"sender": sender, "payload": dict(payload)}, sort_keys=True,
                     separators=(",", ":")).encode()
    if len(raw) > MAX_HANDOFF_BYTES:
        raise CoordinationError(f"handoff of {len(raw)} bytes refused: at most "
                                f"{MAX_HANDOFF_BYTES} bytes (send fewer keys per handoff)")
    return raw


def decode_handoff(handoff_id: str, raw: bytes | None) -> Handoff | None:
    """The handoff stored as ``raw``; None (logged) when it is not one."""
    try:
        data = json.loads((raw or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("sender"), str) \
            or not isinstance(data.get("payload"), dict):
        LOG.warning("handoff %s is not a handoff (%d bytes); dropping it", handoff_id,
                    len(raw or b""))
        return None
    return Handoff(handoff_id, data["sender"], data["payload"])


class HandoffInbox:
    """The handoff API of a coordinator: by default, a backend without inboxes."""

    #: True when the backend implements the three methods below.
    supports_handoffs: ClassVar[bool] = False

    def send_handoff(self, group: str, member_id: str, payload: Mapping[str, Any],
                     timeout: float) -> bool:
        """Write a handoff into ``member_id``'s inbox in ``group``.

        True once the backend confirmed the write within ``timeout`` s;
        False when it did not (no inbox: the member is gone; no answer in
        time; not connected).  Never raises for a timeout; a write that was
        not confirmed may still land later: the caller counts it as a gap.

        :raises TypeError: ``payload`` is not a JSON object.
        :raises CoordinationError: the payload is too large
            (:data:`MAX_HANDOFF_BYTES`), or the backend has no inboxes.
        """
        raise self._no_inbox()

    def watch_inbox(self, group: str, callback: HandoffCallback) -> Callable[[], None]:
        """Deliver this member's handoffs in ``group`` to ``callback(handoffs)``.

        Every handoff in the inbox now or arriving later is delivered at
        least once, never after :meth:`ack_handoffs`, in the order sent, on
        the coordinator's thread (the callback must not block).  The inbox
        exists while this member is registered in ``group``; a new session
        (a new member id) has a new one, watched by the same callback.
        Returns a function that cancels the watch.

        :raises CoordinationError: the backend has no inboxes.
        """
        raise self._no_inbox()

    def ack_handoffs(self, group: str, handoff_ids: Iterable[str]) -> None:
        """Delete handled handoffs (fire and forget; errors are logged).

        :raises CoordinationError: the backend has no inboxes.
        """
        raise self._no_inbox()

    def _no_inbox(self) -> CoordinationError:
        return CoordinationError(f"the {type(self).__name__} backend has no handoff inbox "
                                 "(supports_handoffs is False)")
