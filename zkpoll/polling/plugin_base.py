"""Former location of the plugin contract, kept for third-party plugins:
use :mod:`zkpoll.plugin`."""

from zkpoll.plugin import Discovery, PollingContext, Pollster, resource_key

__all__ = ["Discovery", "PollingContext", "Pollster", "resource_key"]
