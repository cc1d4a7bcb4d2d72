"""``/sd`` and ``/sd/SOURCE``: the targets this agent owns, in Prometheus's http_sd format.

* ``GET /sd``: ``{"sources": [...]}``, the sources polling ``prometheus.allocate``
  here.
* ``GET /sd/SOURCE``: a JSON list of target groups (``[{"targets": ["h:p"],
  "labels": {...}}, ...]``), those this member owns in the source's current
  cycle (:func:`zkpoll.scrape.allocator.served_groups`); ``[]`` when it owns
  none; 404 with a one-line JSON error for a source that does not poll
  ``prometheus.allocate`` here.

What to serve is decided by the pure :func:`~zkpoll.scrape.allocator.served_groups`;
this module only reads the agent and encodes.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable

from zkpoll.endpoint.view import AgentView
from zkpoll.scrape.allocator import METER, served_groups

__all__ = ["sd_index", "sd_source"]

_JSON = "application/json"


def _allocators(agent: AgentView) -> dict[str, object]:
    return dict(agent.pollsters_of(METER))


def sd_index(agent: AgentView) -> Callable[[str], tuple[int, bytes, str]]:
    """The ``/sd`` route: the sources served."""
    def route(query: str) -> tuple[int, bytes, str]:
        body = {"sources": sorted(_allocators(agent))}
        return 200, json.dumps(body).encode(), _JSON
    return route


def sd_source(agent: AgentView, now: Callable[[], float] = time.time,
              ) -> Callable[[str, str], tuple[int, bytes, str]]:
    """The ``/sd/`` prefix route: ``route(SOURCE, query)``."""
    def route(rest: str, query: str) -> tuple[int, bytes, str]:
        name = urllib.parse.unquote(rest)
        pollster = _allocators(agent).get(name)
        book = getattr(pollster, "book", None)
        if book is None:
            error = {"error": f"source {name!r} does not poll {METER} on this agent"}
            return 404, json.dumps(error).encode(), _JSON
        stats = agent.last_stats.get(name)
        groups = served_groups(book.get(name), now(), stats.start if stats else None)
        return 200, json.dumps(groups).encode(), _JSON
    return route
