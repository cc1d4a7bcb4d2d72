"""Built-in pollsters: this host (psutil), HTTP and TCP checks on 127.0.0.1."""

from __future__ import annotations

import collections
import http.server
import logging
import re
import socket
import threading
import time
import types
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import ClassVar

import psutil
import pytest

import zkpoll.pollsters
from zkpoll.discovery.local import host_id
from zkpoll.plugin import PollingContext, Pollster
from zkpoll.pollsters import cycle_cached, host, network
from zkpoll.sample import CUMULATIVE, GAUGE, Sample
from zkpoll.testing.plugins import poll

pytestmark = pytest.mark.timeout(5)

HOST = host_id(None)
HOST_CLASSES = [getattr(host, name) for name in host.__all__]


def _context(timeout: float = 2.0) -> PollingContext:
    return PollingContext(conf=None, cache={}, source="test", timeout=timeout)


def _check(samples: list[Sample], pollster: Pollster) -> list[Sample]:
    for s in samples:
        s.validate()
        assert s.volume is not None
        assert (s.name, s.type, s.unit) == (pollster.meter, pollster.sample_type, pollster.unit)
    return samples


def _poll(cls: type[Pollster], resources: list[str], context: PollingContext | None = None,
          ) -> list[Sample]:
    """What a lone agent publishes: an Unreachable gives its sample (if any)."""
    pollster = cls()
    return _check(poll(pollster, resources, context=context or _context()), pollster)


# --- plugin contract -----------------------------------------------------------------

def test_public_api() -> None:
    assert zkpoll.pollsters.__all__ == ["connect_failed", "cycle_cached"]


@pytest.mark.parametrize("namespace", ["zkpoll.poll.compute", "zkpoll.poll.central"])
def test_entry_points_name_the_meter(namespace: str) -> None:
    eps = [ep for ep in entry_points(group=namespace)
           if ep.value.startswith(("zkpoll.pollsters.host:", "zkpoll.pollsters.network:"))]
    assert len(eps) == {"zkpoll.poll.compute": 12, "zkpoll.poll.central": 3}[namespace]
    for ep in eps:
        cls = ep.load()
        assert issubclass(cls, Pollster)
        pollster = cls(None)
        assert pollster.meter == ep.name
        assert pollster.sample_type in (GAUGE, CUMULATIVE)
        expected = "local_host" if namespace.endswith("compute") else None
        assert pollster.default_discovery == expected


def test_cycle_cached_once_across_threads() -> None:
    context, calls = _context(), []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(cycle_cached(context, "k", compute)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 5 and len(calls) == 1


def test_cycle_cached_does_not_cache_errors() -> None:
    context = _context()

    def fail() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cycle_cached(context, "k", fail)
    assert cycle_cached(context, "k", lambda: 7) == 7


# --- host ----------------------------------------------------------------------------

def test_host_pollsters_on_this_host() -> None:
    context = _context()
    pollsters = {cls.meter: cls() for cls in HOST_CLASSES}
    time.sleep(0.1)  # let CPU time pass since the constructor primed host.cpu.util
    by_meter = {meter: _check(list(p.get_samples(context, [HOST])), p)
                for meter, p in pollsters.items()}

    (cpu,) = by_meter["host.cpu.util"]
    assert 0.0 <= cpu.volume <= 100.0 and cpu.resource_id == HOST
    for meter in ("host.load.1min", "host.load.5min", "host.load.15min"):
        (load,) = by_meter[meter]
        assert load.volume >= 0 and load.resource_id == HOST
    total = psutil.virtual_memory().total
    for meter in ("host.memory.used", "host.memory.available"):
        (mem,) = by_meter[meter]
        assert 0 < mem.volume <= total and mem.resource_id == HOST and mem.unit == "B"
    (procs,) = by_meter["host.processes"]
    assert procs.volume >= 1 and procs.resource_id == HOST

    mounts = {p.mountpoint for p in psutil.disk_partitions(all=False)}
    assert by_meter["host.disk.usage"], "no mounted filesystem found"
    for s in by_meter["host.disk.usage"]:
        assert s.resource_id.startswith(f"{HOST}:")
        assert s.resource_id[len(HOST) + 1:] in mounts
        assert {"device", "fstype", "total"} <= set(s.resource_metadata)
        assert 0 <= s.volume <= s.resource_metadata["total"]

    disks = set(psutil.disk_io_counters(perdisk=True) or {})
    nics = set(psutil.net_io_counters(pernic=True))
    for meters, names in ((("host.disk.read.bytes", "host.disk.write.bytes"), disks),
                          (("host.network.incoming.bytes", "host.network.outgoing.bytes"), nics)):
        for meter in meters:
            samples = by_meter[meter]
            assert {s.resource_id for s in samples} == {f"{HOST}:{n}" for n in names}
            assert all(isinstance(s.volume, int) and s.volume >= 0 for s in samples)


def test_host_pollster_ignores_other_hosts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="zkpoll.pollsters.host"):
        assert _poll(host.Load1Pollster, ["some-other-host"]) == []
    assert "some-other-host" in caplog.text
    assert [s.resource_id for s in _poll(host.Load1Pollster, ["other", HOST, HOST])] == [HOST]


