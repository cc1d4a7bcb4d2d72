"""A listing costs a member O(changed names), not O(N) objects (real ZooKeeper).

Each name is parsed and its Member built once; an unchanged member is the
same object in the next snapshot, and the partition reuses what it derived
from it.
"""

from __future__ import annotations

import pytest

from tests.functional.test_coordination_zk import coordinator_for, url_for
from zkpoll.coordination import Membership
from zkpoll.testing.waiting import wait_for

pytestmark = pytest.mark.functional


def test_unchanged_members_are_the_same_objects_in_the_next_snapshot(
        zookeeper_server, zk_chroot: str) -> None:
    url = url_for(zookeeper_server.address, zk_chroot, timeout=6.0)
    watcher, a, b = (coordinator_for(url) for _ in range(3))
    seen: list[Membership] = []
    for c in (watcher, a, b):
        c.start(timeout=10)
    try:
        watcher.watch("g", seen.append, with_data=False)
        a.join("g", {"weight": 1}, wait=5)
        wait_for(lambda: seen and a.member_id in seen[-1].member_ids, 10, "a listed")
        first = seen[-1].get(a.member_id)
        b.join("g", {"weight": 1}, wait=5)
        wait_for(lambda: b.member_id in seen[-1].member_ids, 10, "b listed")
        assert seen[-1].get(a.member_id) is first  # not parsed nor built again
        a.update("g", {"leave_at": 4e9}, wait=5)  # a new name: a new member object
        wait_for(lambda: seen[-1].get(a.member_id) is not first, 10, "a's new name")
        assert seen[-1].get(a.member_id).data["leave_at"] == 4e9
    finally:
        for c in (watcher, a, b):
            c.stop()
