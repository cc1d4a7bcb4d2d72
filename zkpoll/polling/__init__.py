"""The polling agent: sources, plugins, cycles and the sample flow.

Public API for plugin authors::

    Pollster, Discovery, PollingContext, Unreachable,
    resource_key                                        (the plugin contract)
    Source, PollingConfig, load_polling_config          (the polling YAML)
"""

from zkpoll.plugin import Discovery, PollingContext, Pollster, Unreachable, resource_key
from zkpoll.polling.sources import PollingConfig, Source, load_polling_config

__all__ = [
    "Discovery",
    "PollingConfig",
    "PollingContext",
    "Pollster",
    "Source",
    "Unreachable",
    "load_polling_config",
    "resource_key",
]
