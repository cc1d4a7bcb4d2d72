"""The storage interface of the TTL-heartbeat backends, and their URL helpers.

A backend (``redis.py``, ``memcached.py``) implements :class:`MemberStore`:
a handful of calls, each one bounded round trip (or a few) to its server.
:class:`~zkpoll.coordination.kv._heartbeat.HeartbeatCoordinator` builds the
whole coordinator contract on top of it.  A store that can read its
server's clock (:meth:`MemberStore.clock_sample`) does so with every
heartbeat, which is how a member measures its clock offset.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from zkpoll.coordination.clock import ClockSample
from zkpoll.coordination.url import OPTION, BackendURL, redact
from zkpoll.exceptions import ConfigError

__all__ = ["CLAIMS_RETENTION", "MemberStore", "host_port", "inbox_notice", "member_timeouts",
           "parse_inbox_notice"]

LOG = logging.getLogger(__name__)
#: Seconds a claims record outlives its last write (peers read a vanished
#: member's record within a cycle; the rest is for ``zkpoll-status``).
CLAIMS_RETENTION = 3600.0
#: First line of a change notification that names an inbox, not a group (a
#: group name never holds a newline; members of older versions, which read it
#: as a group name, watch no such group and ignore it).
_INBOX_NOTICE = "inbox"


def inbox_notice(group: str, member_id: str) -> str:
    """The change notification "a handoff arrived in ``member_id``'s inbox in ``group``"."""
    return f"{_INBOX_NOTICE}\n{group}\n{member_id}"


def parse_inbox_notice(change: str | None) -> tuple[str, str] | None:
    """``(group, member id)`` of an inbox notification; None for anything else."""
    parts = change.split("\n") if change else []
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == _INBOX_NOTICE else None


def host_port(url: BackendURL, default_port: int) -> tuple[str, int]:
    """The single ``host:port`` of ``url`` (``default_port`` if it names none).

    A URL without a server is refused, never read as localhost.
    """
    if len(url.hosts) != 1:
        raise ConfigError(f"{OPTION}: {url.scheme} takes one server, not "
                          f"{len(url.hosts)}, in {redact(url.raw)!r}")
    host, _, port = url.hosts[0].rpartition(":")
    if not host or port.endswith("]"):  # no port given (or a bare IPv6 literal)
        host, port = url.hosts[0], ""
    return host.strip("[]"), int(port) if port else default_port


def member_timeouts(url: BackendURL, opts: Any) -> tuple[float, float]:
    """Return ``(member timeout, heartbeat interval)``; refuse timeout <= heartbeat."""
    timeout = url.float_param("timeout", opts.session_timeout)
    heartbeat = url.float_param("heartbeat", opts.heartbeat_interval)
    t_src = (f"'timeout' in {OPTION}" if "timeout" in url.query
             else "[coordination] session_timeout")
    h_src = (f"'heartbeat' in {OPTION}" if "heartbeat" in url.query
             else "[coordination] heartbeat_interval")
    if not timeout > heartbeat:
        raise ConfigError(f"{url.scheme}: the member timeout ({timeout:g} s, {t_src}) must "
                          f"be greater than the heartbeat interval ({heartbeat:g} s, {h_src})")
    if timeout < 3 * heartbeat:
        LOG.warning("%s: fewer than 3 heartbeats (%g s) per member timeout (%g s): one late "
                    "heartbeat drops this member", url.scheme, heartbeat, timeout)
    return timeout, heartbeat


class MemberStore(abc.ABC):
    """What a TTL-heartbeat backend implements: each call is one bounded exchange.

    Calls raise the backend's own exceptions (``errors``; ``unreachable`` is
    the subset meaning "no answer"); the coordinator translates them.
    """

    name = "backend"
    address = ""
    errors: tuple[type[BaseException], ...] = (OSError,)
    unreachable: tuple[type[BaseException], ...] = (OSError,)
    pushes = False  #: True when :meth:`changes` reports changes

    @abc.abstractmethod
    def ping(self) -> None:
        """One round trip that proves the server answers."""

    def clock_sample(self) -> ClockSample | None:
        """Read the server's wall clock in one round trip (None: it has none)."""
        return None

    def heartbeat(self, keys: Sequence[tuple[str, str]],
                  ttl: float) -> tuple[list[bool], ClockSample | None]:
        """Renew ``keys`` (:meth:`touch`) and read the server's clock
        (:meth:`clock_sample`; :meth:`ping` when it has none and there are no
        keys); ``(found flags, sample)``.  A store may do it in one round trip."""
        alive = self.touch(keys, ttl) if keys else []
        sample = self.clock_sample()
        if sample is None and not keys:
            self.ping()
        return alive, sample

    @abc.abstractmethod
    def register(self, group: str, member_id: str, payload: bytes, ttl: float) -> None:
        """Write the member key with a TTL of at least ``ttl`` s and index it."""

    @abc.abstractmethod
    def replace(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        """Overwrite an existing member key (TTL renewed); False if it is gone."""

    @abc.abstractmethod
    def touch(self, keys: Sequence[tuple[str, str]], ttl: float) -> list[bool]:
        """Renew the TTL of each ``(group, member id)`` key; False where it is gone."""

    @abc.abstractmethod
    def write_claims(self, group: str, member_id: str, payload: bytes, ttl: float) -> bool:
        """Write the member's claims record (kept ``CLAIMS_RETENTION`` s, not
        watched, no change published), then renew the member key's TTL of
        ``ttl`` s.  True only if the member key still existed *after* the
        write: a peer that saw the member gone reads this record then."""

    @abc.abstractmethod
    def read_claims(self, group: str, member_ids: Sequence[str]) -> dict[str, bytes | None]:
        """The claims record of each member (None where it has none)."""

    @abc.abstractmethod
    def remove(self, group: str, member_id: str) -> None:
        """Delete the member key and its index entry (no error if absent)."""

    @abc.abstractmethod
    def members(self, group: str) -> dict[str, bytes]:
        """Payload of every live member by id (dead ids are dropped from the index)."""

    @abc.abstractmethod
    def groups(self) -> list[str]:
        """Names of every group ever joined under this prefix."""

    def changes(self, stop: threading.Event) -> Iterator[str | None]:
        """Yield a changed group's name or an :func:`inbox_notice` (None: anything
        may have changed) until ``stop``."""
        return iter(())

    # --- handoff inboxes (stores with ``inboxes``) -----------------------------
    inboxes = False  #: True when the store implements the three calls below

    def send_handoff(self, group: str, member_id: str, raw: bytes) -> bool:
        """Append ``raw`` to ``member_id``'s inbox and notify it, only if its
        member key exists (one atomic exchange); False when it does not."""
        raise NotImplementedError

    def read_inbox(self, group: str, member_id: str) -> list[tuple[str, bytes | None]]:
        """``(entry id, stored handoff)`` of every entry in the inbox, in order."""
        raise NotImplementedError

    def ack_handoffs(self, group: str, member_id: str, entry_ids: Sequence[str]) -> None:
        """Delete these entries of the inbox (no error for missing ones)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""
