"""Synthetic pollsters (namespace ``synthetic``): no I/O, for smoke tests.

``synthetic.constant`` emits one gauge sample of volume 1 per resource it
is given.  Run an agent with ``--polling-namespaces synthetic`` and a
source with static ``resources`` to check partitioning and publishers
end to end without touching any real system.
"""

from __future__ import annotations

import time
from typing import Any

from zkpoll.plugin import PollingContext, Pollster, resource_key
from zkpoll.sample import GAUGE, Sample

__all__ = ["ConstantPollster"]


class ConstantPollster(Pollster):
    """One sample of volume 1 per resource."""

    meter = "synthetic.constant"

    @property
    def default_discovery(self) -> str | None:
        return None

    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        name, now = self.meter, time.time()  # when it was polled, for failover timing
        return [Sample(name, GAUGE, "1", 1, resource_key(r), now) for r in resources]
