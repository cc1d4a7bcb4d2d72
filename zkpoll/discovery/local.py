"""Discovery of this host: the single resource of the ``host.*`` pollsters."""

from __future__ import annotations

import socket
from typing import Any

from zkpoll.plugin import Discovery, PollingContext

__all__ = ["LocalHostDiscovery", "host_id"]


def host_id(conf: Any = None) -> str:
    """Return this host's resource id.

    The ``host`` option when ``conf`` has a non-empty one, else
    :func:`socket.gethostname`.  ``conf`` may be None, or lack the option
    (an unregistered oslo.config option raises ``NoSuchOptError``, an
    ``AttributeError``).
    """
    configured = getattr(conf, "host", None) if conf is not None else None
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    return socket.gethostname()


class LocalHostDiscovery(Discovery):
    """Return ``[host_id(conf)]``: this host, as the host pollsters expect it."""

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        conf = self.conf if self.conf is not None else context.conf
        return [host_id(conf)]
