"""A test kit for pollster and discovery plugins (needs pytest).

Test a plugin without installing it, and check it against the plugin
contract::

    from zkpoll.testing.plugins import PollsterContract, make_test_plugins, poll

    plugins = make_test_plugins(pollsters={"my.meter": MyPollster},
                                discoveries={"mine": MyDiscovery})
    samples = poll(plugins.pollsters["my.meter"].pollster, ["res-1"])

    class TestMyMeter(PollsterContract):
        meter, sample_type, unit = "my.meter", "gauge", "B"
        pollster_class = MyPollster

        @pytest.fixture
        def resources(self, my_server):           # live resources
            return [my_server.address]

        @pytest.fixture
        def unresponsive_resources(self, silent_server):   # for the timeout check
            return [silent_server.address]

        @pytest.fixture
        def unreachable_resources(self, refused_port):     # for the Unreachable check
            return [refused_port.address]

:func:`poll` returns what a lone agent publishes (an ``Unreachable`` gives
its ``sample``, if any); :func:`poll_results` returns what the pollster
yielded, ``Unreachable`` included.

Fixtures for a plugin's ``conftest.py`` (import them there):
``zookeeper_server`` and ``redis_server`` (one real server each for the
session, as zkpoll's own tests use; skipped when not installed, failed
under ``CI=true``), ``silent_server`` (accepts TCP connections, never
answers) and ``refused_port`` (a 127.0.0.1 port that refuses connections).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from typing import Any, ClassVar

import pytest
import stevedore
from stevedore.extension import Extension

from zkpoll.exceptions import ZkpollError
from zkpoll.plugin import Discovery, PollingContext, Pollster, Unreachable, resource_key
from zkpoll.polling.plugins import LoadedPlugins, register_extensions
from zkpoll.sample import Sample
from zkpoll.testing._server import ManagedServer
from zkpoll.testing.redis import ManagedRedis
from zkpoll.testing.zookeeper import ManagedZooKeeper, find_installation

__all__ = [
    "PollsterContract",
    "RefusedPort",
    "SilentServer",
    "discover",
    "make_context",
    "make_test_plugins",
    "poll",
    "poll_cycle",
    "poll_results",
    "redis_server",
    "refused_port",
    "require_server",
    "require_zookeeper",
    "silent_server",
    "zookeeper_server",
]

#: Seconds a plugin may overrun its timeout before a check fails.
GRACE = 1.0


def make_context(conf: Any = None, *, timeout: float = 5.0, source: str = "test",
                 cycle_start: float | None = None,
                 cache: dict[str, Any] | None = None,
                 meters: tuple[str, ...] = (), scrape: Any = None,
                 interval: float = 0.0) -> PollingContext:
    """A :class:`PollingContext` as the agent builds it for one cycle."""
    return PollingContext(conf, {} if cache is None else cache, source,
                          time.time() if cycle_start is None else cycle_start, timeout,
                          meters, scrape, interval=interval)


def _extension(name: str, plugin: Any, conf: Any) -> Extension[Any]:
    obj = plugin(conf) if isinstance(plugin, type) else plugin
    return Extension(name, None, type(obj), obj)  # type: ignore[arg-type]


def make_test_plugins(pollsters: Mapping[str, Any] | None = None,
                      discoveries: Mapping[str, Any] | None = None, *,
                      namespace: str = "central", conf: Any = None) -> LoadedPlugins:
    """Build what the agent loads from entry points, from in-memory plugins.

    ``pollsters`` maps meter names, ``discoveries`` discovery names, to a
    plugin class (instantiated with ``conf``) or instance.  They go through
    stevedore's ``make_test_instance`` and the agent's own checks, so an
    object that is not a Pollster lands in ``failures`` as it would when
    installed.
    """
    def manager(items: Mapping[str, Any] | None) -> stevedore.ExtensionManager:
        extensions = [_extension(n, p, conf) for n, p in (items or {}).items()]
        return stevedore.ExtensionManager.make_test_instance(extensions, namespace=namespace)

    plugins = LoadedPlugins()
    register_extensions(plugins, namespace, manager(pollsters), manager(discoveries))
    return plugins


def _run(call: Any, timeout: float, what: str) -> Any:
    """Run ``call()`` in a thread; fail the test if it takes over ``timeout + GRACE``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"zkpoll-test-{what}", daemon=True)
    thread.start()
    thread.join(timeout + GRACE)
    if thread.is_alive():
        pytest.fail(f"{what} still running {timeout + GRACE:.1f}s after it started "
                    f"(timeout {timeout:.1f}s): it blocks beyond the polling timeout")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _check_unreachable(result: Unreachable, keys: set[str], seen: set[str]) -> None:
    rid = result.resource_id
    assert rid in keys, f"{result!r}: not one of the resources given"
    assert rid not in seen, f"two Unreachable for {rid!r}"
    assert isinstance(result.reason, str) and result.reason, f"{result!r}: no reason"
    if result.sample is not None:
        assert isinstance(result.sample, Sample), f"{result!r}: sample is not a Sample"
        result.sample.validate()
    seen.add(rid)


