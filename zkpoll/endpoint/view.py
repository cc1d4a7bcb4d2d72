"""What the HTTP endpoint reads of an agent: a structural protocol.

:class:`zkpoll.polling.agent.Agent` satisfies it; the endpoint never
imports the agent (no import cycle between the agent and its endpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from zkpoll.coordination import Coordinator
from zkpoll.ownership import Partition

__all__ = ["AgentView", "CycleView", "FenceView", "HealthView", "PublisherView"]


class CycleView(Protocol):
    """The latest cycle of one source (``CycleStats``)."""

    index: int
    start: float
    fenced: bool
    owned_keys: set[str]


class HealthView(Protocol):
    """Per-source totals, the withdrawal state and publisher health (``Health``)."""

    totals: Mapping[str, Any]
    withdrawn: str | None

    def publishers_report(self, now: float,
                          degraded_after: float) -> dict[str, dict[str, Any]]: ...

    def degraded(self, now: float, degraded_after: float) -> dict[str, dict[str, Any]]: ...


class PublisherView(Protocol):
    """A publisher's counters (``Publisher``)."""

    redacted_url: str
    health: Any  #: zkpoll.publisher.base.PublisherHealth

    @property
    def stats(self) -> Mapping[str, Any]: ...


class FenceView(Protocol):
    """Where the agent is fenced (``polling.ownership.Ownership``)."""

    def fenced_groups(self) -> dict[str, str]: ...


class AgentView(Protocol):
    """Everything the endpoint reads of an agent, at request time."""

    conf: Any  #: the agent's oslo.config ConfigOpts
    coordinator: Coordinator | None
    partitions: Mapping[str, Partition]
    ownership: FenceView
    health: HealthView
    publishers: Mapping[str, PublisherView]
    last_stats: Mapping[str, CycleView]
    plugins: Any  #: LoadedPlugins: ``discoveries`` (name -> Discovery) is read

    @property
    def stopping(self) -> bool: ...

    def pollsters_of(self, meter: str) -> Mapping[str, Any]:
        """{source: the pollster of ``meter``} of every source polling ``meter``."""
