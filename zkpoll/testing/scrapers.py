"""Real Prometheus-style scrapers, the peers a zkpoll scraper is benchmarked against.

:class:`ManagedVmagent` runs ``/usr/bin/vmagent`` (Debian
``victoria-metrics``) and :class:`ManagedPrometheusAgent` runs
``/usr/bin/prometheus --enable-feature=agent`` (Debian ``prometheus``), each
as our own process on a free loopback port with its state in its own
directory. Both scrape the targets of one ``file_sd`` file (the test
rewrites it with :func:`write_file_sd`; vmagent rereads it every
``sd_refresh`` seconds, Prometheus on inotify), every ``scrape_interval``
seconds, and remote-write everything, ``up`` and the other per-target
series included, to ``remote_write_url`` (e.g.
:attr:`ManagedVictoriaMetrics.write_url`).

``http_sd_url`` instead of ``file_sd``: the scraper reads its targets from
that ``http_sd`` URL every ``sd_refresh`` seconds (a zkpoll agent's
``/sd/SOURCE``, say).

``members=N, member=i`` makes the scraper shard ``i`` of ``N``: vmagent
through ``-promscrape.cluster.membersCount/memberNum`` (and
``replication_factor``: each target scraped by that many members),
Prometheus through ``hashmod`` relabelling of ``__address__`` (modulus N,
keep i). The shards of N instances are disjoint and cover every target::

    write_file_sd(sd, fleet.targets)
    agents = [ManagedVmagent(vm.write_url, sd, members=2, member=i, scrape_interval=1,
                             external_labels={"shard": str(i)}) for i in range(2)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zkpoll.testing._server import ManagedServer

__all__ = ["ManagedPrometheusAgent", "ManagedVmagent", "write_file_sd"]


def write_file_sd(path: Path, targets: Iterable[str],
                  labels: Mapping[str, str] | None = None) -> None:
    """Replace the ``file_sd`` file ``path`` (atomically: a scraper never reads half
    of it) with one group of ``targets`` and ``labels``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps([{"targets": list(targets), "labels": dict(labels or {})}]))
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class _Scraper(ManagedServer):
    """What both scrapers share: the file_sd job, the interval, the shard, the sink."""

    scheme = "http"
    start_timeout = 30.0

    def __init__(self, remote_write_url: str, file_sd: Path | None = None, *,
                 http_sd_url: str | None = None, members: int = 1,
                 member: int = 0, scrape_interval: float = 5.0,
                 scrape_timeout: float | None = None, job: str = "exposition",
                 external_labels: Mapping[str, str] | None = None, sd_refresh: float = 1.0,
                 port: int | None = None, host: str = "127.0.0.1") -> None:
        if (file_sd is None) == (http_sd_url is None):
            raise ValueError("give either file_sd or http_sd_url")
        if not 0 <= member < members:
            raise ValueError(f"member {member} is not in 0..{members - 1}")
        super().__init__(port, host)
        self.remote_write_url = remote_write_url
        self.file_sd = Path(file_sd).resolve() if file_sd is not None else None
        self.http_sd_url = http_sd_url
        self.members = members
        self.member = member
        self.scrape_interval = scrape_interval
        self.scrape_timeout = min(scrape_interval, 10.0) if scrape_timeout is None \
            else scrape_timeout
        self.job = job
        self.external_labels = dict(external_labels or {})
        self.sd_refresh = sd_refresh

    @property
    def config_path(self) -> Path:
        return self._dir / "scrape.yml"

    def scrape_config(self) -> dict[str, Any]:
        """The one ``scrape_configs`` entry: the job reading :attr:`file_sd` (or
        :attr:`http_sd_url`)."""
        sd = {"http_sd_configs": [{"url": self.http_sd_url}]} if self.http_sd_url else \
            {"file_sd_configs": [{"files": [str(self.file_sd)]}]}
        return {"job_name": self.job, "scrape_interval": _duration(self.scrape_interval),
                "scrape_timeout": _duration(self.scrape_timeout), **sd}

    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write ``config`` (JSON is YAML) to :attr:`config_path`."""
        self.config_path.write_text(json.dumps(config, indent=1))
        return self.config_path



class ManagedVmagent(_Scraper):
    """One vmagent (override the binary with ``ZKPOLL_VMAGENT``).

    ``replication_factor``: with ``members > 1``, how many members scrape
    each target (the sink then receives that many copies of every sample).
    """

    program = "vmagent"
    env_var = "ZKPOLL_VMAGENT"
    package = "victoria-metrics"
    ready_path = "/health"

    def __init__(self, remote_write_url: str, file_sd: Path | None = None, *,
                 replication_factor: int = 1, **kwargs: Any) -> None:
        super().__init__(remote_write_url, file_sd, **kwargs)
        self.replication_factor = replication_factor

    def command(self) -> list[str]:
        config = self.write_config({"scrape_configs": [self.scrape_config()]})
        command = [self.find_binary(), f"-httpListenAddr={self.address}",
                   f"-promscrape.config={config}",
                   f"-promscrape.fileSDCheckInterval={_duration(self.sd_refresh)}",
                   f"-promscrape.httpSDCheckInterval={_duration(self.sd_refresh)}",
                   f"-remoteWrite.url={self.remote_write_url}",
                   f"-remoteWrite.tmpDataPath={self._dir / 'remote-write'}",
                   "-remoteWrite.flushInterval=1s", "-loggerLevel=INFO"]
        command += [f"-remoteWrite.label={name}={value}"
                    for name, value in self.external_labels.items()]
        if self.members > 1:
            command += [f"-promscrape.cluster.membersCount={self.members}",
                        f"-promscrape.cluster.memberNum={self.member}",
                        f"-promscrape.cluster.replicationFactor={self.replication_factor}"]
        return command


class ManagedPrometheusAgent(_Scraper):
    """One Prometheus in agent mode (override the binary with ``ZKPOLL_PROMETHEUS``)."""

    program = "prometheus"
    env_var = "ZKPOLL_PROMETHEUS"
    package = "prometheus"
    ready_path = "/-/ready"

    def scrape_config(self) -> dict[str, Any]:
        config = super().scrape_config()
        sd = config.get("http_sd_configs") or config["file_sd_configs"]
        sd[0]["refresh_interval"] = _duration(self.sd_refresh)
        if self.members > 1:
            config["relabel_configs"] = [
                {"source_labels": ["__address__"], "modulus": self.members,
                 "target_label": "__tmp_shard", "action": "hashmod"},
                {"source_labels": ["__tmp_shard"], "regex": str(self.member),
                 "action": "keep"}]
        return config

    def command(self) -> list[str]:
        config = self.write_config({
            "global": {"external_labels": self.external_labels},
            "scrape_configs": [self.scrape_config()],
            "remote_write": [{"url": self.remote_write_url,
                              "queue_config": {"batch_send_deadline": "1s",
                                               "min_backoff": "50ms", "max_backoff": "1s"},
                              "metadata_config": {"send": False}}]})
        return [self.find_binary(), "--enable-feature=agent", f"--config.file={config}",
                f"--storage.agent.path={self._dir / 'agent'}",
                f"--web.listen-address={self.address}", "--log.level=warn"]
