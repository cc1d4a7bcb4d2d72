"""zkpoll as a target allocator: two agents, two real scrapers scraping what each serves.

Two ``zkpoll-polling`` agents partition one ``prometheus.allocate`` source of
20 exposition-server targets through a real ZooKeeper; a Prometheus in
agent mode (or a vmagent) beside each reads its agent's ``/sd/SOURCE`` (http_sd) and
remote-writes into VictoriaMetrics with an external label naming it.  Once
steady, every target's ``up`` series comes from exactly one of them, and
each scraper scrapes what its agent serves (docs/allocator.md).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import zkpoll
from tests.functional.agents import start_agent
from tests.functional.fleet import ServiceProcess, logs_tail
from zkpoll.scrape.allocator import METER
from zkpoll.testing.exposition_control import ManagedExpositionServer
from zkpoll.testing.plugins import require_server
from zkpoll.testing.scrapers import ManagedPrometheusAgent, ManagedVmagent
from zkpoll.testing.victoria_metrics import ManagedVictoriaMetrics
from zkpoll.testing.waiting import wait_for
from zkpoll.testing.zookeeper import ManagedZooKeeper

pytestmark = pytest.mark.functional

TARGETS = 20
INTERVAL = 2  # the source's, in seconds
Scraper = ManagedPrometheusAgent | ManagedVmagent


def allocate_installed() -> bool:
    """True when the agents' entry points include ``prometheus.allocate``."""
    return any(ep.name == METER
               for ep in importlib.metadata.entry_points(group="zkpoll.poll.central"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def served(url: str) -> list[str] | None:
    """The target addresses an agent serves at ``url`` now; None while it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return sorted(a for group in json.loads(answer.read()) for a in group["targets"])
    except (OSError, ValueError):
        return None


def up_by_scraper(vm: ManagedVictoriaMetrics, job: str,
                  since: float | None = None) -> dict[str, dict[str, int]]:
    """{instance: {scraper: ``up`` samples}} of ``job`` written since ``since``."""
    vm.flush()
    out: dict[str, dict[str, int]] = {}
    for labels, points in vm.export(f'up{{job="{job}"}}', start=since).items():
        label = dict(labels)
        counts = out.setdefault(label["instance"], {})
        counts[label["scraper"]] = counts.get(label["scraper"], 0) + len(points)
    return out


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess | Scraper]]:
    """What a test started (append them); stopped after it."""
    started: list[ServiceProcess | Scraper] = []
    yield started
    for process in reversed(started):
        if isinstance(process, ServiceProcess):
            process.kill()
        else:
            process.close()


@pytest.mark.parametrize("kind", [ManagedPrometheusAgent, ManagedVmagent],
                         ids=["prometheus-agent", "vmagent"])
def test_two_scrapers_beside_two_agents_scrape_every_target_exactly_once(
        kind: type[Scraper], zookeeper_server: ManagedZooKeeper, zk_chroot: str,
        victoria_metrics_server: ManagedVictoriaMetrics,
        managed_exposition_server: Callable[..., ManagedExpositionServer],
        processes: list[ServiceProcess | Scraper], tmp_path: Path) -> None:
    require_server(kind)
    if not allocate_installed():
        pytest.skip(f"{METER} is not registered in this environment's entry points: "
                    "reinstall zkpoll (pip install -e .)")
    vm = victoria_metrics_server
    fleet = managed_exposition_server(targets=TARGETS, series=100)
    source = f"alloc-{uuid.uuid4().hex[:8]}"  # also the job label of the served targets
    polling = tmp_path / "polling.yaml"
    polling.write_text("sources:\n"
                       f"  - name: {source}\n    interval: {INTERVAL}\n"
                       f"    meters: [{METER}]\n    publishers: ['null://']\n"
                       "    resources:\n" + "".join(f"      - '{t}'\n" for t in fleet.targets))
    backend = f"zookeeper://{zookeeper_server.address}{zk_chroot}"
    # The agents run the zkpoll this test imports, wherever it is installed.
    root = str(Path(zkpoll.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    urls = []
    for i in range(2):
        bind = f"127.0.0.1:{free_port()}"
        processes.append(start_agent(
            tmp_path, f"agent{i}", backend, polling, namespaces="central", env=env,
            extra=f"[coordination]\nmember_name = agent{i}\n[api]\nbind = {bind}\n"))
        urls.append(f"http://{bind}/sd/{source}")
    agents = list(processes)

    def diagnostics() -> str:
        return logs_tail(agents)  # type: ignore[arg-type]

    def split() -> list[list[str]] | None:
        """Both agents' lists once they are disjoint, non-empty and cover every target."""
        lists = [served(url) for url in urls]
        if any(not s for s in lists):
            return None
        first, second = lists  # type: ignore[misc]
        if set(first) & set(second) or sorted(first + second) != sorted(fleet.targets):
            return None
        return [first, second]
    shares = wait_for(split, 30, "the two agents serving disjoint shares of every target",
                      interval=0.2, diagnostics=diagnostics)

    scrapers = []
    for i, url in enumerate(urls):
        scraper = kind(vm.write_url, http_sd_url=url, scrape_interval=1, sd_refresh=1,
                       external_labels={"scraper": f"s{i}"})
        processes.append(scraper)
        scrapers.append(scraper)
        scraper.start()

    def both_write_every_target() -> bool:
        seen = up_by_scraper(vm, source)
        return len(seen) == TARGETS and {s for counts in seen.values() for s in counts} \
            == {"s0", "s1"}
    wait_for(both_write_every_target, 20, "up of every target written by the scrapers",
             interval=0.5, diagnostics=lambda: "\n".join(
                 [diagnostics(), *(s.log_text(tail=15) for s in scrapers)]))

    steady = time.time()

    def scraped_thrice() -> bool:
        seen = up_by_scraper(vm, source, since=steady)
        return len(seen) == TARGETS and all(sum(c.values()) >= 3 for c in seen.values())
    wait_for(scraped_thrice, 15, "three scrapes of every target since steady", interval=0.5)
    assert [served(url) for url in urls] == shares, "the allocation moved during the test"
    seen = up_by_scraper(vm, source, since=steady)
    by_scraper = {name: sorted(i for i, counts in seen.items() if name in counts)
                  for name in ("s0", "s1")}
    twice = {i: counts for i, counts in seen.items() if len(counts) > 1}
    assert not twice, f"scraped by both: {twice}"
    assert sorted(seen) == sorted(fleet.targets)
    assert [by_scraper["s0"], by_scraper["s1"]] == shares
