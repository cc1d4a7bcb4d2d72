"""A coordination member in its own OS process, driven by functional tests.

Joins one group and prints one JSON line per event on stdout:
``{"event": "ready"|"membership"|"state", ...}``.  Runs until killed or
until stdin closes (then it leaves gracefully).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time

from oslo_config import cfg

from zkpoll.coordination import Membership, SessionState, get_coordinator, register_opts

_lock = threading.Lock()


def emit(**fields: object) -> None:
    with _lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", default="central")
    parser.add_argument("--heartbeat", type=float, default=0.2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(message)s")
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", args.url, "coordination")
    conf.set_override("heartbeat_interval", args.heartbeat, "coordination")
    coordinator = get_coordinator(conf)

    def on_members(membership: Membership) -> None:
        emit(event="membership", me=coordinator.member_id, members=list(membership.member_ids),
             t=time.time())

    def on_state(state: SessionState) -> None:
        client_id = getattr(coordinator, "client_id", None)
        emit(event="state", me=coordinator.member_id, state=state.value,
             session=client_id[0] if client_id else None, t=time.time())

    coordinator.add_state_listener(on_state)
    coordinator.start(timeout=20)
    coordinator.watch(args.group, on_members)
    coordinator.join(args.group, {"role": "test"}, wait=20)
    session, password = coordinator.client_id
    emit(event="ready", me=coordinator.member_id, session=session, password=password.hex(),
         t=time.time())
    sys.stdin.read()  # until the test closes our stdin
    coordinator.stop()
    emit(event="stopped", me=coordinator.member_id, t=time.time())


if __name__ == "__main__":
    main()
