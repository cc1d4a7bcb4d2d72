"""The single-instance lock of standalone agents, and the reload's summary line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zkpoll.exceptions import ConfigError
from zkpoll.polling.reload import ReloadResult
from zkpoll.service import instance_lock


def test_the_lock_file_is_keyed_by_resolved_paths_and_namespace(tmp_path: Path) -> None:
    conf = tmp_path / "a.conf"
    conf.write_text("")
    link = tmp_path / "link.conf"
    link.symlink_to(conf)
    base = instance_lock.lock_path("/run/x", [str(conf)], "p.yaml", "central")
    assert base == instance_lock.lock_path("/run/x", [str(link)], "p.yaml", "central")
    assert base != instance_lock.lock_path("/run/x", [str(conf)], "p.yaml", "compute")
    assert base != instance_lock.lock_path("/run/x", [str(conf)], "q.yaml", "central")
    assert base.startswith("/run/x/zkpoll-polling-") and base.endswith(".lock")


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    first = instance_lock.acquire(str(tmp_path), ["a.conf"], "p.yaml", ["central", "compute"])
    try:
        with pytest.raises(instance_lock.AlreadyRunning) as caught:
            instance_lock.acquire(str(tmp_path), ["a.conf"], "p.yaml", ["compute"])
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message and "namespace compute" in message
        assert instance_lock.lock_path(str(tmp_path), ["a.conf"], "p.yaml", "compute") \
            in message
        other = instance_lock.acquire(str(tmp_path), ["a.conf"], "p.yaml", ["synthetic"])
        other.release()
    finally:
        first.release()
    again = instance_lock.acquire(str(tmp_path), ["a.conf"], "p.yaml", ["compute"])
    again.release()


def test_an_unusable_lock_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[polling\] lock_dir: cannot create"):
        instance_lock.acquire(str(tmp_path / "missing"), [], "p.yaml", ["central"])


def test_the_default_lock_dir_falls_back(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setattr(instance_lock, "DEFAULT_LOCK_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert instance_lock.default_lock_dir() == str(tmp_path)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert os.path.isdir(instance_lock.default_lock_dir())


def test_the_reload_summary_says_what_changed() -> None:
    assert ReloadResult().summary() == "nothing changed"
    result = ReloadResult(added=["b"], removed=["a"], dynamic_changed=["dyn.x"])
    assert result.summary() == ("sources added: b; sources removed: a; "
                                "dynamic pollsters changed: dyn.x")
