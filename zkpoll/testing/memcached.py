"""A real ``memcached`` on a free loopback port, for tests::

    with ManagedMemcached() as server:
        url = server.url + "/my-prefix?timeout=2"   # a [coordination] backend_url
        server.kill()                               # crash it; start() again on the same port
"""

from __future__ import annotations

import os

from zkpoll.testing._server import ManagedServer

__all__ = ["ManagedMemcached"]


class ManagedMemcached(ManagedServer):
    """One ``memcached`` (Debian ``memcached``; override with ``ZKPOLL_MEMCACHED``), TCP only."""

    program = "memcached"
    env_var = "ZKPOLL_MEMCACHED"
    package = "memcached"
    scheme = "memcached"
    probe = b"version\r\n"
    answer = b"VERSION"

    def command(self) -> list[str]:
        user = ["-u", "root"] if os.geteuid() == 0 else []  # memcached refuses root otherwise
        return [self.find_binary(), "-l", self.host, "-p", str(self.port), "-U", "0", "-m", "64", "-v",
                *user]
