"""ZooKeeper pollsters (``zkpoll.poll.central``), one per ``mntr`` statistic.

Resources are servers, ``host:port`` (port 2181 by default); each sample's
``resource_id`` is the resource as given.  One ``mntr`` per server per
cycle is shared by every ``zookeeper.*`` pollster (and one ``ruok`` for
``zookeeper.up``).  Without ``resources`` or ``discovery`` in the source,
the ``zookeeper_servers`` discovery polls the ensemble of
``[coordination] backend_url``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zkpoll.plugin import resource_key
from zkpoll.pollsters.reading import FieldPollster, ReadingPollster
from zkpoll.sample import CUMULATIVE, GAUGE, Sample
from zkpoll_zookeeper.client import four_letter_word, mntr

__all__ = [
    "STATES",
    "AvgLatencyPollster",
    "ConnectionsPollster",
    "EphemeralsPollster",
    "FollowersPollster",
    "MaxLatencyPollster",
    "OutstandingRequestsPollster",
    "PacketsReceivedPollster",
    "PacketsSentPollster",
    "ServerStatePollster",
    "UpPollster",
    "WatchesPollster",
    "ZnodesPollster",
]

#: Volume of ``zookeeper.server.state`` for each ``zk_server_state``.
STATES: Mapping[str, int] = {"standalone": 0, "leader": 1, "follower": 2, "observer": 3,
                             "read-only": 4}


class _MntrPollster(FieldPollster):
    """One ``mntr`` field per server."""

    reading = "zkpoll_zookeeper:mntr"
    default_discovery = "zookeeper_servers"

    def read(self, resource: Any, timeout: float) -> Mapping[str, Any]:
        return mntr(resource_key(resource), timeout)


class AvgLatencyPollster(_MntrPollster):
    """``zookeeper.latency.avg``: average request latency (ms) since the last reset."""

    meter, unit, field = "zookeeper.latency.avg", "ms", "zk_avg_latency"


class MaxLatencyPollster(_MntrPollster):
    """``zookeeper.latency.max``: highest request latency (ms) since the last reset."""

    meter, unit, field = "zookeeper.latency.max", "ms", "zk_max_latency"


class OutstandingRequestsPollster(_MntrPollster):
    """``zookeeper.requests.outstanding``: requests queued, not yet processed."""

    meter, unit, field = "zookeeper.requests.outstanding", "request", "zk_outstanding_requests"


class ZnodesPollster(_MntrPollster):
    """``zookeeper.znodes``: znodes in the data tree."""

    meter, unit, field = "zookeeper.znodes", "znode", "zk_znode_count"


class WatchesPollster(_MntrPollster):
    """``zookeeper.watches``: watches set by the server's clients."""

    meter, unit, field = "zookeeper.watches", "watch", "zk_watch_count"


class EphemeralsPollster(_MntrPollster):
    """``zookeeper.ephemerals``: ephemeral znodes."""

    meter, unit, field = "zookeeper.ephemerals", "znode", "zk_ephemerals_count"


class ConnectionsPollster(_MntrPollster):
    """``zookeeper.connections``: open client connections."""

    meter, unit, field = "zookeeper.connections", "connection", "zk_num_alive_connections"


class PacketsReceivedPollster(_MntrPollster):
    """``zookeeper.packets.received``: packets received since the server started."""

    meter, unit, field = "zookeeper.packets.received", "packet", "zk_packets_received"
    sample_type = CUMULATIVE


class PacketsSentPollster(_MntrPollster):
    """``zookeeper.packets.sent``: packets sent since the server started."""

    meter, unit, field = "zookeeper.packets.sent", "packet", "zk_packets_sent"
    sample_type = CUMULATIVE


class FollowersPollster(_MntrPollster):
    """``zookeeper.followers``: followers in sync with the leader.

    0 on a server that does not lead (``resource_metadata["state"]`` says
    why); ``learners`` (followers and observers) in the metadata.
    """

    meter, unit, field = "zookeeper.followers", "server", "zk_synced_followers"

    def volume(self, reading: Mapping[str, Any]) -> float | None:
        if reading.get("zk_server_state") != "leader":
            return 0
        # zk_followers: ZooKeeper before 3.6
        return reading.get(self.field, reading.get("zk_followers", 0))

    def metadata(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        return {"state": reading.get("zk_server_state"),
                "learners": reading.get("zk_learners", 0)}


class ServerStatePollster(_MntrPollster):
    """``zookeeper.server.state``: the server's role as a number (:data:`STATES`).

    ``resource_metadata["state"]`` holds the name; an unknown state is -1.
    """

    meter, unit, field = "zookeeper.server.state", "state", "zk_server_state"

    def volume(self, reading: Mapping[str, Any]) -> float | None:
        state = reading.get(self.field)
        return None if state is None else STATES.get(str(state), -1)

    def metadata(self, reading: Mapping[str, Any]) -> dict[str, Any]:
        return {"state": reading.get(self.field), "version": reading.get("zk_version")}


class UpPollster(ReadingPollster):
    """``zookeeper.up``: 1 when the server answers ``ruok`` with ``imok``, else 0.

    A server that cannot be reached gives 0 with ``resource_metadata["error"]``.
    """

    meter, unit, sample_type = "zookeeper.up", "status", GAUGE
    reading = "zkpoll_zookeeper:ruok"
    default_discovery = "zookeeper_servers"

    def read(self, resource: Any, timeout: float) -> str:
        return four_letter_word(resource_key(resource), "ruok", timeout)

    def make_samples(self, resource_id: str, reading: Any,
                     timestamp: float) -> Iterable[Sample]:
        up = reading.strip() == "imok"
        metadata = {} if up else {"error": f"ruok answered {reading.strip()[:80]!r}"}
        return [Sample(self.meter, self.sample_type, self.unit, int(up), resource_id,
                       timestamp=timestamp, resource_metadata=metadata)]

    def failure_samples(self, resource_id: str, error: str,
                        timestamp: float) -> Iterable[Sample]:
        return [Sample(self.meter, self.sample_type, self.unit, 0, resource_id,
                       timestamp=timestamp, resource_metadata={"error": error})]

