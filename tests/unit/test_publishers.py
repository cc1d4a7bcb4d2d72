"""Publishers: loading, URL options, file, udp, log and null (HTTP: tests/functional)."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.parse

import pytest

import zkpoll.publisher
from zkpoll.exceptions import ConfigError
from zkpoll.publisher import load_publisher, redact_url, url_options
from zkpoll.publisher.base import boolean, integer
from zkpoll.publisher.file import FilePublisher
from zkpoll.publisher.log import LogPublisher
from zkpoll.publisher.null import NullPublisher
from zkpoll.publisher.spooled import SpooledPublisher
from zkpoll.publisher.udp import DEFAULT_PORT, UDPPublisher
from zkpoll.sample import Sample


def make_samples(count: int, start: int = 0, **metadata: object) -> list[Sample]:
    return [Sample("cpu.util", "gauge", "%", float(i), f"res-{i}", timestamp=1_700_000_000.0,
                   resource_metadata=metadata, source="src", member_id="m1",
                   cycle_start=1_700_000_000.0)
            for i in range(start, start + count)]


def read_lines(*paths: str) -> list[dict]:
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines.extend(json.loads(line) for line in f)
    return lines


# -- public API and loading -------------------------------------------------

def test_public_api_is_pinned():
    assert sorted(zkpoll.publisher.__all__) == [
        "NAMESPACE", "Publisher", "SENDER_NAMESPACE", "available_schemes", "load_publisher",
        "redact_url", "url_options"]
    assert {"file", "http", "https", "udp", "log", "null", "prometheus+remote-write"} <= set(
        zkpoll.publisher.available_schemes())


@pytest.mark.parametrize("url, cls", [
    ("null://", NullPublisher), ("log://?level=debug", LogPublisher),
    ("file:///tmp/zkpoll-never-written.jsonl", FilePublisher),
    ("udp://127.0.0.1:4952", UDPPublisher), ("http://127.0.0.1:8080/x", SpooledPublisher),
    ("https://example.com/x?verify_ssl=false", SpooledPublisher),
    ("prometheus+remote-write://127.0.0.1:9090/api/v1/write", SpooledPublisher)])
def test_load_publisher_by_scheme(url, cls):
    publisher = load_publisher(None, url)
    assert type(publisher) is cls
    assert set(publisher.stats) >= {"published", "dropped", "errors", "queue_depth"}
    assert all(isinstance(v, int) for v in publisher.stats.values())
    publisher.close()


@pytest.mark.parametrize("url, expected", [
    ("kafka://broker:9092/topic", "unknown scheme 'kafka'"),
    ("no-scheme-here", "has no scheme"),
    ("http://host:notaport/", "is malformed"),
])
def test_load_publisher_bad_url(url, expected):
    with pytest.raises(ConfigError) as info:
        load_publisher(None, url)
    message = str(info.value)
    assert expected in message and repr(url) in message
    if "scheme" in expected:
        assert "file, http, https" in message


@pytest.mark.parametrize("url, param", [
    ("http://h/?batch_size=0", "batch_size"),
    ("http://h/?batch_size=many", "batch_size"),
    ("http://h/?verify_ssl=maybe", "verify_ssl"),
    ("http://h/?timeout=nan", "timeout"),
    ("http://h/?batch_size=5&batch_size=6", "batch_size"),
    ("file:///tmp/x?max_bytes=-1", "max_bytes"),
    ("log://?level=loud", "level"),
    ("udp://h:1?max_datagram=10", "max_datagram"),
    ("null://?anything=1", "anything"),
])
def test_bad_query_parameter(url, param):
    with pytest.raises(ConfigError, match=f"publisher URL .*{param}"):
        load_publisher(None, url)


def test_constructor_failure_becomes_config_error(monkeypatch):
    def broken(self, conf, url):
        raise RuntimeError("boom")
    monkeypatch.setattr(UDPPublisher, "__init__", broken)
    with pytest.raises(ConfigError, match="'udp' publisher failed to load: boom") as info:
        load_publisher(None, "udp://127.0.0.1:9")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_url_options_defaults_and_conversion():
    spec = {"n": (integer(1), 3), "flag": (boolean, False)}
    assert url_options(urllib.parse.urlsplit("x://h/"), spec) == {"n": 3, "flag": False}
    assert url_options(urllib.parse.urlsplit("x://h/?n=7&flag=yes"), spec) == {
        "n": 7, "flag": True}


def test_redaction():
    assert redact_url("https://bob:hunter2@h:1/p?q=1") == "https://***@h:1/p?q=1"
    assert redact_url("http://token@h/") == "http://***@h/"
    with pytest.raises(ConfigError) as info:
        load_publisher(None, "https://bob:hunter2@h/?bogus=1")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(load_publisher(None, "https://bob:hunter2@h/"))


# -- file -------------------------------------------------------------------

def test_file_writes_json_lines_and_creates_directory(tmp_path):
    path = tmp_path / "deep" / "dir" / "samples.jsonl"
    with load_publisher(None, f"file://{path}") as publisher:
        publisher.publish_samples(make_samples(3))
        publisher.publish_samples(make_samples(2, start=3))
    lines = read_lines(str(path))
    assert [line["resource_id"] for line in lines] == [f"res-{i}" for i in range(5)]
    assert lines[0] == make_samples(1)[0].as_dict()
    assert b", " not in path.read_bytes()  # compact separators
    assert publisher.stats == {"published": 5, "dropped": 0, "errors": 0, "queue_depth": 0}


@pytest.mark.parametrize("url", ["file:out/s.jsonl", "file://./out/s.jsonl",
                                 "file:./out/s%20x.jsonl"])
def test_file_relative_paths(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    publisher = load_publisher(None, url)
    publisher.publish_samples(make_samples(1))
    publisher.close()
    expected = urllib.parse.unquote(url.split(":", 1)[1].lstrip("/").removeprefix("./"))
    assert len(read_lines(str(tmp_path / expected))) == 1


@pytest.mark.parametrize("url", ["file://var/log/x.jsonl", "file:///", "file://localhost"])
def test_file_bad_paths(url):
    with pytest.raises(ConfigError, match="publisher URL"):
        load_publisher(None, url)


def test_file_rotation_loses_no_line(tmp_path):
    path = str(tmp_path / "s.jsonl")
    publisher = load_publisher(None, f"file://{path}?max_bytes=2000&backup_count=50")
    for batch in range(20):
        publisher.publish_samples(make_samples(7, start=batch * 7))
    publisher.close()
    files = [path] + [f"{path}.{i}" for i in range(1, 51) if os.path.exists(f"{path}.{i}")]
    assert len(files) > 5
    assert all(os.path.getsize(f) <= 2000 for f in files)
    ids = {line["resource_id"] for line in read_lines(*files)}
    assert ids == {f"res-{i}" for i in range(140)}
    assert publisher.stats["published"] == 140


def test_file_rotation_keeps_backup_count(tmp_path):
    path = str(tmp_path / "s.jsonl")
    publisher = load_publisher(None, f"file://{path}?max_bytes=1000&backup_count=2")
    publisher.publish_samples(make_samples(50))
    publisher.close()
    assert sorted(os.listdir(tmp_path)) == ["s.jsonl", "s.jsonl.1", "s.jsonl.2"]
    newest = read_lines(path)
    assert newest[-1]["resource_id"] == "res-49"  # the newest lines are in PATH


def test_file_backup_count_zero_truncates(tmp_path):
    path = str(tmp_path / "s.jsonl")
    publisher = load_publisher(None, f"file://{path}?max_bytes=1000&backup_count=0")
    publisher.publish_samples(make_samples(50))
    publisher.close()
    assert os.listdir(tmp_path) == ["s.jsonl"]
    assert 0 < os.path.getsize(path) <= 1000
    assert read_lines(path)[-1]["resource_id"] == "res-49"


def test_file_concurrent_writers(tmp_path):
    path = str(tmp_path / "s.jsonl")
    publisher = load_publisher(None, f"file://{path}?max_bytes=5000&backup_count=1000")

    def work(offset: int) -> None:
        for batch in range(25):
            publisher.publish_samples(make_samples(4, start=offset + batch * 4))
    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.close()
    files = [os.path.join(tmp_path, name) for name in os.listdir(tmp_path)]
    assert len(read_lines(*files)) == 400 == publisher.stats["published"]


def test_file_io_error_is_counted_and_logged_once(tmp_path, caplog):
    (tmp_path / "not-a-dir").write_text("")
    publisher = load_publisher(None, f"file://{tmp_path}/not-a-dir/s.jsonl")
    with caplog.at_level(logging.DEBUG, logger="zkpoll.publisher.file"):
        publisher.publish_samples(make_samples(3))
        publisher.publish_samples(make_samples(2))
    assert publisher.stats == {"published": 0, "dropped": 5, "errors": 2, "queue_depth": 0}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage()


def test_file_ends_a_truncated_line_before_appending(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"cut short')
    publisher = load_publisher(None, f"file://{path}")
    publisher.publish_samples(make_samples(1))
    publisher.close()
    first, second = path.read_text().splitlines()
    assert first == '{"cut short' and json.loads(second)["resource_id"] == "res-0"


def test_unserialisable_sample_is_dropped_not_raised(tmp_path):
    path = tmp_path / "s.jsonl"
    publisher = load_publisher(None, f"file://{path}")
    bad = make_samples(1)[0]
    bad.volume = float("nan")
    publisher.publish_samples([bad, *make_samples(2)])
    assert len(read_lines(str(path))) == 2
    assert publisher.stats["dropped"] == 1 and publisher.stats["published"] == 2


# -- udp --------------------------------------------------------------------

@pytest.fixture
def udp_receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()


def receive(sock: socket.socket, count: int) -> tuple[list[dict], int]:
    samples, datagrams = [], 0
    while len(samples) < count:
        data = sock.recv(65535)
        datagrams += 1
        samples.extend(json.loads(line) for line in data.split(b"\n"))
    return samples, datagrams


def test_udp_packs_samples_into_datagrams(udp_receiver):
    port = udp_receiver.getsockname()[1]
    publisher = load_publisher(None, f"udp://127.0.0.1:{port}")
    publisher.publish_samples(make_samples(20))
    samples, datagrams = receive(udp_receiver, 20)
    assert [s["resource_id"] for s in samples] == [f"res-{i}" for i in range(20)]
    assert datagrams == 1 and publisher.stats["published"] == 20
    publisher.close()


def test_udp_respects_max_datagram_and_drops_oversized(udp_receiver):
    port = udp_receiver.getsockname()[1]
    publisher = load_publisher(None, f"udp://127.0.0.1:{port}?max_datagram=1000")
    publisher.publish_samples(make_samples(10) + make_samples(1, note="x" * 2000))
    samples, datagrams = receive(udp_receiver, 10)
    assert len(samples) == 10 and datagrams > 1
    assert publisher.stats == {"published": 10, "dropped": 1, "errors": 0, "queue_depth": 0}
    publisher.close()


def test_udp_socket_error_is_counted_then_recovers(udp_receiver):
    port = udp_receiver.getsockname()[1]
    publisher = load_publisher(None, f"udp://127.0.0.1:{port}")
    publisher.publish_samples(make_samples(1))
    publisher._target[0].close()  # the next send fails with EBADF
    publisher.publish_samples(make_samples(2))
    publisher.publish_samples(make_samples(3))
    assert len(receive(udp_receiver, 4)[0]) == 4
    assert publisher.stats == {"published": 4, "dropped": 2, "errors": 1, "queue_depth": 0}
    publisher.close()


def test_udp_without_a_port_warns_once_and_uses_ceilometers_4952(caplog):
    with caplog.at_level(logging.DEBUG, logger="zkpoll.publisher.udp"):
        publisher = load_publisher(None, "udp://127.0.0.1")
        publisher.publish_samples(make_samples(1))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        ("publisher udp://127.0.0.1 names no port: sending to port 4952, the default of "
         "Ceilometer's UDP publisher (write udp://127.0.0.1:4952 to say so)")]
    assert (publisher.host, publisher.port, DEFAULT_PORT) == ("127.0.0.1", 4952, 4952)
    publisher.close()


def test_udp_default_port_message_brackets_ipv6(caplog):
    with caplog.at_level(logging.WARNING, logger="zkpoll.publisher.udp"):
        load_publisher(None, "udp://[::1]").close()
    assert "write udp://[::1]:4952 to say so" in caplog.text


def test_udp_with_a_port_says_nothing_and_port_0_is_refused(caplog):
    with caplog.at_level(logging.DEBUG, logger="zkpoll.publisher.udp"):
        load_publisher(None, "udp://127.0.0.1:4953").close()
    assert not caplog.records
    with pytest.raises(ConfigError, match=r"'udp://127.0.0.1:0': port 0 is not a destination"):
        load_publisher(None, "udp://127.0.0.1:0")


def test_udp_without_a_port_really_sends_to_4952():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", DEFAULT_PORT))
    except OSError as exc:
        sock.close()
        pytest.skip(f"127.0.0.1:{DEFAULT_PORT} is in use here: {exc}")
    sock.settimeout(2)
    try:
        publisher = load_publisher(None, "udp://127.0.0.1")
        publisher.publish_samples(make_samples(3))
        assert [s["resource_id"] for s in receive(sock, 3)[0]] == ["res-0", "res-1", "res-2"]
        publisher.close()
    finally:
        sock.close()


# -- log and null -----------------------------------------------------------

def test_log_publisher_logs_one_line_per_sample(caplog):
    publisher = load_publisher(None, "log://?level=warning")
    with caplog.at_level(logging.INFO, logger="zkpoll.publisher.log"):
        publisher.publish_samples(make_samples(3))
    records = [r for r in caplog.records if r.name == "zkpoll.publisher.log"]
    assert len(records) == 3 and all(r.levelno == logging.WARNING for r in records)
    assert json.loads(records[0].getMessage().removeprefix("sample "))["resource_id"] == "res-0"
    assert publisher.stats["published"] == 3


def test_log_publisher_below_level_counts_only(caplog):
    publisher = load_publisher(None, "log://?level=debug")
    with caplog.at_level(logging.INFO, logger="zkpoll.publisher.log"):
        publisher.publish_samples(make_samples(3))
    assert not caplog.records and publisher.stats["published"] == 3


def test_null_publisher_counts():
    publisher = load_publisher(None, "null://")
    for _ in range(3):
        publisher.publish_samples(make_samples(4))
    assert publisher.stats == {"published": 12, "dropped": 0, "errors": 0, "queue_depth": 0}
