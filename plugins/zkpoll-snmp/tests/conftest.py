"""Fixtures: a real snmpd answering as 8 loopback devices (SNMPv2c and SNMPv3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zkpoll.testing.plugins import require_server
from zkpoll.testing.snmpd import ManagedSnmpd, free_udp_port

__all__ = ["silent_device", "snmpd"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "functional: uses real servers")


@pytest.fixture(scope="session")
def snmpd() -> Iterator[ManagedSnmpd]:
    """One snmpd for the session: 8 devices 127.77.0.1..8 on one UDP port."""
    require_server(ManagedSnmpd)
    server = ManagedSnmpd(8)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def silent_device() -> str:
    """An ``snmp://`` device where nothing listens (a UDP port free on 127.0.0.1)."""
    return f"snmp://127.0.0.1:{free_udp_port(['127.0.0.1'])}"
