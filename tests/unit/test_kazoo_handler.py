"""Our kazoo handler: select on one poll() call (real sockets), callbacks run inline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kazoo.handlers.utils import selector_select

from zkpoll.coordination.zookeeper._kazoo import kazoo_client
from zkpoll.coordination.zookeeper._kazoo_handler import (
    InlineAsyncResult,
    PollingHandler,
    poll_select,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_nothing_to_read_times_out_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    assert poll_select([a], [], [], 0) == ([], [], [])
    started = time.monotonic()
    assert poll_select([a], [], [], 0.05) == ([], [], [])
    assert time.monotonic() - started >= 0.04  # it waited (no upper bound: busy machine)


def test_readable_and_writable_objects_are_returned_as_given(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.send(b"x")
    assert poll_select([a], [b], [], 1.0) == ([a], [b], [])
    assert poll_select([a.fileno()], [], [], None) == ([a.fileno()], [], [])


def test_same_answers_as_kazoos_selector_select(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    cases = [([a], [], 0), ([a, b], [], 0), ([], [a, b], 0), ([a], [a], 0)]
    for rlist, wlist, timeout in cases:
        assert poll_select(rlist, wlist, [], timeout) == selector_select(rlist, wlist, [],
                                                                         timeout)
    b.send(b"x")
    for rlist, wlist, timeout in cases:
        assert poll_select(rlist, wlist, [], timeout) == selector_select(rlist, wlist, [],
                                                                         timeout)


def test_a_closed_peer_reads_as_readable(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    assert poll_select([a], [], [], 1.0)[0] == [a]  # recv() then returns b"" (kazoo: dropped)


def test_bad_arguments_raise_like_kazoos(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(ValueError):
        poll_select([a], [], [], -1)
    with pytest.raises(TypeError):
        poll_select([a], [], [], "1")  # type: ignore[arg-type]
    closed = socket.socket()
    closed.close()
    with pytest.raises(TypeError):
        poll_select([closed], [], [], 0)  # fileno() is -1


def test_coordinator_clients_use_the_polling_handler() -> None:
    from zkpoll.coordination.url import parse_backend_url

    class Opts:
        zookeeper_use_ssl = False
        zookeeper_sasl_mechanism = None
        zookeeper_digest_auth = None
        retry_backoff = 0.5
        max_retry_interval = 30.0

    client = kazoo_client(parse_backend_url("zookeeper://127.0.0.1:2181/x"), Opts(), 10.0)
    assert isinstance(client.handler, PollingHandler)


def test_callbacks_run_in_the_thread_that_sets_the_result_and_never_raise() -> None:
    import threading

    handler = PollingHandler()
    handler.start()
    seen: list[tuple[str, object]] = []

    def record(result: InlineAsyncResult) -> None:
        seen.append((threading.current_thread().name, result.get()))

    def broken(result: InlineAsyncResult) -> None:
        raise RuntimeError("a broken callback")

    result = handler.async_result()
    result.rawlink(broken)
    result.rawlink(record)

    def setter() -> None:
        result.set(42)  # what kazoo's connection thread does with an answer

    thread = threading.Thread(target=setter, name="kazoo-connection")
    thread.start()
    thread.join(5)
    assert seen == [("kazoo-connection", 42)]  # the broken one was logged, not raised
    assert not [t for t in threading.enumerate() if "_thread_worker" in t.name]


def test_watch_callbacks_are_dispatched_inline() -> None:
    from kazoo.protocol.states import Callback

    handler = PollingHandler()
    handler.start()
    events: list[str] = []
    handler.dispatch_callback(Callback("watch", events.append, ("changed",)))
    handler.dispatch_callback(Callback("watch", lambda e: 1 / 0, ("boom",)))  # logged
    assert events == ["changed"]
    handler.stop()
