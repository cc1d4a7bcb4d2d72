"""Run real ``zkpoll-polling`` agents as OS processes and read what they polled."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any


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


class AgentProcess:
    """One ``zkpoll-polling`` process with its own config and sample file."""

    def __init__(self, workdir: Path, name: str, backend_url: str, polling_file: Path,
                 namespaces: str = "synthetic", extra: str = "") -> None:
        self.name = name
        self.samples_path = workdir / f"{name}.jsonl"
        self.log_path = workdir / f"{name}.log"
        conf = workdir / f"{name}.conf"
        conf.write_text(
            "[coordination]\n"
            f"backend_url = {backend_url}\n"
            "heartbeat_interval = 0.2\n"
            "settle_time = 1.0\n"
            "[polling]\n"
            f"cfg_file = {polling_file}\n"
            "[publisher]\n"
            f"default_publishers = file://{self.samples_path}\n" + extra)
        self.proc = subprocess.Popen(
            [*agent_command(), "--config-file", str(conf), "--polling-namespaces", namespaces],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"), cwd=workdir)  # noqa: SIM115

    def samples(self) -> list[dict[str, Any]]:
        if not self.samples_path.exists():
            return []
        out = []
        for line in self.samples_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def polls_by_cycle(agents: list[AgentProcess]) -> dict[str, Counter[str]]:
    """cycle start -> Counter of resource ids polled (over every agent)."""
    cycles: dict[str, Counter[str]] = defaultdict(Counter)
    for agent in agents:
        for sample in agent.samples():
            cycles[sample["cycle_start"]][sample["resource_id"]] += 1
    return cycles


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def cycle_report(agents: list[AgentProcess], ids: list[str],
                 cycles: list[str] | None = None) -> dict[str, tuple[set[str], set[str]]]:
    """cycle start -> (gaps, duplicates) over every agent's samples.

    ``cycles`` limits the report (default: every cycle seen).
    """
    polled = polls_by_cycle(agents)
    expected = set(ids)
    report = {}
    for cycle in cycles if cycles is not None else sorted(polled):
        counts = polled.get(cycle, Counter())
        report[cycle] = (expected - set(counts), {r for r, n in counts.items() if n > 1})
    return report
