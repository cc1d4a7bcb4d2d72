"""The one exception tree of zkpoll.

Every error zkpoll raises on purpose derives from :class:`ZkpollError`::

    ZkpollError
    ├── ConfigError                 bad option value, URL, YAML or definition
    │   ├── PollingConfigError      an invalid polling YAML (file, source, reason)
    │   └── AlarmConfigError        an invalid alarm definition file (file, alarm, reason)
    ├── CoordinationError           anything that went wrong talking to the backend
    │   ├── CoordinatorUnreachable  no answer from the backend within a deadline
    │   └── NotJoined               an operation on a group this member has not joined
    ├── PluginError                 a plugin failed to load or broke its contract
    │   └── PluginOptOut            raised by a plugin that chooses not to load here
    ├── PublishError                a publisher could not deliver (internal: counted, never raised to polling)
    │   └── BatchRejected           the sink refused a batch for good (4xx): retrying cannot help
    └── WorkGroupError              a WorkGroup (zkpoll.work) used out of order or with bad keys

Backend exceptions (kazoo, sockets) are translated in one place per backend
with ``raise ... from exc`` so the cause is kept.
"""

from __future__ import annotations

__all__ = [
    "AlarmConfigError",
    "BatchRejected",
    "ConfigError",
    "CoordinationError",
    "CoordinatorUnreachable",
    "NotJoined",
    "PluginError",
    "PluginOptOut",
    "PollingConfigError",
    "PublishError",
    "WorkGroupError",
    "ZkpollError",
]


class ZkpollError(Exception):
    """Root of every error raised by zkpoll."""


class ConfigError(ZkpollError):
    """A configuration value is invalid.

    The message names where the value came from (``[section] option``, a
    file and line, a source name) so an operator can fix it without reading
    a traceback.
    """


class PollingConfigError(ConfigError):
    """The polling YAML is invalid."""

    def __init__(self, path: str, reason: str, *, source: str | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        self.line = line
        where = path if line is None else f"{path}:{line}"
        if source is not None:
            where += f" (source {source!r})"
        super().__init__(f"{where}: {reason}")


class AlarmConfigError(ConfigError):
    """An alarm definition file (or its directory) is invalid.

    The message reads ``file:line (alarm 'id'): reason``; the line and the
    alarm are left out when unknown.
    """

    def __init__(self, path: str, reason: str, alarm: str | None = None,
                 line: int | None = None) -> None:
        self.path = path
        self.reason = reason
        self.alarm = alarm
        self.line = line
        where = path if line is None else f"{path}:{line}"
        if alarm is not None:
            where += f" (alarm {alarm!r})"
        super().__init__(f"{where}: {reason}")


class CoordinationError(ZkpollError):
    """The coordination backend failed an operation."""


class CoordinatorUnreachable(CoordinationError):
    """The coordination backend did not answer within the deadline."""


class NotJoined(CoordinationError):
    """The member has not joined the group it tried to use."""


class PluginError(ZkpollError):
    """A plugin could not be loaded or does not honour its contract."""


class PluginOptOut(PluginError):
    """Raised by a plugin's constructor to be skipped quietly.

    Use it when the plugin cannot work on this host (a missing library, no
    such device) and that is not a fault: the loader logs it at DEBUG and
    does not count it as a failure.
    """


class PublishError(ZkpollError):
    """A publisher could not deliver a batch."""


class BatchRejected(PublishError):
    """The sink refused a batch for good (a 4xx answer other than 429).

    A :class:`~zkpoll.publisher.sender.BatchSender` raises it when sending
    the same batch again cannot succeed; the spool then drops the batch,
    counts it under the ``rejected`` reason and logs it at ERROR, instead of
    retrying it forever in front of everything queued behind it.

    ``rejected``: how many samples of the batch were refused when the sender
    could deliver the others (None: the whole batch).
    """

    def __init__(self, message: str, rejected: int | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected


class WorkGroupError(ZkpollError):
    """A :class:`~zkpoll.work.WorkGroup` was used out of order (started twice,
    two loops, a cycle claimed backwards) or given keys that are not strings."""
