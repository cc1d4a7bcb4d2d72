"""The committed zkpoll.conf.sample is what oslo-config-generator writes now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sample_config_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "zkpoll.conf.sample"
    subprocess.run([sys.executable, "-m", "oslo_config.generator", "--namespace", "zkpoll",
                    "--wrap-width", "79", "--output-file", str(out)], check=True, cwd=ROOT)
    committed = (ROOT / "etc/zkpoll/zkpoll.conf.sample").read_text()
    assert out.read_text() == committed, (
        "etc/zkpoll/zkpoll.conf.sample is stale: run "
        "oslo-config-generator --config-file etc/zkpoll/zkpoll-config-generator.conf")


def test_every_option_has_help() -> None:
    from zkpoll.opts import list_opts

    for group, opts in list_opts():
        for opt in opts:
            assert opt.help and opt.help.strip().endswith("."), f"[{group}] {opt.name}"