def poll_results(pollster: Pollster, resources: list[Any], *,
                 context: PollingContext | None = None,
                 timeout: float = 5.0) -> list[Sample | Unreachable]:
    """Call ``get_samples`` as the agent does; return samples and :class:`Unreachable` s.

    Fails the test if the call outlives ``timeout`` (plus :data:`GRACE`) or
    yields something that is neither a valid :class:`Sample` nor a valid
    ``Unreachable`` (one per resource at most, for a resource given, with a
    reason, a valid sample or None, and no sample with its id beside it).
    """
    context = context or make_context(timeout=timeout)
    results = _run(lambda: list(pollster.get_samples(context, list(resources)) or ()),
                   context.timeout or timeout, f"{type(pollster).__name__}.get_samples")
    unreachable = [r for r in results if isinstance(r, Unreachable)]
    for result in results:
        if not isinstance(result, Unreachable):
            assert isinstance(result, Sample), f"{result!r} is not a zkpoll Sample"
            result.validate()
    if unreachable:
        keys, seen = {resource_key(r) for r in resources}, set[str]()
        for result in unreachable:
            _check_unreachable(result, keys, seen)
        both = seen & {r.resource_id for r in results if isinstance(r, Sample)}
        assert not both, f"a sample and an Unreachable for {both}"
    return results


def poll(pollster: Pollster, resources: list[Any], *, context: PollingContext | None = None,
         timeout: float = 5.0) -> list[Sample]:
    """Call ``get_samples`` as the agent does; check the deadline and each result.

    Returns what a lone agent publishes: the samples, and for each
    :class:`Unreachable` its ``sample`` (if any).  Checks as :func:`poll_results`.
    """
    published: list[Sample] = []
    for result in poll_results(pollster, resources, context=context, timeout=timeout):
        sample = result.sample if isinstance(result, Unreachable) else result
        if sample is not None:
            published.append(sample)
    return published


def poll_cycle(plugins: LoadedPlugins, meters: Sequence[str], resources: list[Any], *,
               timeout: float = 10.0,
               checked: bool = True) -> dict[str, list[Sample | Unreachable]]:
    """One cycle of ``meters`` on ``resources``, every pollster called at once in its
    own thread with one shared context, as the agent calls them; each meter's
    results as :func:`poll_results` checks them (``checked=False``: unchecked, for
    benchmarks)."""
    context = make_context(timeout=timeout, meters=tuple(meters))

    def one(meter: str) -> list[Sample | Unreachable]:
        pollster = plugins.pollsters[meter].pollster
        if checked:
            return poll_results(pollster, resources, context=context)
        return list(pollster.get_samples(context, list(resources)) or ())

    with futures.ThreadPoolExecutor(max(1, len(meters)),
                                    thread_name_prefix="zkpoll-test-cycle") as pool:
        calls = {meter: pool.submit(one, meter) for meter in meters}
        return {meter: call.result() for meter, call in calls.items()}


