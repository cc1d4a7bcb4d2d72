"""Worker process of ``benchmarks.scale_bench``: hosts many group members, one session each.

Not a user tool.  The bench starts it as ``python -m benchmarks._scale_worker
zkpoll|tooz [LOG_LEVEL [SWITCH_INTERVAL]]`` (stderr, ERROR by default; the
interpreter's thread switch interval, Python's default if omitted) and talks
to it in JSON lines: commands on stdin (``{"id": 1, "cmd": "setup", ...}``),
replies on stdout (``{"id": 1, "type": "reply", ...}``) plus ``progress``
lines while it waits for views to converge.  ``stop`` stops every member
and exits; EOF on stdin exits at once (the sessions then expire).

Every zkpoll-specific call lives in :class:`ZkpollMember` and every tooz call
in :class:`ToozMember`; both offer the same small interface (start, join,
view, claim, claims_seen, leave, stop), so the ownership core can change
behind one class.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks._bench_util import log_to_stderr, sleep_until

LOG = logging.getLogger("scale_worker")
SOURCE = "src"
#: Threads that start, join and stop members concurrently (per worker).
POOL_SIZE = 32
#: How closely (s) every member starts a storm at the bench's instant.
START_STEP = 0.05


# --- the zkpoll adapter: the only place that calls zkpoll ---------------------
class ZkpollMember:
    """One zkpoll member: its own coordinator (own kazoo session) and Partition."""

    def __init__(self, member_id: str, spec: dict[str, Any]) -> None:
        from oslo_config import cfg

        from zkpoll.coordination import get_coordinator, register_opts
        from zkpoll.ownership import Partition

        conf = cfg.ConfigOpts()
        register_opts(conf)
        conf([], project="zkpoll-bench", default_config_files=[])
        url = f"zookeeper://{spec['hosts']}{spec['root']}?timeout={spec['session_timeout']:g}"
        conf.set_override("backend_url", url, "coordination")
        conf.set_override("heartbeat_interval", spec["heartbeat"], "coordination")
        self.member_id = member_id
        self.coordinator = get_coordinator(conf, member_id=member_id)
        self.partition = Partition(self.coordinator, spec["group"], spec["settle_time"])

    def start(self, timeout: float) -> None:
        self.coordinator.start(timeout=timeout)

    def join(self) -> None:
        self.partition.join({"namespace": "central", "weight": 1, "meters": {SOURCE: ["m"]}})

    def view_token(self) -> object:
        """Changes (by identity) whenever :meth:`view` may have changed."""
        return self.partition.membership

    def view(self) -> frozenset[str]:
        """Member ids in this member's current view of the group."""
        return frozenset(self.partition.membership.member_ids)

    def claim(self, index: int, timeout: float) -> bool:
        """Write-ahead claim of cycle ``index``; True if the backend confirmed it.

        The claims record the agent writes (``Partition.plan_cycle`` queues it
        and waits for this confirmation), written through the coordinator
        directly: ``plan_cycle`` would also build this member's Maglev table
        over N members (CPU that each agent spends on its own host, measured
        by ring_bench.py, not N-fold on this bench's two cores).
        """
        coordinator = self.partition.coordinator
        group = self.partition.group
        gen = coordinator.put_claims(group, {"cycles": {SOURCE: index}, "protocol": 2})
        return coordinator.wait_claims(group, gen, timeout)

    def claims_seen(self, index: int) -> frozenset[str] | None:
        """None: claims are kept where nobody watches them (peers read a
        member's claims once, after it vanished)."""
        return None

    def leave(self) -> list[str]:
        """Graceful leave as the agent does it; returns the errors it logs and goes on."""
        from zkpoll.exceptions import CoordinatorUnreachable

        errors = []
        for step in (self.partition.announce_leave, self.partition.leave):
            try:
                step(wait=5.0)
            except CoordinatorUnreachable as exc:
                errors.append(f"{step.__name__}: {exc}")
        return errors

    def stop(self) -> None:
        self.coordinator.stop()


