"""Discoveries of fixed resource lists: ``static://a,b`` and ``file:///path``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from zkpoll.exceptions import PluginError
from zkpoll.plugin import Discovery, PollingContext

__all__ = ["FileDiscovery", "StaticDiscovery"]


def _unique(items: Iterable[str]) -> list[str]:
    """Return the non-empty stripped items, duplicates dropped, order kept."""
    stripped = (item.strip() for item in items)
    return list(dict.fromkeys(item for item in stripped if item))


class StaticDiscovery(Discovery):
    """``static://a,b,c``: the comma-separated resources of ``param``.

    Blanks around items are stripped, empty items and duplicates dropped.
    """

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        return _unique(param.split(",")) if param else []


class FileDiscovery(Discovery):
    """``file:///path``: one resource per line of the file at ``param``.

    Blank lines and lines starting with ``#`` (after leading blanks) are
    skipped; duplicates are dropped.  The file is read on every discovery,
    so editing it takes effect at the next cycle.
    """

    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        if not param:
            raise PluginError("file discovery needs a path, e.g. file:///etc/zkpoll/targets")
        path = os.path.expanduser(param)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError as exc:
            raise PluginError(f"file discovery: {path}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PluginError(f"file discovery: cannot read {path}: {exc}") from exc
        return _unique(line for line in lines if not line.lstrip().startswith("#"))
