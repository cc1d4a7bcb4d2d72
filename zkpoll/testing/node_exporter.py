"""A real Prometheus node_exporter on a free loopback port: one genuine scrape target.

It runs ``/usr/bin/prometheus-node-exporter`` (Debian
``prometheus-node-exporter``) as our own process, not the system service,
with ``--collector.disable-defaults`` and only the collectors of
:data:`COLLECTORS`: all read ``/proc`` or ``/sys`` and answer in a few ms in
a container. The defaults of the Debian build also run collectors that fail
there on every scrape (systemd without D-Bus, hwmon, rapl, nvme, zfs...) or
can block on a stale mount (a slow ``filesystem`` stat is capped at 1 s)::

    with ManagedNodeExporter() as node:
        node.metrics_url        # http://127.0.0.1:P/metrics (about 500 series)
"""

from __future__ import annotations

from collections.abc import Sequence

from zkpoll.testing._server import ManagedServer

__all__ = ["COLLECTORS", "ManagedNodeExporter"]

#: Collectors that are fast and do not fail in a container.
COLLECTORS = ("cpu", "diskstats", "filefd", "filesystem", "loadavg", "meminfo", "netdev",
              "netstat", "sockstat", "stat", "time", "uname", "vmstat")


class ManagedNodeExporter(ManagedServer):
    """One node_exporter (override the binary with ``ZKPOLL_NODE_EXPORTER``).

    ``collectors``: the collectors to enable (default :data:`COLLECTORS`).
    """

    program = "prometheus-node-exporter"
    env_var = "ZKPOLL_NODE_EXPORTER"
    package = "prometheus-node-exporter"
    scheme = "http"
    ready_path = "/"   # the landing page: a half-read /metrics logs a broken pipe per family
    start_timeout = 15.0

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 collectors: Sequence[str] = COLLECTORS) -> None:
        super().__init__(port, host)
        self.collectors = tuple(collectors)

    @property
    def metrics_url(self) -> str:
        """``http://<host>:<port>/metrics``."""
        return f"{self.url}/metrics"

    def command(self) -> list[str]:
        return [self.find_binary(), f"--web.listen-address={self.address}",
                "--collector.disable-defaults",
                *(f"--collector.{name}" for name in self.collectors),
                "--collector.filesystem.mount-timeout=1s", "--log.level=warn"]

