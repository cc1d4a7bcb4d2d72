"""ZooKeeper membership backend on kazoo (``zookeeper://``, ``kazoo://``).

Tree (``<root>`` is the URL path, default ``/zkpoll``)::

    <root>/groups/<group>/members/<member-id>!<rev>!<active_at>!<leave_at>!<weight>
                                                 EPHEMERAL, JSON member data
    <root>/groups/<group>/claims/<member-id>     persistent, JSON claims record
    <root>/groups/<group>/inbox/<member-id>/h-<seq>
                                                 persistent (sequential), JSON handoff
    <root>/records/<kind>/<key>                  persistent, JSON coordination record
                                                 (fenced CAS, see ``records``)

Member znodes are named by what rings need (``_names``): one children
watch per group is the only watch a member holds, and listing the children
is all a membership change costs (``listing``); a member's full data is
read only for a watcher that asks for it (``with_data``), once per name.
Claims records change every cycle and are not watched by anyone
(``claims``).  Handoffs go through one inbox per member and group, whose
children watch is the only other watch a member holds, and only while
something watches it (``inbox``).  The session and its lease are in
``session``, the worker that ties them together in ``coordinator``;
``_kazoo`` builds the kazoo client from the options, ``_kazoo_handler`` is
its callback handler, and ``admin`` forgets a retired group.
"""

from zkpoll.coordination.zookeeper.coordinator import ZooKeeperCoordinator

__all__ = ["ZooKeeperCoordinator"]
