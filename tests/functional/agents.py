"""Real ``zkpoll-polling`` agents as OS processes, and what they polled.

The agents run in the harness of :mod:`tests.functional.fleet`: this module
says how to start one (:func:`start_agent`), how to read one line of its
file publisher's output (:func:`parse_poll`), and what a fleet of them audits
(:func:`polling_service`).

The file publisher writes one JSON line per sample; the fields that matter
here are ``resource_id``, ``cycle_start`` (the cycle the poll belongs to),
``member_id`` (who polled it) and ``timestamp`` (wall time of the poll: the
synthetic pollster stamps it).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.functional.fleet import Service, ServiceProcess


def agent_command() -> list[str]:
    """The installed console script (or ``python -m`` when not on PATH)."""
    script = Path(sys.executable).with_name("zkpoll-polling")
    if script.exists():
        return [str(script)]
    found = shutil.which("zkpoll-polling")
    return [found] if found else [sys.executable, "-m", "zkpoll.cmd.polling"]


def write_static_source(path: Path, resources: int, interval: int = 2,
                        meters: tuple[str, ...] = ("synthetic.constant",)) -> list[str]:
    """A polling YAML with one static source of ``resources`` ids; returns the ids."""
    ids = [f"res-{i:05d}" for i in range(resources)]
    lines = ["sources:", "  - name: static", f"    interval: {interval}", "    meters:"]
    lines += [f"      - {m}" for m in meters]
    lines += ["    resources:"] + [f"      - {r}" for r in ids]
    path.write_text("\n".join(lines) + "\n")
    return ids


def start_agent(workdir: Path, name: str, backend_url: str, polling_file: Path,
                namespaces: str = "synthetic", extra: str = "", settle_time: float = 1.0,
                wrap: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> ServiceProcess:
    """One ``zkpoll-polling`` process with its own config; its output is its sample file.

    ``wrap`` prefixes the command (e.g. ``ip netns exec <namespace>``); ``env`` is
    its environment (default: this process's).
    """
    samples = workdir / f"{name}.jsonl"
    conf = ("[coordination]\n"
            f"backend_url = {backend_url}\n"
            "heartbeat_interval = 0.2\n"
            f"settle_time = {settle_time:g}\n"
            "[polling]\n"
            f"cfg_file = {polling_file}\n"
            "[publisher]\n"
            f"default_publishers = file://{samples}\n" + extra)
    return ServiceProcess(workdir, name, [*wrap, *agent_command()], conf, samples,
                          args=["--polling-namespaces", namespaces], env=env)


def iso_to_epoch(text: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp as written by ``Sample.as_dict``."""
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Poll:
    """One poll of one resource, as recorded by an agent's file publisher."""

    resource: str
    cycle_at: float     #: ``cycle_start`` in epoch seconds
    member: str         #: ``member_id``: the membership session that polled it
    at: float           #: ``timestamp``: wall-clock time of the poll
    agent: str          #: name of the process whose file holds it

    @property
    def key(self) -> str:
        return self.resource

    @property
    def done(self) -> bool:
        return True  # a poll is the resource's work for its cycle


def parse_poll(sample: dict[str, Any], agent: str) -> Poll | None:
    """The poll a sample line records; None for a sample of no partitioned cycle."""
    try:
        return Poll(sample["resource_id"], iso_to_epoch(sample["cycle_start"]),
                    sample["member_id"], iso_to_epoch(sample["timestamp"]), agent)
    except (KeyError, TypeError, ValueError):
        return None


def polling_service(ids: list[str], polling_file: Path, interval: float) -> Service[Poll]:
    """Agents polling the static source ``polling_file`` (of ``ids``), as a fleet runs them."""
    def spawn(workdir: Path, name: str, url: str) -> ServiceProcess:
        return start_agent(workdir, name, url, polling_file,
                           extra=f"[coordination]\nmember_name = {name}\n")
    return Service(noun="agent", group="synthetic", interval=interval, ids=ids, spawn=spawn,
                   parse=parse_poll, stop_timeout=20.0, steady_timeout=40.0, cycle_slack=15.0)
