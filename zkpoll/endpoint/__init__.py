"""The agent's HTTP endpoint: ``/metrics``, ``/ownership``, ``/samples``, ``/sd`` and ``/healthz``.

It reads the agent through the small :class:`~zkpoll.endpoint.view.AgentView`
protocol, so it depends on neither the polling package nor its agent.
"""

from zkpoll.endpoint.server import OPTS, ApiServer, parse_bind
from zkpoll.endpoint.view import AgentView

__all__ = ["OPTS", "AgentView", "ApiServer", "parse_bind"]
