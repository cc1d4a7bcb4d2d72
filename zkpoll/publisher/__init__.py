"""Publishers: where samples go, chosen by URL scheme.

Built-in schemes (entry points in the ``zkpoll.publisher`` namespace):
``file``, ``http``, ``https``, ``udp``, ``log`` and ``null``.  A third-party
publisher subclasses :class:`Publisher` and registers its scheme there.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, NoReturn

from stevedore import driver, extension
from stevedore.exception import NoMatches

from zkpoll.exceptions import ConfigError
from zkpoll.publisher.base import Publisher, redact_url, url_options

__all__ = ["NAMESPACE", "Publisher", "available_schemes", "load_publisher",
           "redact_url", "url_options"]

#: The stevedore namespace of publisher plugins.
NAMESPACE = "zkpoll.publisher"


def available_schemes() -> list[str]:
    """Return the sorted URL schemes of the installed publishers."""
    return sorted(extension.ExtensionManager(NAMESPACE).names())


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