def test_host_id_from_conf() -> None:
    pollster = host.MemoryUsedPollster(types.SimpleNamespace(host="node-9"))
    samples = pollster.get_samples(_context(), ["node-9", HOST])
    assert [s.resource_id for s in samples] == (["node-9"] if HOST != "node-9" else [])


@pytest.mark.parametrize(("function", "classes"), [
    ("getloadavg", [host.Load1Pollster, host.Load5Pollster, host.Load15Pollster]),
    ("virtual_memory", [host.MemoryUsedPollster, host.MemoryAvailablePollster]),
    ("disk_io_counters", [host.DiskReadBytesPollster, host.DiskWriteBytesPollster]),
    ("net_io_counters", [host.NetworkIncomingBytesPollster,
                         host.NetworkOutgoingBytesPollster]),
])
def test_one_psutil_read_per_cycle(monkeypatch: pytest.MonkeyPatch, function: str,
                                   classes: list[type[Pollster]]) -> None:
    calls = collections.Counter()
    real = getattr(psutil, function)

    def counting(*args, **kwargs):
        calls[function] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(psutil, function, counting)
    context = _context()
    for cls in classes:
        _poll(cls, [HOST], context)
    assert calls[function] == 1
    _poll(classes[0], [HOST], _context())  # the next cycle reads again
    assert calls[function] == 2


def test_load_samples_come_from_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "getloadavg", lambda: (1.5, 2.5, 3.5))
    context = _context()
    volumes = [_poll(cls, [HOST], context)[0].volume
               for cls in (host.Load1Pollster, host.Load5Pollster, host.Load15Pollster)]
    assert volumes == [1.5, 2.5, 3.5]


def test_cpu_util_is_primed_and_computed_from_cpu_times(monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    times = type(psutil.cpu_times())
    zero = dict.fromkeys(times._fields, 0.0)
    reads = iter([
        times(**{**zero, "user": 10.0, "idle": 90.0}),                   # constructor
        times(**{**zero, "user": 40.0, "system": 10.0, "idle": 150.0}),  # cycle 1
        times(**{**zero, "user": 40.0, "system": 10.0, "idle": 150.0}),  # cycle 2: no time
        times(**{**zero, "user": 40.0, "system": 10.0, "idle": 250.0}),  # cycle 3: idle
    ])
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: next(reads))
    pollster = host.CPUUtilPollster()
    volumes = [[s.volume for s in pollster.get_samples(_context(), [HOST])] for _ in range(3)]
    # busy 40 of 100 s; then no CPU time elapsed (no sample); then 0 of 100 s busy
    assert volumes == [[40.0], [], [0.0]]


def test_disk_usage_skips_unreadable_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    def usage(path: str):
        raise PermissionError(path)

    monkeypatch.setattr(psutil, "disk_usage", usage)
    assert _poll(host.DiskUsagePollster, [HOST]) == []


# --- HTTP ----------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, int]] = {"/ok": 200, "/missing": 404, "/error": 500, "/moved": 302}

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.requests[self.path] += 1
        if path == "/slow":
            self.server.release.wait(3)
        status = self.routes.get(path, 200)
        body = b"hello\n"
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/ok")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    block_on_close = False
    request_queue_size = 64


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.lock, srv.requests, srv.release = threading.Lock(), collections.Counter(), threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server, path: str) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_status(server: _Server, closed_port: int) -> None:
    urls = {name: _url(server, f"/{name}") for name in ("ok", "missing", "error", "moved", "slow")}
    urls["closed"] = f"http://127.0.0.1:{closed_port}/"
    urls["not-http"] = "ftp://127.0.0.1/file"
    samples = _poll(network.HTTPStatusPollster, list(urls.values()), _context(timeout=0.3))
    by_id = {s.resource_id: s for s in samples}
    assert set(by_id) == set(urls.values())  # resource ids are the URLs as given
    status = {name: by_id[url].volume for name, url in urls.items()}
    assert status == {"ok": 200, "missing": 404, "error": 500, "moved": 302,
                      "slow": 0, "closed": 0, "not-http": 0}
    assert server.requests["/ok"] == 1  # the redirect was not followed
    assert by_id[urls["ok"]].resource_metadata == {}
    assert re.search("timed out|no answer within", by_id[urls["slow"]].resource_metadata["error"])
    assert "Connection" in by_id[urls["closed"]].resource_metadata["error"]
    assert "http" in by_id[urls["not-http"]].resource_metadata["error"]


