"""Publishers: where samples go, chosen by URL scheme.

A scheme is looked up first in the ``zkpoll.publisher`` namespace (local
publishers: ``file``, ``udp``, ``log``, ``null``; a :class:`Publisher`
subclass each), then in ``zkpoll.sender`` (network publishers: ``http``,
``https``, ``prometheus+remote-write``, ...; a
:class:`~zkpoll.publisher.sender.BatchSender` subclass each), whose senders
are wrapped in the durable spool and its delivery loop
(:class:`~zkpoll.publisher.spooled.SpooledPublisher`, :mod:`zkpoll.delivery`).
A third-party network publisher registers a BatchSender in ``zkpoll.sender``
and gets the spool for free.  Words: the *publisher* is the plugin; the
*sink* is the server it delivers to.
"""

from __future__ import annotations

import importlib.metadata
import urllib.parse
from typing import Any, NoReturn

from stevedore import driver, extension
from stevedore.exception import NoMatches

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import Publisher, redact_url, url_options
from zkpoll.publisher.spooled import SpooledPublisher

__all__ = ["NAMESPACE", "SENDER_NAMESPACE", "Publisher", "available_schemes", "load_publisher",
           "redact_url", "url_options"]

#: The stevedore namespace of publisher plugins.
NAMESPACE = "zkpoll.publisher"
#: The stevedore namespace of network senders (wrapped in the spool).
SENDER_NAMESPACE = "zkpoll.sender"


def available_schemes() -> list[str]:
    """Return the sorted URL schemes of the installed publishers and senders."""
    return sorted(set(extension.ExtensionManager(NAMESPACE).names())
                  | set(extension.ExtensionManager(SENDER_NAMESPACE).names()))


def _registered(namespace: str, name: str) -> bool:
    return any(ep.name == name for ep in importlib.metadata.entry_points(group=namespace))


def _sender_class(scheme: str) -> Any:
    """The BatchSender class registered for ``scheme``."""
    manager = driver.DriverManager(namespace=SENDER_NAMESPACE, name=scheme,
                                   invoke_on_load=False, on_load_failure_callback=_raise,
                                   on_missing_entrypoints_callback=None)
    return manager.driver


def _raise(manager: Any, entry_point: Any, exc: BaseException) -> NoReturn:
    raise exc


def load_publisher(conf: Any, url: str) -> Publisher:
    """Return the publisher for ``url``, constructed with ``conf``.

    Raises :class:`ConfigError` naming the (redacted) URL for a malformed
    URL, an unknown scheme (listing the available ones), or a publisher
    whose constructor fails.
    """
    where = f"publisher URL {redact_url(url)!r}"
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigError(f"{where} is malformed: {exc}") from exc
    if not parsed.scheme:
        raise ConfigError(f"{where} has no scheme; available schemes: "
                          f"{', '.join(available_schemes())}")
    try:
        if _registered(SENDER_NAMESPACE, parsed.scheme) \
                and not _registered(NAMESPACE, parsed.scheme):
            return SpooledPublisher(conf, parsed, _sender_class(parsed.scheme))
        manager = driver.DriverManager(
            namespace=NAMESPACE, name=parsed.scheme, invoke_on_load=True,
            invoke_args=(conf, parsed), on_load_failure_callback=_raise,
            on_missing_entrypoints_callback=None)
    except NoMatches as exc:
        raise ConfigError(f"{where}: unknown scheme {parsed.scheme!r}; available schemes: "
                          f"{', '.join(available_schemes())}") from exc
    except ConfigError:
        raise
    except Exception as exc:
        reason = redact_url(str(exc))
        if parsed.password:
            reason = reason.replace(parsed.password, "***")
        raise ConfigError(f"{where}: the {parsed.scheme!r} publisher failed to load: "
                          f"{reason}") from exc
    return manager.driver
