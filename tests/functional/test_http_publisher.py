"""HTTP publisher (the http sender behind the durable spool) against real local HTTP servers."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zkpoll.exceptions import ConfigError
from zkpoll.publisher import load_publisher
from zkpoll.sample import Sample
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional

FAST = "retry_backoff=0.01&max_backoff=0.05&timeout=1"
NOW = time.time()  # recent: samples older than [publisher] spool_max_age are dropped


def make_samples(count: int, start: int = 0) -> list[Sample]:
    return [Sample("cpu.util", "gauge", "%", float(i), f"res-{i}", timestamp=NOW,
                   cycle_start=NOW)
            for i in range(start, start + count)]


class Server:
    """A local HTTP server that answers with ``statuses`` (then 200) and records bodies."""

    def __init__(self, statuses: tuple[int, ...] = (), delay: float = 0.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.requests = 0
        self.bodies: list[list[dict]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with recorder.lock:
                    recorder.requests += 1
                    status = recorder.statuses.pop(0) if recorder.statuses else 200
                time.sleep(recorder.delay)
                if status == 200:
                    with recorder.lock:
                        recorder.bodies.append(json.loads(body))
                        recorder.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def received(self) -> list[str]:
        with self.lock:
            return [sample["resource_id"] for body in self.bodies for sample in body]


@pytest.fixture
def server() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*statuses: int, delay: float = 0.0, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(statuses, delay, tls))
        return servers[-1]
    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_batches_are_posted_as_json_arrays(server):
    srv = server()
    publisher = load_publisher(None, f"http://127.0.0.1:{srv.port}/ingest?batch_size=10")
    publisher.publish_samples(make_samples(25))
    publisher.close(timeout=2)
    assert sorted(srv.received()) == sorted(f"res-{i}" for i in range(25))
    assert all(len(body) <= 10 for body in srv.bodies)
    assert srv.headers[0]["Content-Type"] == "application/json"
    assert srv.bodies[0][0] == make_samples(1)[0].as_dict()
    assert publisher.stats == {"published": 25, "dropped": 0, "errors": 0, "queue_depth": 0}


def test_5xx_and_429_are_retried_without_loss(server):
    srv = server(500, 503, 429)
    publisher = load_publisher(None, f"http://127.0.0.1:{srv.port}/?{FAST}")
    publisher.publish_samples(make_samples(5))
    wait_for(lambda: publisher.stats["published"] == 5, 2.0, 'publisher.stats["published"] == 5')
    assert srv.received() == [f"res-{i}" for i in range(5)] and srv.requests == 4
    assert publisher.stats == {"published": 5, "dropped": 0, "errors": 3, "queue_depth": 0}
    publisher.close()


def test_4xx_is_dropped_at_once(server, caplog):
    srv = server(400)
    publisher = load_publisher(None, f"http://127.0.0.1:{srv.port}/?{FAST}")
    with caplog.at_level(logging.WARNING, logger="zkpoll.publisher.http"):
        publisher.publish_samples(make_samples(4))
        wait_for(lambda: publisher.stats["dropped"] == 4, 2.0, 'publisher.stats["dropped"] == 4')
    assert srv.requests == 1 and publisher.stats["errors"] == 1
    assert "HTTP 400" in caplog.text and "rejected 4 of 4 samples for good" in caplog.text
    assert publisher.health.drops == {"rejected": 4}
    publisher.close()


def test_publish_never_waits_for_a_slow_server(server):
    delay = 2.0
    srv = server(delay=delay)
    publisher = load_publisher(None, f"http://127.0.0.1:{srv.port}/?batch_size=5&{FAST}")
    started = time.monotonic()
    for batch in range(4):
        publisher.publish_samples(make_samples(5, start=batch * 5))
    # a publish that waited for the server would take its whole delay: the four
    # returned before the first answer could exist, so nothing is acknowledged yet
    assert time.monotonic() - started < delay
    assert publisher.stats["queue_depth"] == 20
    publisher.close(timeout=0.3)  # what is not delivered by then stays in the spool
    stats = publisher.stats
    assert stats["dropped"] == 0 and stats["published"] + stats["queue_depth"] == 20


def test_a_dead_endpoint_is_retried_until_it_answers(server, caplog):
    port = dead_port()
    publisher = load_publisher(None, f"http://127.0.0.1:{port}/?{FAST}")
    with caplog.at_level(logging.WARNING, logger="zkpoll.publisher.http"):
        publisher.publish_samples(make_samples(3))
        wait_for(lambda: publisher.stats["errors"] >= 10, 2.0, 'publisher.stats["errors"] >= 10')
    assert publisher.stats["dropped"] == 0 and publisher.stats["queue_depth"] == 3
    assert "ConnectionRefusedError" in caplog.text and "retrying without limit" in caplog.text
    assert publisher.health.failing
    late = Server()
    late.httpd.server_close()  # rebind the late server on the port the publisher uses
    late.httpd = ThreadingHTTPServer(("127.0.0.1", port), late.httpd.RequestHandlerClass)
    threading.Thread(target=late.httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        wait_for(lambda: publisher.stats["published"] == 3, 2.0,
                 'publisher.stats["published"] == 3')
        assert late.received() == ["res-0", "res-1", "res-2"] and not publisher.health.failing
    finally:
        late.httpd.shutdown()
        late.httpd.server_close()
    publisher.close()


@pytest.mark.parametrize("param", ["max_retries", "max_queue"])
def test_removed_queue_options_are_refused(param):
    with pytest.raises(ConfigError, match=f"'{param}' was removed"):
        load_publisher(None, f"http://127.0.0.1:1/?{param}=3")


def test_publish_after_close_is_dropped(server):
    srv = server()
    publisher = load_publisher(None, f"http://127.0.0.1:{srv.port}/")
    publisher.close()
    publisher.publish_samples(make_samples(2))
    assert publisher.stats["dropped"] == 2 and srv.requests == 0


def test_credentials_become_basic_auth_and_are_never_logged(server, caplog):
    srv = server(500)
    url = f"http://alice:s3cr%40t@127.0.0.1:{srv.port}/?{FAST}"
    publisher = load_publisher(None, url)
    with caplog.at_level(logging.DEBUG, logger="zkpoll"):
        publisher.publish_samples(make_samples(1))
        wait_for(lambda: publisher.stats["published"] == 1, 2.0,
                 'publisher.stats["published"] == 1')
        dead = load_publisher(None, url.replace(str(srv.port), str(dead_port())))
        dead.publish_samples(make_samples(1))
        wait_for(lambda: dead.stats["errors"] >= 2, 2.0, 'dead.stats["errors"] >= 2')
    expected = base64.b64encode(b"alice:s3cr@t").decode()
    assert srv.headers[0]["Authorization"] == f"Basic {expected}"
    assert "***@127.0.0.1" in caplog.text
    for secret in ("s3cr", "alice"):
        assert secret not in caplog.text and secret not in repr(publisher)
    publisher.close()
    dead.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ssl.SSLContext]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


@pytest.mark.parametrize("query, delivered", [
    ("ca_file={cert}", True), ("verify_ssl=false", True), ("", False)])
def test_https_certificate_verification(server, certificate, query, delivered):
    cert, context = certificate
    srv = server(tls=context)
    url = f"https://127.0.0.1:{srv.port}/?{FAST}&{query.format(cert=cert)}".rstrip("&")
    publisher = load_publisher(None, url)
    publisher.publish_samples(make_samples(2))
    wait_for(lambda: publisher.stats["published"] == 2 or publisher.stats["errors"] >= 2, 2.0,
             'publisher.stats["published"] == 2 or publisher.stats["errors"] >= 2')
    assert publisher.stats["published"] == (2 if delivered else 0)
    if not delivered:
        assert "CERTIFICATE_VERIFY_FAILED" in (publisher.health.last_error or "")
        assert publisher.stats["dropped"] == 0  # kept in the spool, retried
    publisher.close(timeout=0)


def test_https_bad_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="ca_file"):
        load_publisher(None, f"https://127.0.0.1/?ca_file={tmp_path}/missing.pem")
