"""Detect sub-groups of one namespace that poll the same meters.

Agents with different ``partitioning_group_prefix`` values form separate
groups and each splits only its own work, so a meter polled by two such
groups is polled twice.  Every member publishes its meters per source in
its member data; :class:`OverlapMonitor` compares ours with those of every
other group of the same namespace at start, then after 1, 2, 4, ... seconds
up to every ``interval`` seconds (to see groups that appear).  A change of our own group does not change
what the others poll, so it triggers nothing: with ZooKeeper, a sibling
group's member data is read once per member znode name (it is cached).  With
``[polling] overlap_fatal`` the overlapping meters are refused here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from zkpoll.coordination import Coordinator, Membership
from zkpoll.exceptions import CoordinationError

__all__ = ["OverlapMonitor", "find_overlaps", "member_meters"]

LOG = logging.getLogger(__name__)


def member_meters(membership: Membership, namespace: str) -> set[str]:
    """Meters polled by the members of ``membership`` in ``namespace``."""
    meters: set[str] = set()
    for member in membership.members:
        if member.fields.namespace != namespace:
            continue
        for names in member.fields.meters.values():
            meters.update(names)
    return meters


def find_overlaps(coordinator: Coordinator, group: str, namespace: str,
                  mine: Iterable[str], timeout: float = 5.0) -> dict[str, set[str]]:
    """Other group of ``namespace`` -> the meters of ``mine`` it polls too."""
    ours = set(mine)
    overlaps: dict[str, set[str]] = {}
    for other in coordinator.get_groups(timeout=timeout):
        if other == group:
            continue
        common = ours & member_meters(coordinator.get_members(other, timeout=timeout),
                                      namespace)
        if common:
            overlaps[other] = common
    return overlaps


class OverlapMonitor:
    """Background check of one group against its sibling groups."""

    def __init__(self, coordinator: Coordinator, group: str, namespace: str,
                 meters: Iterable[str], fatal: bool,
                 on_refused: Callable[[frozenset[str]], None], interval: float = 30.0) -> None:
        self.coordinator = coordinator
        self.group = group
        self.namespace = namespace
        self.meters = frozenset(meters)
        self.fatal = fatal
        self.on_refused = on_refused
        self.interval = interval
        self.overlaps: dict[str, set[str]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"zkpoll-overlap-{group}")

    def start(self) -> None:
        """Check now, then again and again (see the module docstring), in the background."""
        self._wake.set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        delay = 1.0  # sibling groups usually start together: look again soon
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(self.interval, delay * 2)
            if self._stop.is_set():
                return
            try:
                self.check()
            except CoordinationError as exc:
                LOG.debug("overlap check of group %s postponed: %s", self.group, exc)
            except Exception:
                LOG.exception("overlap check of group %s failed; retrying", self.group)

    def check(self) -> dict[str, set[str]]:
        """Compare now; log a change of the overlaps; apply overlap_fatal."""
        overlaps = find_overlaps(self.coordinator, self.group, self.namespace, self.meters)
        if overlaps != self.overlaps:
            for other, common in sorted(overlaps.items()):
                LOG.error("meter overlap: groups %s and %s (namespace %s) both poll %s: "
                          "these meters are polled twice%s", self.group, other,
                          self.namespace, ", ".join(sorted(common)),
                          "; REFUSING them here ([polling] overlap_fatal)" if self.fatal
                          else "; fix the polling YAMLs or set [polling] overlap_fatal")
            if not overlaps and self.overlaps:
                LOG.info("meter overlap of group %s resolved", self.group)
            self.overlaps = overlaps
            if self.fatal:
                self.on_refused(frozenset().union(*overlaps.values()))
        return overlaps
