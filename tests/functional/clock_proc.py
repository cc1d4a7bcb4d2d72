"""Measure the clock offset against a coordination backend, in its own process.

Starts a coordinator on ``--url``, joins a group, measures the clock
(``measure_clock``) and writes a claims record (its answer is a sample too),
then prints one JSON line: the estimate after each, and ``time.time()``.
Run under ``faketime`` to give this process a wall clock of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from oslo_config import cfg

from zkpoll.coordination import get_coordinator, register_opts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", args.url, "coordination")
    coordinator = get_coordinator(conf)
    coordinator.start(timeout=20)
    try:
        measured = coordinator.measure_clock(timeout=10)
        coordinator.join("clock", wait=20)
        gen = coordinator.put_claims("clock", {"probe": 1})
        confirmed = coordinator.wait_claims("clock", gen, 20)
        print(json.dumps({"measured": dataclasses.asdict(measured), "confirmed": confirmed,
                          "after_claims": dataclasses.asdict(coordinator.clock()),
                          "time": time.time()}), flush=True)
    finally:
        coordinator.stop()


if __name__ == "__main__":
    main()
