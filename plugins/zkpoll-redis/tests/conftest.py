"""Fixtures: real redis-server processes (a master and a replica), a silent server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from zkpoll.testing import ManagedRedis
from zkpoll.testing.plugins import redis_server, require_server, silent_server

__all__ = ["redis_replica", "redis_server", "silent_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "functional: uses real servers")


@pytest.fixture(scope="session")
def redis_replica(redis_server: ManagedRedis) -> Iterator[ManagedRedis]:
    """A second redis-server replicating ``redis_server``, its link up."""
    require_server(ManagedRedis)
    replica = ManagedRedis()
    try:
        replica.start()
        master = redis.Redis.from_url(redis_server.url)
        master.config_set("repl-diskless-sync-delay", 0)  # sync now, not in 5 s
        master.close()
        client = redis.Redis.from_url(replica.url)
        client.execute_command("REPLICAOF", redis_server.host, str(redis_server.port))
        deadline = time.monotonic() + 20
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, replica.log_text(tail=20)
            time.sleep(0.05)
        client.close()
        yield replica
    finally:
        replica.close()
