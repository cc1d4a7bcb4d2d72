"""Which namespaces a polling agent partitions, and the groups they are split in.

One rule for start-up and for a reload: a namespace is partitioned when the
agent has a coordination backend, one of its sources polls a meter of that
namespace, and it is not ``compute`` (unless ``[compute]
workload_partitioning`` is set: compute agents poll their own host).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["group_name", "partitioned_namespaces"]


def partitioned_namespaces(namespaces: Sequence[str], polled: Iterable[str], *,
                           coordinated: bool, compute_partitioned: bool) -> list[str]:
    """The namespaces of ``namespaces`` (in their order) whose work is split with other
    agents, given the namespaces ``polled`` by the sources' meters."""
    if not coordinated:
        return []
    used = set(polled)
    return [ns for ns in namespaces if ns in used
            and (ns != "compute" or compute_partitioned)]


def group_name(prefix: str | None, namespace: str) -> str:
    """``<prefix>-<namespace>``, or the namespace alone without a prefix."""
    return f"{prefix}-{namespace}" if prefix else namespace