def test_http_response_time(server: _Server, closed_port: int,
                            caplog: pytest.LogCaptureFixture) -> None:
    good = [_url(server, p) for p in ("/ok", "/missing", "/error", "/moved")]
    bad = [_url(server, "/slow"), f"http://127.0.0.1:{closed_port}/x"]
    with caplog.at_level(logging.WARNING, logger="zkpoll.pollsters.network"):
        samples = _poll(network.HTTPResponseTimePollster, good + bad, _context(timeout=0.3))
    assert [s.resource_id for s in samples] == good
    assert all(0 <= s.volume < 0.3 for s in samples)
    for url in bad:
        assert url in caplog.text


def test_http_pollsters_share_one_request(server: _Server) -> None:
    urls = [_url(server, "/ok"), _url(server, "/missing")]
    context = _context()
    _poll(network.HTTPStatusPollster, urls, context)
    _poll(network.HTTPResponseTimePollster, urls, context)
    assert server.requests == {"/ok": 1, "/missing": 1}
    _poll(network.HTTPResponseTimePollster, urls, _context())  # next cycle
    assert server.requests == {"/ok": 2, "/missing": 2}


def test_http_pollsters_share_one_request_when_run_in_parallel(server: _Server) -> None:
    urls = [_url(server, "/slow")]
    context = _context(timeout=0.3)
    threads = [threading.Thread(target=cls().get_samples, args=(context, urls))
               for cls in (network.HTTPStatusPollster, network.HTTPResponseTimePollster)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.requests == {"/slow": 1}


def test_http_checks_run_concurrently(server: _Server) -> None:
    urls = [_url(server, f"/slow?n={n}") for n in range(2 * network.MAX_WORKERS)]
    began = time.monotonic()
    samples = _poll(network.HTTPStatusPollster, urls, _context(timeout=0.25))
    elapsed = time.monotonic() - began
    assert [s.volume for s in samples] == [0] * len(urls)
    assert elapsed < 0.25 * len(urls) / 3  # two rounds of the pool, not 16 timeouts


@pytest.mark.parametrize(("timeout", "expected"), [
    (0.0, network.MAX_TIMEOUT), (-1.0, network.MAX_TIMEOUT), (3.0, 3.0), (60.0, 10.0)])
def test_request_timeout(timeout: float, expected: float) -> None:
    assert network._request_timeout(_context(timeout=timeout)) == expected


# --- TCP -----------------------------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as sock:
        yield sock.getsockname()[1]


def test_tcp_connect_time(listener: int) -> None:
    resources = [f"127.0.0.1:{listener}", f"tcp://127.0.0.1:{listener}", f"localhost:{listener}"]
    samples = _poll(network.TCPConnectTimePollster, resources)
    assert [s.resource_id for s in samples] == resources
    assert all(0 <= s.volume < 1 for s in samples)
    assert samples[0].resource_metadata == {"address": "127.0.0.1"}


@pytest.mark.parametrize("resource", ["127.0.0.1", "tcp://127.0.0.1", "127.0.0.1:99999",
                                      "http://127.0.0.1:80", ":80", "127.0.0.1:0"])
def test_tcp_bad_resource(resource: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="zkpoll.pollsters.network"):
        assert _poll(network.TCPConnectTimePollster, [resource]) == []
    assert resource in caplog.text


def test_tcp_closed_port(listener: int, closed_port: int,
                         caplog: pytest.LogCaptureFixture) -> None:
    closed = f"127.0.0.1:{closed_port}"
    with caplog.at_level(logging.WARNING, logger="zkpoll.pollsters.network"):
        samples = _poll(network.TCPConnectTimePollster, [closed, f"127.0.0.1:{listener}"])
    assert [s.resource_id for s in samples] == [f"127.0.0.1:{listener}"]
    assert closed in caplog.text and "Refused" in caplog.text


def test_parse_endpoint() -> None:
    assert network._parse_endpoint("example.org:443") == ("example.org", 443)
    assert network._parse_endpoint("tcp://[::1]:22") == ("::1", 22)
    assert network._parse_endpoint("[::1]:22") == ("::1", 22)
