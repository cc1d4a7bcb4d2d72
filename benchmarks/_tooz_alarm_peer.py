"""Aodh-style alarm evaluator on tooz: the peer of ``benchmarks.alarm_bench``.

What OpenStack Aodh's evaluator service (``aodh/evaluator/__init__.py``,
``aodh/coordination.py``) does with its partition coordinator, reduced to
the parts that decide who evaluates which alarm and when:

* ``coordinator = tooz.coordination.get_coordinator(backend_url, member_id)``,
  ``coordinator.start(start_heart=True)``, create and join the group;
* at every evaluation cycle, ``extract_my_subset``: ``get_members(group)``
  (re-joining once if this member is not listed), a fresh
  ``tooz.hashring.HashRing(members)``, and only the alarm ids whose node is
  this member are evaluated: the ring is built again at each cycle start,
  whatever happened in between;
* each alarm's state lives in a shared store and is written without
  compare-and-set (Aodh updates its SQL row): here one ZooKeeper znode per
  alarm, ``get`` then ``set`` (or ``create``), no version check;
* a transition is notified at once (Aodh's notifier POSTs the webhook): a
  POST to the alarm's action URL with the header ``Idempotency-Key:
  <alarm id>:<seq>`` (seq = the stored seq + 1), so the receiver can count
  duplicates; Aodh itself sends no key;
* SIGTERM: leave the group (``coordinator.stop()``) and exit.

Deliberate differences, all in the peer's favour or for a fair comparison:
cycles are aligned to wall-clock multiples of ``--interval`` plus
``--offset`` (zkpoll's schedule; Aodh runs a free periodic task per
process), the Prometheus instant query is asked at the cycle start (as
zkpoll does), ``--max-parallel`` queries run at once, state reads and writes
of one cycle are pipelined, and the state rules are zkpoll's
(:func:`zkpoll.alarm.rules.evaluate` without its "already evaluated this
cycle" guard, which Aodh does not have).  Each evaluation is one line of the
evaluation-log format of :mod:`zkpoll.alarm.audit` in ``--evaluation-log``.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import logging
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from tooz import coordination, hashring

from benchmarks._bench_util import cycle_starts, log_to_stderr, stop_on_signals
from zkpoll.alarm.definitions import AlarmDefinition, load_alarm_dir
from zkpoll.alarm.queries import PrometheusQuery
from zkpoll.alarm.rules import (
    AlarmState,
    Datapoint,
    Outcome,
    evaluate,
    notification_body,
)

LOG = logging.getLogger("tooz_alarm_peer")


class Peer:
    """One evaluator: a tooz member, a state store and the cycle loop."""

    def __init__(self, args: argparse.Namespace, alarms: Sequence[AlarmDefinition]) -> None:
        self.args = args
        self.alarms = {a.id: a for a in alarms}
        self.member = args.member_id
        self.group = args.group.encode()
        self.coordinator = coordination.get_coordinator(args.url, self.member.encode())
        self.store = KazooClient(hosts=args.zk_hosts, timeout=float(args.session_timeout))
        self.query = PrometheusQuery(args.prometheus_url, args.query_timeout)
        self.pool = futures.ThreadPoolExecutor(args.max_parallel, thread_name_prefix="query")
        self.log = open(args.evaluation_log, "a", encoding="utf-8")  # noqa: SIM115
        self.stop = threading.Event()

    # --- membership (aodh.coordination.PartitionCoordinator) ------------------------
    def join(self) -> None:
        try:
            self.coordinator.create_group(self.group).get()
        except coordination.GroupAlreadyExist:
            pass
        try:
            self.coordinator.join_group(self.group).get()
        except coordination.MemberAlreadyExist:
            pass

    def my_subset(self, ids: Sequence[str]) -> list[str]:
        """``extract_my_subset``: a ring of the members listed now, our ids on it."""
        me = self.member.encode()
        members = self.coordinator.get_members(self.group).get()
        if me not in members:
            LOG.warning("not a member of the group: joining again")
            self.join()
            members = self.coordinator.get_members(self.group).get()
            if me not in members:
                raise RuntimeError(f"{self.member} is still not in {members}")
        ring = hashring.HashRing(members)
        return [i for i in ids if me in ring.get_nodes(i.encode())]

    # --- state store: a znode per alarm, no compare-and-set ---------------------------
    def _path(self, alarm_id: str) -> str:
        return f"{self.args.state_path}/{alarm_id}"

    def read_states(self, ids: Sequence[str]) -> dict[str, AlarmState | None]:
        pending = [(i, self.store.get_async(self._path(i))) for i in ids]
        out: dict[str, AlarmState | None] = {}
        for alarm_id, result in pending:
            try:
                data, _ = result.get(timeout=self.args.session_timeout)
            except NoNodeError:
                out[alarm_id] = None
                continue
            out[alarm_id] = AlarmState.from_dict(json.loads(data))
        return out

    def write_states(self, states: Sequence[tuple[str, AlarmState, bool]]) -> None:
        """Write each ``(alarm id, state, existed)`` without a version check."""
        pending = []
        for alarm_id, state, existed in states:
            data = json.dumps(state.to_dict(), separators=(",", ":")).encode()
            path = self._path(alarm_id)
            call = self.store.set_async if existed else self.store.create_async
            pending.append((path, data, call(path, data)))
        for path, data, result in pending:
            try:
                result.get(timeout=self.args.session_timeout)
            except NodeExistsError:  # another evaluator created it meanwhile: overwrite
                self.store.set(path, data)

    # --- one cycle ----------------------------------------------------------------------
    def run_cycle(self, index: int, start: float) -> None:
        mine = self.my_subset(sorted(self.alarms))
        stored = self.read_states(mine)
        alarms = [self.alarms[i] for i in mine]
        points = list(self.pool.map(lambda a: self._datapoint(a, start), alarms))
        now = time.time()
        decided: list[tuple[AlarmDefinition, Outcome, bool]] = []
        for alarm, point in zip(alarms, points):
            known = stored[alarm.id]
            # Aodh has no notion of "this cycle was evaluated already": no guard.
            state = dataclasses.replace(known or AlarmState(), cycle=-1)
            outcome = evaluate(alarm, state, point, index, now, self.member)
            if outcome is not None:
                decided.append((alarm, outcome, known is not None))
        # Aodh notifies right after updating the alarm: nothing is left pending.
        self.write_states([(a.id, dataclasses.replace(o.state, notified_seq=o.state.seq),
                            existed) for a, o, existed in decided])
        written = time.time()
        self.log.write("".join(json.dumps(
            {"t": written, "alarm": a.id, "cycle": index, "start": start,
             "member": self.member, "kind": "cycle", "result": "written",
             "state": o.state.state, "seq": o.state.seq, "transition": o.transition is not None,
             "value": o.state.last_value, "error": p.error},
            separators=(",", ":")) + "\n" for (a, o, _), p in zip(decided, points)))
        self.log.flush()
        sent = self.notify([(a, o) for a, o, _ in decided if o.actions and o.key])
        LOG.info("cycle %d: evaluated %d/%d alarms in %.3fs, %d notification(s)", index,
                 len(decided), len(self.alarms), written - start, sent)

    def _datapoint(self, alarm: AlarmDefinition, start: float) -> Datapoint:
        try:
            return self.query(alarm, start)
        except Exception as exc:  # noqa: BLE001 - counts as no data, as in Aodh
            return Datapoint(None, f"query failed: {exc}")

    def notify(self, outcomes: Sequence[tuple[AlarmDefinition, Outcome]]) -> int:
        sent = 0
        for alarm, outcome in outcomes:
            body = json.dumps(notification_body(alarm, outcome)).encode()
            for url in outcome.actions:
                sent += post(url, body, outcome.key or "")
        return sent

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        self.store.start(timeout=30)
        self.store.ensure_path(self.args.state_path)
        self.coordinator.start(start_heart=True)
        try:
            self.join()
            LOG.info("member %s joined group %s", self.member, self.args.group)
            for index, start in cycle_starts(self.args.interval, self.args.offset, self.stop):
                try:
                    self.run_cycle(index, start)
                except Exception:  # Aodh logs and waits for the next cycle
                    LOG.exception("cycle %d failed", index)
            LOG.info("SIGTERM: leaving group %s", self.args.group)
        finally:
            self.coordinator.stop()
            self.store.stop()
            self.store.close()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.log.close()


def post(url: str, body: bytes, key: str) -> int:
    """POST ``body`` to ``url`` once; 1 if it was answered 2xx (Aodh does not retry)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=10)
    try:
        conn.request("POST", parts.path or "/", body,
                     {"Content-Type": "application/json", "Idempotency-Key": key})
        response = conn.getresponse()
        response.read()
        return 1 if 200 <= response.status < 300 else 0
    except (OSError, http.client.HTTPException) as exc:
        LOG.warning("notification %s to %s failed: %s", key, url, exc)
        return 0
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._tooz_alarm_peer",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="tooz backend URL")
    parser.add_argument("--zk-hosts", required=True, help="ZooKeeper of the state store")
    parser.add_argument("--state-path", required=True, help="znode holding the alarm states")
    parser.add_argument("--member-id", required=True)
    parser.add_argument("--group", default="alarm_evaluator")
    parser.add_argument("--definitions", required=True, type=Path,
                        help="directory of alarm YAML files (zkpoll's format)")
    parser.add_argument("--prometheus-url", required=True)
    parser.add_argument("--query-timeout", type=float, default=10.0)
    parser.add_argument("--max-parallel", type=int, default=8)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--offset", type=float, default=0.0,
                        help="cycle c starts at c * interval + offset (wall clock)")
    parser.add_argument("--session-timeout", type=float, default=10.0)
    parser.add_argument("--evaluation-log", required=True, type=Path)
    args = parser.parse_args()
    log_to_stderr()
    alarms = load_alarm_dir(str(args.definitions)).alarms
    peer = Peer(args, [a for a in alarms if a.enabled])
    stop_on_signals(peer.stop)
    peer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
