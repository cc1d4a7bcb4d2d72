"""``log://`` publisher: one log line per sample."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

from zkpoll.publisher.base import OptionSpec, Publisher
from zkpoll.sample import Sample

__all__ = ["LogPublisher"]

LOG = logging.getLogger(__name__)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def _level(raw: str) -> int:
    try:
        return _LEVELS[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"must be one of {', '.join(_LEVELS)}") from None


class LogPublisher(Publisher):
    """Log each sample as compact JSON on the ``zkpoll.publisher.log`` logger.

    Option: ``level`` (debug, info, warning, error, critical; default info).
    Samples below the logger's effective level are counted as published
    without being serialised.
    """

    OPTIONS: ClassVar[OptionSpec] = {"level": (_level, logging.INFO)}

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        self.level: int = self.options["level"]

    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Log one line per sample at the configured level."""
        if not LOG.isEnabledFor(self.level):
            self._delivered(len(samples))
            return
        lines = self._encode(samples)
        for line in lines:
            LOG.log(self.level, "sample %s", line)
        self._delivered(len(lines))