# --- the peer: tooz's ZooKeeper driver, as Ceilometer uses it -----------------
class ToozMember:
    """One tooz member: ``get_coordinator('zookeeper://...')``, heart started,
    ``join_group`` (creating the group if needed), ``watch_join_group`` /
    ``watch_leave_group``; the view changes only in ``run_watchers()``.

    The watchers are armed before the first ``get_members``: Ceilometer's
    ``Partitioner`` does it the other way round and can miss a member that
    joins in between for good (see ``failover_bench.py``); this order is
    race-free, so the bench measures the transport, not that bug.
    """

    def __init__(self, member_id: str, spec: dict[str, Any]) -> None:
        from tooz import coordination

        self._coordination = coordination
        url = f"zookeeper://{spec['hosts']}?timeout={int(spec['session_timeout'])}"
        self.member_id = member_id
        self.group = spec["group"].encode()
        self.coordinator = coordination.get_coordinator(url, member_id.encode())
        self._lock = threading.Lock()
        self._view: frozenset[str] = frozenset()
        self._joined = False

    def start(self, timeout: float) -> None:
        self.coordinator.start(start_heart=True)

    def join(self) -> None:
        c = self._coordination
        try:
            self.coordinator.join_group(self.group).get()
        except c.GroupNotCreated:
            try:
                self.coordinator.create_group(self.group).get()
            except c.GroupAlreadyExist:
                pass
            self.coordinator.join_group(self.group).get()
        self.coordinator.watch_join_group(self.group, self._on_join)
        self.coordinator.watch_leave_group(self.group, self._on_leave)
        members = self.coordinator.get_members(self.group).get()
        with self._lock:
            self._view |= {m.decode() for m in members}
            self._joined = True

    def _on_join(self, event: Any) -> None:
        with self._lock:
            self._view |= {event.member_id.decode()}

    def _on_leave(self, event: Any) -> None:
        with self._lock:
            self._view -= {event.member_id.decode()}

    def run_watchers(self) -> None:
        if self._joined:
            self.coordinator.run_watchers()

    def view_token(self) -> object:
        return self._view  # a new frozenset on every change

    def view(self) -> frozenset[str]:
        return self._view

    def claim(self, index: int, timeout: float) -> bool:
        raise NotImplementedError("tooz has no cycle claims")

    def claims_seen(self, index: int) -> frozenset[str] | None:
        return None

    def leave(self) -> list[str]:
        self.coordinator.leave_group(self.group).get()
        self._joined = False
        return []

    def stop(self) -> None:
        self.coordinator.stop()


IMPLS: dict[str, Callable[[str, dict[str, Any]], Any]] = {
    "zkpoll": ZkpollMember, "tooz": ToozMember}


