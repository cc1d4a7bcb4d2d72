"""The evaluation log: one JSON line per alarm evaluation this evaluator wrote or lost.

Off unless ``[alarm] evaluation_log`` names a file.  Each line::

    {"t": 1764770000.123, "alarm": "web-cpu", "cycle": 882385000, "start": ...,
     "member": "host-123-ab", "kind": "cycle", "result": "written", "state": "alarm",
     "seq": 4, "transition": true, "value": 0.93, "error": null}

``result`` is ``written`` (this evaluator's state write won) or ``lost``
(another writer won, or it was fenced); ``kind`` is ``cycle``, ``catch_up``
or ``resume``.  The file is appended to and never rotated by zkpoll (use
logrotate with ``copytruncate``).  It answers "who evaluated this alarm for
that cycle, and what did it decide" after the fact.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Any

from zkpoll.exceptions import ConfigError

__all__ = ["EvaluationLog"]

LOG = logging.getLogger(__name__)


class EvaluationLog:
    """Append JSON lines to a file, whole batches at a time (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: IO[str] | None = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"[alarm] evaluation_log: cannot open {path!r}: "
                              f"{exc.strerror}") from exc
        self._lock = threading.Lock()
        self._failed = False

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append ``records`` and flush (an I/O error is logged once, never raised)."""
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        if not text:
            return
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text)
                self._file.flush()
                self._failed = False
            except OSError as exc:
                if not self._failed:
                    LOG.error("evaluation log %s: cannot write: %s (lines lost until it "
                              "can)", self.path, exc)
                self._failed = True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
