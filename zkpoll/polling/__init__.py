"""The polling agent: sources, plugins, cycles and the sample flow.

Public API for plugin authors::

    Pollster, Discovery, PollingContext, Unreachable,
    PollsterSet, resource_key, CREDENTIAL_SCHEMES       (the plugin contract)
    Source, PollingConfig, load_polling_config          (the polling YAML)
"""

from zkpoll.plugin import (
    CREDENTIAL_SCHEMES,
    Discovery,
    PollingContext,
    Pollster,
    PollsterSet,
    Unreachable,
    resource_key,
)
from zkpoll.polling.sources import PollingConfig, Source, load_polling_config

__all__ = [
    "CREDENTIAL_SCHEMES",
    "Discovery",
    "PollingConfig",
    "PollingContext",
    "Pollster",
    "PollsterSet",
    "Source",
    "Unreachable",
    "load_polling_config",
    "resource_key",
]