def discover(discovery: Discovery, param: str | None = None, *,
             context: PollingContext | None = None, timeout: float = 5.0) -> list[Any]:
    """Call ``discover`` with a deadline; check every resource has an id."""
    context = context or make_context(timeout=timeout)
    found = _run(lambda: list(discovery.discover(context, param)), context.timeout or timeout,
                 f"{type(discovery).__name__}.discover")
    for resource in found:
        resource_key(resource)  # ValueError when it has no id
    return found


class PollsterContract:
    """Base class of a pytest class that checks one pollster against the contract.

    Set :attr:`meter`, :attr:`sample_type`, :attr:`unit` and
    :attr:`pollster_class` (or override the ``pollster`` fixture), and
    override the ``resources`` fixture with live resources.  Override
    ``unresponsive_resources`` (e.g. with ``silent_server``) to check the
    timeout, ``unreachable_resources`` (e.g. with ``refused_port``) to check
    that each gives one :class:`Unreachable` and no sample; :meth:`resource_of`
    when sample ids are not the resource ids.
    """

    meter: ClassVar[str]
    sample_type: ClassVar[str]
    unit: ClassVar[str]
    pollster_class: ClassVar[type[Pollster]]
    #: Whether every live resource gives at least one sample.
    sample_per_resource: ClassVar[bool] = True
    #: Polling timeout of the checks with live resources (seconds).
    timeout: ClassVar[float] = 5.0
    #: Polling timeout of the check with unresponsive resources (seconds).
    short_timeout: ClassVar[float] = 0.5

    @pytest.fixture
    def pollster(self) -> Pollster:
        return self.pollster_class(None)

    @pytest.fixture
    def resources(self) -> list[Any]:
        pytest.skip(f"{type(self).__name__} gives no live resources")

    @pytest.fixture
    def unresponsive_resources(self) -> list[Any]:
        return []

    @pytest.fixture
    def unreachable_resources(self) -> list[Any]:
        return []

    def resource_of(self, sample: Sample) -> str:
        """The resource id (partitioning key) a sample belongs to."""
        return sample.resource_id

    def _poll(self, pollster: Pollster, resources: list[Any],
              timeout: float | None = None) -> list[Sample]:
        return poll(pollster, resources, context=make_context(timeout=timeout or self.timeout))

    def test_samples_have_the_declared_meter_type_and_unit(
            self, pollster: Pollster, resources: list[Any]) -> None:
        samples = self._poll(pollster, resources)
        assert samples, f"{self.meter}: no sample for {resources}"
        for sample in samples:
            assert (sample.name, sample.type, sample.unit) == \
                (self.meter, self.sample_type, self.unit), sample

    def test_resource_ids_are_stable(self, pollster: Pollster, resources: list[Any]) -> None:
        first = {s.resource_id for s in self._poll(pollster, resources)}
        again = {s.resource_id for s in self._poll(pollster, list(reversed(resources)))}
        assert first == again

    def test_polls_exactly_the_resources_given(self, pollster: Pollster,
                                               resources: list[Any]) -> None:
        given = {resource_key(r) for r in resources}
        polled = {self.resource_of(s) for s in self._poll(pollster, resources)}
        assert polled <= given, f"samples for resources not given: {polled - given}"
        if self.sample_per_resource:
            assert polled == given, f"no sample for {given - polled}"
        for resource in resources:
            alone = {self.resource_of(s) for s in self._poll(pollster, [resource])}
            assert alone <= {resource_key(resource)}, alone

    def test_no_resources_no_samples(self, pollster: Pollster) -> None:
        assert self._poll(pollster, []) == []

    def test_returns_within_the_timeout(self, pollster: Pollster,
                                        unresponsive_resources: list[Any]) -> None:
        if not unresponsive_resources:
            pytest.skip("no unresponsive_resources fixture")
        started = time.monotonic()
        try:
            self._poll(pollster, unresponsive_resources, self.short_timeout)
        except Exception:  # noqa: BLE001, S110 - raising is allowed, blocking is not
            pass
        assert time.monotonic() - started <= self.short_timeout + GRACE

    def _unreachable_ids(self, results: list[Sample | Unreachable],
                         unreachable: list[Any]) -> set[str]:
        """Check each ``unreachable`` resource gave an Unreachable and no sample."""
        expected = {resource_key(r) for r in unreachable}
        said = {r.resource_id for r in results if isinstance(r, Unreachable)}
        sampled = {self.resource_of(r) for r in results if isinstance(r, Sample)}
        assert expected <= said, f"no Unreachable for {expected - said}"
        assert not expected & sampled, f"a sample and an Unreachable for {expected & sampled}"
        for result in results:
            if isinstance(result, Unreachable) and result.sample is not None:
                sample = result.sample
                assert (sample.name, sample.type, sample.unit) == \
                    (self.meter, self.sample_type, self.unit), sample
                assert self.resource_of(sample) == result.resource_id, sample
        return said

    def test_unreachable_resources_give_unreachable(
            self, pollster: Pollster, unreachable_resources: list[Any]) -> None:
        if not unreachable_resources:
            pytest.skip("no unreachable_resources fixture")
        results = poll_results(pollster, unreachable_resources,
                               context=make_context(timeout=self.timeout))
        self._unreachable_ids(results, unreachable_resources)

    def test_only_the_unreachable_resources_are_unreachable(
            self, pollster: Pollster, resources: list[Any],
            unreachable_resources: list[Any]) -> None:
        if not unreachable_resources:
            pytest.skip("no unreachable_resources fixture")
        results = poll_results(pollster, resources + unreachable_resources,
                               context=make_context(timeout=self.timeout))
        expected = {resource_key(r) for r in unreachable_resources}
        said = self._unreachable_ids(results, unreachable_resources)
        assert said == expected, f"live resources said Unreachable: {said - expected}"