# --- the worker ------------------------------------------------------------
class Worker:
    def __init__(self, impl: str) -> None:
        self.impl = impl
        self.members: dict[str, Any] = {}
        self.pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="bench-pool")
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        self._leave_result: dict[str, Any] = {}

    def send(self, **fields: Any) -> None:
        with self._out_lock:
            sys.stdout.write(json.dumps(fields) + "\n")
            sys.stdout.flush()

    def each(self, action: Callable[[Any], Any], members: Iterable[Any]) -> list[str]:
        """Run ``action(member)`` for all ``members`` in the pool; errors as text."""
        futures = [(m, self.pool.submit(action, m)) for m in members]
        errors = []
        for member, future in futures:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - reported to the bench
                errors.append(f"{member.member_id}: {type(exc).__name__}: {exc}")
        return errors

    # commands
    def setup(self, ids: list[str], spec: dict[str, Any]) -> dict[str, Any]:
        factory = IMPLS[self.impl]
        for member_id in ids:
            self.members[member_id] = factory(member_id, spec)
        errors = self.each(lambda m: m.start(spec["connect_timeout"]), self.members.values())
        if self.impl == "tooz":
            threading.Thread(target=self._run_watchers_loop, args=(spec["watch_interval"],),
                             name="tooz-watchers", daemon=True).start()
        return {"connected": len(ids) - len(errors), "errors": errors[:5]}

    def _run_watchers_loop(self, interval: float) -> None:
        """tooz views change only in ``run_watchers()``: call it every ``interval`` s."""
        with ThreadPoolExecutor(8, thread_name_prefix="tooz-run") as pool:
            while not self._stop.wait(interval):
                list(pool.map(self._safe_run_watchers, list(self.members.values())))

    @staticmethod
    def _safe_run_watchers(member: Any) -> None:
        try:
            member.run_watchers()
        except Exception:  # a stopped member: its view just stays
            LOG.debug("run_watchers failed", exc_info=True)

    def join(self, at: float) -> dict[str, Any]:
        sleep_until(at, step=START_STEP)
        started = time.time()
        errors = self.each(lambda m: m.join(), self.members.values())
        return {"started": started, "done": time.time(), "errors": errors[:5]}

    def claim(self, at: float, index: int, timeout: float, grace: float) -> dict[str, Any]:
        """Every member calls ``claim`` at wall time ``at``, each in its own thread.

        Calls still running ``timeout + grace`` s after ``at`` are counted as
        ``not_returned`` with the time waited so far as their latency.
        """
        go = threading.Event()
        results: dict[str, tuple[bool | None, float]] = {}

        def one(member: Any) -> None:
            go.wait()
            t0 = time.monotonic()
            try:
                ok: bool | None = bool(member.claim(index, timeout))
            except Exception:  # counted as unconfirmed
                LOG.exception("claim failed")
                ok = None
            results[member.member_id] = (ok, time.monotonic() - t0)

        threads = [threading.Thread(target=one, args=(m,), daemon=True)
                   for m in self.members.values()]
        for t in threads:
            t.start()
        sleep_until(at, step=START_STEP)
        go.set()
        started = time.monotonic()
        deadline = started + timeout + grace
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        done = dict(results)
        waited = time.monotonic() - started
        not_returned = len(threads) - len(done)
        return {"latencies": [lat for _, lat in done.values()] + [waited] * not_returned,
                "unconfirmed": sum(1 for ok, _ in done.values() if not ok) + not_returned,
                "not_returned": not_returned}

    def run_watchers(self, at: float) -> dict[str, Any]:
        """Every member runs its watchers once at wall time ``at`` (tooz's cycle)."""
        sleep_until(at, step=START_STEP)
        errors = self.each(lambda m: m.run_watchers(), self.members.values())
        return {"done": time.time(), "errors": errors[:5]}

    def wait(self, kind: str, ids: list[str], skip: list[str], timeout: float,
             index: int | None = None) -> dict[str, Any]:
        """Wait until every local member (but ``skip``) satisfies ``kind``:

        * ``has``: its view holds every one of ``ids``;
        * ``lacks``: its view holds none of ``ids``;
        * ``claims``: its view holds the claim of cycle ``index`` of every one of ``ids``.

        Returns the wall time at which the last member first satisfied it
        (None on timeout) and how many were still pending.
        """
        want = frozenset(ids)
        pending = {mid: m for mid, m in self.members.items() if mid not in set(skip)}
        tokens: dict[str, object] = {}
        first_ok: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        next_progress = time.monotonic() + 2.0
        while True:
            now = time.time()
            for mid, member in list(pending.items()):
                token = member.view_token()
                if mid in tokens and tokens[mid] is token:
                    continue
                tokens[mid] = token
                if kind == "has":
                    ok = want <= member.view()
                elif kind == "lacks":
                    ok = not (want & member.view())
                else:
                    seen = member.claims_seen(index)
                    if seen is None:
                        return {"converged_at": None, "pending": len(pending),
                                "not_applicable": True}
                    ok = want <= seen
                if ok:
                    first_ok[mid] = now
                    del pending[mid]
            if not pending:
                return {"converged_at": max(first_ok.values(), default=now), "pending": 0}
            if time.monotonic() >= deadline:
                return {"converged_at": None, "pending": len(pending)}
            if time.monotonic() >= next_progress:
                self.send(type="progress", satisfied=len(first_ok),
                          of=len(first_ok) + len(pending))
                next_progress = time.monotonic() + 2.0
            time.sleep(0.02)

    def leave(self, member_id: str) -> dict[str, Any]:
        """Start a graceful leave of ``member_id`` in the background; returns at once."""
        member = self.members[member_id]
        started = time.time()

        def run() -> None:
            try:
                errors = member.leave()
                self._leave_result[member_id] = {"done": time.time(), "leave_errors": errors}
            except Exception as exc:  # noqa: BLE001 - reported to the bench
                self._leave_result[member_id] = {
                    "leave_errors": [f"{type(exc).__name__}: {exc}"]}

        threading.Thread(target=run, name="bench-leave", daemon=True).start()
        return {"started": started}

    def leave_result(self, member_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while member_id not in self._leave_result and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._leave_result.get(member_id, {"leave_errors": ["still leaving"]})

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        errors = self.each(lambda m: m.stop(), self.members.values())
        return {"errors": errors[:5]}


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench handles Ctrl-C and kills us
    impl = sys.argv[1] if len(sys.argv) > 1 else ""
    level = sys.argv[2] if len(sys.argv) > 2 else "ERROR"
    switch = sys.argv[3] if len(sys.argv) > 3 else ""
    if impl not in IMPLS or level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        print("usage: python -m benchmarks._scale_worker zkpoll|tooz "
              "[LOG_LEVEL [SWITCH_INTERVAL]]", file=sys.stderr)
        return 2
    if switch:  # see scale_bench --switch-interval
        sys.setswitchinterval(float(switch))
    log_to_stderr(level, tag=f"worker-{os.getpid()} ")
    worker = Worker(impl)
    worker.send(type="ready", pid=os.getpid())
    for line in sys.stdin:
        request = json.loads(line)
        rid, cmd = request.pop("id"), request.pop("cmd")
        try:
            reply = getattr(worker, cmd)(**request)
        except Exception as exc:  # the bench reports it
            LOG.exception("command %s failed", cmd)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        worker.send(type="reply", id=rid, **reply)
        if cmd == "stop":
            break
    # EOF or stop: never linger (members' threads are daemons).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
