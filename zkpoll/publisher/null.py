"""``null://`` publisher: count and discard (benchmarks and tests)."""

from __future__ import annotations

from collections.abc import Sequence

from zkpoll.publisher.base import Publisher
from zkpoll.sample import Sample

__all__ = ["NullPublisher"]


class NullPublisher(Publisher):
    """Count samples as published and discard them; accepts no option."""

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Count ``samples``; nothing else."""
        self.ledger.add_published(len(samples))