class _LoopbackPort:
    """A TCP socket bound to a free 127.0.0.1 port, held until :meth:`close`."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        self._sock.close()


class SilentServer(_LoopbackPort):
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        super().__init__()
        self._sock.listen(128)  # the kernel completes handshakes; nobody reads


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A :class:`SilentServer` for one test."""
    server = SilentServer()
    yield server
    server.close()


class RefusedPort(_LoopbackPort):
    """A 127.0.0.1 port that refuses connections (connection refused, at once).

    The port is bound but not listening: the kernel answers a connect with a
    reset, and no other process can take the port while this holds it.
    """


@pytest.fixture
def refused_port() -> Iterator[RefusedPort]:
    """A :class:`RefusedPort` for one test."""
    port = RefusedPort()
    yield port
    port.close()


def _unavailable(what: str, exc: ZkpollError) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {what} is unavailable: {exc}", pytrace=False)
    pytest.skip(f"{exc} (or run `bash tests/run_tests.sh`, which installs it)")


def require_zookeeper() -> None:
    """Skip the test when ZooKeeper cannot run here (fail it when ``CI=true``)."""
    try:
        find_installation()
    except ZkpollError as exc:
        _unavailable("ZooKeeper", exc)


def require_server(kind: type[ManagedServer]) -> None:
    """Skip the test when ``kind`` (e.g. ManagedRedis) is not installed (fail under CI)."""
    try:
        kind.find_binary()
    except ZkpollError as exc:
        _unavailable(kind.program, exc)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[ManagedZooKeeper]:
    """One standalone ZooKeeper (tickTime 200 ms, all 4lw commands) for the session."""
    require_zookeeper()
    server = ManagedZooKeeper()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ManagedRedis]:
    """One ``redis-server`` (no persistence) for the session."""
    require_server(ManagedRedis)
    server = ManagedRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()
