"""The options and checks every partitioned service shares (polling and alarm agents).

``[DEFAULT] host``, the ``[coordination]`` options of an agent in a group
(``settle_time``, ``fence_margin``, ``on_backend_loss``, ``weight``,
``start_timeout``), the timing rule between them and the backend's lease
(:func:`check_timing`), and the one place a :class:`~zkpoll.ownership.Partition`
is built from them (:func:`new_partition`).
"""

from __future__ import annotations

import socket

from oslo_config import cfg

from zkpoll.coordination import Coordinator
from zkpoll.exceptions import ConfigError
from zkpoll.ownership import Partition

__all__ = ["AGENT_COORDINATION_OPTS", "DEFAULT_OPTS", "FENCE", "KEEP_LAST_RING",
           "check_timing", "new_partition"]

#: ``[coordination] on_backend_loss`` values.
FENCE = "fence"
KEEP_LAST_RING = "keep_last_ring"

DEFAULT_OPTS = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host: the resource id of the host pollsters."),
]

AGENT_COORDINATION_OPTS = [
    cfg.FloatOpt("settle_time", default=5.0, min=0.0,
                 help="Seconds between an agent announcing that it joins or leaves "
                      "and that taking effect, so all agents switch rings at the "
                      "same cycle. Must exceed the worst membership watch delay plus "
                      "the clock skew between agents (keep them on NTP): an agent "
                      "whose clock offset against the backend exceeds "
                      "(settle_time - watch delay) / 2 does not poll partitioned "
                      "work (docs/design.md, section 4, Clocks)."),
    cfg.FloatOpt("fence_margin", default=0.25, min=0.05, max=0.9,
                 help="Fraction of the session timeout kept as a safety margin: an "
                      "agent stops polling partitioned work once it has not heard "
                      "from the backend for (1 - fence_margin) x session_timeout."),
    cfg.StrOpt("on_backend_loss", default=FENCE, choices=[
        (FENCE, "stop polling partitioned work: gaps, never duplicates"),
        (KEEP_LAST_RING, ("keep polling the last slice: no gaps if the whole backend "
                            "is down, duplicates if only this agent was cut off"))],
               help="What an agent does once it has lost contact with the coordination "
                    "backend for longer than its lease. It cannot tell a dead ensemble "
                    "from its own network partition, so choose the failure you prefer. "
                    "With keep_last_ring, agents that reconnect at different times "
                    "overlap for the cycles in between: keep max_retry_interval short."),
    cfg.FloatOpt("weight", default=1.0, min=0.01,
                 help="This agent's share of the work relative to the others."),
    cfg.FloatOpt("start_timeout", default=10.0, min=0.0,
                 help="Seconds to wait for the backend at start before logging an "
                      "error; the agent keeps retrying either way."),
]


def check_timing(settle_time: float, heartbeat: float, session_timeout: float) -> None:
    """Refuse timings that make partitioning unsafe or always fenced."""
    if heartbeat * 3 > session_timeout:
        raise ConfigError(
            f"[coordination] heartbeat_interval ({heartbeat:g}s) must be at most a third "
            f"of the session timeout ({session_timeout:g}s), or the lease runs out "
            "between two heartbeats")
    if settle_time <= 2 * heartbeat:
        raise ConfigError(
            f"[coordination] settle_time ({settle_time:g}s) must exceed twice "
            f"heartbeat_interval ({heartbeat:g}s): an agent trusts its view of the group "
            "only for settle_time after the last answered heartbeat")


def new_partition(coordinator: Coordinator, group: str, cconf: cfg.ConfigOpts,
                  failover_hops: int = 0) -> Partition:
    """The :class:`Partition` of ``group`` with the ``[coordination]`` options ``cconf``
    (``failover_hops``: members tried after the owner for an unreachable resource)."""
    return Partition(coordinator, group, cconf.settle_time, cconf.fence_margin,
                     keep_last_ring=cconf.on_backend_loss == KEEP_LAST_RING,
                     failover_hops=failover_hops)
