"""A real ``redis-server`` on a free loopback port, for tests.

It keeps nothing on disk (``--save ""``, no AOF), so a restart starts empty,
like a Redis that lost its data::

    with ManagedRedis() as server:
        url = server.url + "/my-prefix?timeout=2"   # a [coordination] backend_url
        server.kill()                               # crash it; start() again on the same port
"""

from __future__ import annotations

from zkpoll.testing._server import ManagedServer

__all__ = ["ManagedRedis"]


class ManagedRedis(ManagedServer):
    """One ``redis-server`` (Debian ``redis-server``; override with ``ZKPOLL_REDIS_SERVER``)."""

    program = "redis-server"
    env_var = "ZKPOLL_REDIS_SERVER"
    package = "redis-server"
    scheme = "redis"
    probe = b"PING\r\n"
    answer = b"+PONG"

    def command(self) -> list[str]:
        return [self.find_binary(), "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", str(self._dir), "--daemonize", "no",
                "--protected-mode", "no"]
