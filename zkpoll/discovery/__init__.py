"""Built-in discoveries.

- ``local_host`` (``zkpoll.discover.compute``): this host's id, see
  :func:`host_id`; the resource of every ``host.*`` pollster.
- ``static://a,b,c`` and ``file:///path`` (``zkpoll.discover.central``):
  fixed lists of resources, e.g. URLs for the ``http.*`` pollsters.
"""

from __future__ import annotations

from zkpoll.discovery.local import LocalHostDiscovery, host_id
from zkpoll.discovery.static import FileDiscovery, StaticDiscovery

__all__ = ["FileDiscovery", "LocalHostDiscovery", "StaticDiscovery", "host_id"]
