"""A member whose wall clock is off measures its offset against ZooKeeper.

The member runs in its own process under Debian's ``faketime`` (libfaketime):
only its wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC=1``); ZooKeeper and
this test keep the real one, so the true offset is the faked one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

HERE = Path(__file__).resolve().parent


def faketime() -> str:
    path = shutil.which("faketime")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("faketime is not installed (apt-get install -y faketime)")
        pytest.skip("faketime is not installed (apt-get install -y faketime)")
    return path


@pytest.mark.parametrize("shift", [7.0, -7.0])
def test_an_offset_wall_clock_is_measured(zookeeper_server, zk_chroot: str,
                                          tmp_path: Path, shift: float) -> None:
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=4"
    env = dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1")
    log = tmp_path / "clock_proc.log"
    started = time.time()
    with log.open("wb") as stderr:
        done = subprocess.run([faketime(), "-f", f"{shift:+g}s", sys.executable,
                               str(HERE / "clock_proc.py"), "--url", url],
                              env=env, stdout=subprocess.PIPE, stderr=stderr, timeout=120,
                              check=False)
    assert done.returncode == 0, log.read_text(errors="replace")[-3000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    # the child's clock really was shifted: it read it while it ran
    assert started + shift <= result["time"] <= time.time() + shift, result
    assert result["confirmed"], result
    for name in ("measured", "after_claims"):
        estimate = result[name]
        assert abs(estimate["offset"] - shift) < 0.5, (name, estimate)
        # the true offset is within the error bound (1 ms slack for float arithmetic)
        assert abs(estimate["offset"] - shift) <= estimate["error"] + 0.001, (name, estimate)
    assert result["after_claims"]["measured_at"] > result["measured"]["measured_at"]
    print(f"faketime {shift:+g}s: {result}")  # shown with -s: the offsets measured
