"""Fixtures of zkpoll's plugin test kit: a real ZooKeeper and a silent server."""

from __future__ import annotations

import pytest

from zkpoll.testing.plugins import silent_server, zookeeper_server

__all__ = ["silent_server", "zookeeper_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "functional: uses real servers")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
