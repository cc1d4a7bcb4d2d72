"""Which failures of the network pollsters say Unreachable (issue 21).

Real sockets on 127.0.0.1: a port that refuses (the kit's ``refused_port``),
a listener whose backlog is full (``full_backlog``: the connect times out),
a server that accepts and never answers (``silent_server``: a read timeout,
an answer), and a plain HTTP server spoken to in TLS (a handshake failure,
an answer).  The classification rules themselves are pure and tested apart.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any

import pytest

from zkpoll.plugin import Unreachable
from zkpoll.pollsters import connect_failed, network
from zkpoll.sample import GAUGE, Sample
from zkpoll.testing.plugins import (
    PollsterContract,
    RefusedPort,
    SilentServer,
    make_context,
    poll,
    poll_results,
)

pytestmark = pytest.mark.timeout(30)


# --- the built-in pollsters against the kit's contract ------------------------------

class TestHTTPStatusContract(PollsterContract):
    meter, sample_type, unit = "http.status", GAUGE, "status"
    pollster_class = network.HTTPStatusPollster

    @pytest.fixture
    def resources(self, healthy_http: str) -> list[Any]:
        return [f"http://{healthy_http}/a", f"http://{healthy_http}/b"]

    @pytest.fixture
    def unresponsive_resources(self, silent_server: SilentServer) -> list[Any]:
        return [f"http://{silent_server.address}/"]

    @pytest.fixture
    def unreachable_resources(self, refused_port: RefusedPort) -> list[Any]:
        return [f"http://{refused_port.address}/"]


class TestHTTPResponseTimeContract(TestHTTPStatusContract):
    meter, sample_type, unit = "http.response.time", GAUGE, "s"
    pollster_class = network.HTTPResponseTimePollster


class TestTCPConnectTimeContract(PollsterContract):
    meter, sample_type, unit = "tcp.connect.time", GAUGE, "s"
    pollster_class = network.TCPConnectTimePollster

    @pytest.fixture
    def resources(self, healthy_http: str) -> list[Any]:
        return [healthy_http, f"tcp://{healthy_http}"]

    @pytest.fixture
    def unresponsive_resources(self, full_backlog: str) -> list[Any]:
        return [full_backlog]

    @pytest.fixture
    def unreachable_resources(self, refused_port: RefusedPort) -> list[Any]:
        return [refused_port.address, f"tcp://{refused_port.address}"]


# --- connection refused ----------------------------------------------------------------

def test_refused_http_carries_todays_sample(refused_port: RefusedPort) -> None:
    url = f"http://{refused_port.address}/"
    context = make_context(timeout=2.0)
    [status] = poll_results(network.HTTPStatusPollster(), [url], context=context)
    [timing] = poll_results(network.HTTPResponseTimePollster(), [url], context=context)
    assert isinstance(status, Unreachable) and isinstance(timing, Unreachable)
    assert status.resource_id == timing.resource_id == url
    assert status.reason.startswith("ConnectionRefusedError")
    assert timing.sample is None  # http.response.time never had a sample for it
    sample = status.sample
    assert isinstance(sample, Sample)
    assert (sample.name, sample.volume, sample.resource_id) == ("http.status", 0, url)
    assert sample.resource_metadata == {"error": status.reason}
    # What a lone agent publishes is what the pollster published before issue 21.
    assert poll(network.HTTPStatusPollster(), [url])[0].resource_metadata == \
        sample.resource_metadata


def test_refused_tcp_is_unreachable_without_a_sample(refused_port: RefusedPort,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    [result] = poll_results(network.TCPConnectTimePollster(), [refused_port.address])
    assert result == Unreachable(refused_port.address, result.reason)
    assert "Refused" in result.reason
    assert f"connect to {refused_port.address} failed" in caplog.text  # WARNING as before


# --- timeouts: at connect (unreachable) or after it (an answer) -------------------------

def test_a_connect_timeout_is_unreachable(full_backlog: str) -> None:
    url = f"http://{full_backlog}/"
    context = make_context(timeout=0.5)  # the checks' budget is 0.4 s
    [status] = poll_results(network.HTTPStatusPollster(), [url], context=context)
    [tcp] = poll_results(network.TCPConnectTimePollster(), [full_backlog], context=context)
    assert isinstance(status, Unreachable) and isinstance(tcp, Unreachable)
    assert status.sample is not None and status.sample.volume == 0
    assert status.sample.resource_metadata["error"] == status.reason
    assert tcp.sample is None


def test_a_read_timeout_is_an_answer(silent_server: SilentServer) -> None:
    url = f"http://{silent_server.address}/"
    context = make_context(timeout=0.5)
    [status] = poll_results(network.HTTPStatusPollster(), [url], context=context)
    assert isinstance(status, Sample) and status.volume == 0  # connected: not Unreachable
    assert poll_results(network.HTTPResponseTimePollster(), [url], context=context) == []


# --- TLS: a handshake that fails or never ends is an answer -----------------------------

def test_a_tls_handshake_failure_is_an_answer(healthy_http: str) -> None:
    [status] = poll_results(network.HTTPStatusPollster(), [f"https://{healthy_http}/"])
    assert isinstance(status, Sample) and status.volume == 0
    assert "SSL" in status.resource_metadata["error"]


def test_a_tls_handshake_timeout_is_an_answer(silent_server: SilentServer) -> None:
    url = f"https://{silent_server.address}/"
    [status] = poll_results(network.HTTPStatusPollster(), [url],
                            context=make_context(timeout=0.5))
    assert isinstance(status, Sample) and status.volume == 0


# --- the rules, pure ---------------------------------------------------------------------

@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    TimeoutError("timed out"),  # socket.timeout is TimeoutError
    OSError(errno.ETIMEDOUT, "Connection timed out"),  # the kernel gave up on SYNs
    socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    OSError(errno.ENETUNREACH, "Network is unreachable"),
    OSError(errno.EHOSTDOWN, "Host is down"),
    OSError(errno.ENETDOWN, "Network is down"),
    OSError(errno.EINVAL, "Invalid argument"),  # a blackhole route
    OSError(errno.EACCES, "Permission denied"),  # a prohibit route
], ids=repr)
def test_connect_failures(exc: BaseException) -> None:
    assert connect_failed(exc)


@pytest.mark.parametrize("exc", [
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ssl.SSLError(1, "wrong version number"),
    OSError("no address for example.org"),
    ValueError("port out of range"),
], ids=repr)
def test_not_connect_failures(exc: BaseException) -> None:
    assert not connect_failed(exc)


def test_only_a_failed_connect_is_unreachable() -> None:
    attempt = network._Attempt()
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert not attempt.unreachable(refused) and not attempt.unreachable()  # nothing tried
    attempt.phase = network._CONNECTING
    assert attempt.unreachable(refused) and attempt.unreachable()  # late while connecting
    assert not attempt.unreachable(ssl.SSLError(1, "bad handshake"))
    attempt.phase = network._CONNECTED
    assert not attempt.unreachable(TimeoutError("timed out")) and not attempt.unreachable()
