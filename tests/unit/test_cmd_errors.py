"""Bad input to zkpoll-polling: one readable line, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_agent(tmp_path: Path, conf: str, polling: str | None = None,
              *args: str) -> subprocess.CompletedProcess[str]:
    conf_file = tmp_path / "zkpoll.conf"
    if polling is not None:
        (tmp_path / "polling.yaml").write_text(polling)
        conf = f"[polling]\ncfg_file = {tmp_path / 'polling.yaml'}\n" + conf
    conf_file.write_text(conf)
    return subprocess.run([sys.executable, "-m", "zkpoll.cmd.polling", "--config-file",
                           str(conf_file), *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)


GOOD_YAML = "sources:\n  - name: s\n    interval: 5\n    meters: ['host.*']\n"


@pytest.mark.parametrize("conf, polling, expected", [
    ("", "sources:\n  - name: s\n    interval: 0\n    meters: [a]\n",
     "polling.yaml:3 (source 's'): invalid 'interval'"),
    ("", "sources: [\n", "polling.yaml"),
    ("[polling]\nmax_parallel_pollsters = lots\n", GOOD_YAML,
     "[polling] max_parallel_pollsters"),
    ("[coordination]\nbackend_url = zookeper://h:2181\n", GOOD_YAML,
     "[coordination] backend_url: unknown scheme 'zookeper'"),
    ("[publisher]\ndefault_publishers = ftp://x\n", GOOD_YAML, "ftp://x"),
    ("", "sources:\n  - name: s\n    interval: 5\n    meters: [nosuch.meter]\n",
     "no source polls any loaded meter"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, conf: str, polling: str,
                                     expected: str) -> None:
    result = run_agent(tmp_path, conf, polling, "--polling-namespaces", "compute")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "zkpoll-polling: error:" in line]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]


def test_missing_polling_file_named_explicitly(tmp_path: Path) -> None:
    result = run_agent(tmp_path, "[polling]\ncfg_file = /nonexistent/p.yaml\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "/nonexistent/p.yaml" in result.stderr


def test_unknown_cli_option(tmp_path: Path) -> None:
    result = run_agent(tmp_path, "", None, "--no-such-flag")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["zkpoll.cmd.polling", "zkpoll.cmd.alarm"])
def test_bad_cli_option_value_in_a_file_with_a_line_break_is_exit_2(tmp_path: Path,
                                                                     module: str) -> None:
    """Found by the config fuzzer: a form feed in a boolean value made argparse's
    message span two lines, and the agent exited 1 with it instead of one line and 2."""
    conf_file = tmp_path / "zkpoll.conf"
    conf_file.write_text("[DEFAULT]\ndebug = 0\f0\n")
    result = subprocess.run([sys.executable, "-m", module, "--config-file", str(conf_file)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.split("\n") if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "[DEFAULT] debug: Invalid Boolean value" in lines[0]
