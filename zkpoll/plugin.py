"""Contracts for pollster and discovery plugins.

Plugins are found through stevedore entry points (pollsters under
``zkpoll.poll.<namespace>``, named after the meter they produce; discoveries
under ``zkpoll.discover.<namespace>``).  A plugin receives a narrow
:class:`PollingContext`, never the agent itself.

A *resource* is whatever a discovery returns: a string, or a mapping or
object with an ``id``.  :func:`resource_key` gives the stable string that
partitioning hashes and that pollsters use as ``resource_id``.

A pollster yields a :class:`~zkpoll.sample.Sample` per measurement, or an
:class:`Unreachable` for a resource it could not reach from this member
(docs/plugins.md, "Unreachable resources").
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from zkpoll.sample import Sample

__all__ = ["CREDENTIAL_SCHEMES", "Discovery", "PollingContext", "Pollster", "PollsterSet",
           "Unreachable", "resource_key"]

#: URL schemes whose user part and password-like query parameters are
#: credentials, never part of a resource's identity: ``snmp://public@h?priv_password=x``
#: has the key ``snmp://h`` (Ceilometer's hardware URLs carry the community
#: or the SNMPv3 user and keys there).  Keys are shown in logs, claims and
#: ``zkpoll-status``; credentials must not be.
CREDENTIAL_SCHEMES = frozenset({"snmp"})
_SECRET_QUERY = ("password", "passphrase", "community", "secret", "key", "token")



class PollingContext:
    """What a plugin may see while it polls or discovers.

    :param conf: the agent's ``oslo.config`` options (read them, never set them)
    :param cache: a dict shared by every plugin for one cycle of one source;
        use it to avoid fetching the same thing twice in a cycle
    :param source: the name of the polling source being run
    :param cycle_start: wall-clock start of the cycle (seconds since the epoch)
    :param timeout: seconds the plugin has before the agent gives up on it
    :param meters: every meter this source polls in this call (so a plugin
        that reads several meters from one conversation, like SNMP, can
        fetch all of them at the first call and serve the rest from
        ``cache``); empty when unknown
    :param scrape: the source's ``scrape:`` settings
        (:class:`zkpoll.scrape.config.ScrapeConfig`), or None
    :param discovered: the key of every resource the source has in this
        cycle, whichever member owns it (None when unknown): a resource
        given before and missing now has vanished, not moved
    :param interval: the source's interval in seconds (0.0 when unknown): the
        next cycle starts ``interval`` after ``cycle_start``
    :param catch_up: True when the call polls only some keys of a cycle (a dead
        member's orphans, a handoff): a key not given is not a key moved away
    """

    __slots__ = ("cache", "catch_up", "conf", "cycle_start", "discovered", "interval", "meters",
                 "scrape", "source", "timeout")

    def __init__(self, conf: Any, cache: dict[str, Any] | None = None, source: str = "",
                 cycle_start: float = 0.0, timeout: float = 0.0,
                 meters: tuple[str, ...] = (), scrape: Any = None,
                 discovered: frozenset[str] | None = None, interval: float = 0.0,
                 catch_up: bool = False) -> None:
        self.conf = conf
        self.cache = {} if cache is None else cache
        self.source = source
        self.cycle_start = cycle_start
        self.timeout = timeout
        self.meters = meters
        self.scrape = scrape
        self.discovered = discovered
        self.interval = interval
        self.catch_up = catch_up


@dataclass(frozen=True)
class Unreachable:
    """Yielded by :meth:`Pollster.get_samples` instead of a sample for a resource.

    ``resource_id`` (the resource's :func:`resource_key`) could not be reached
    from this member at the connection level: connection refused, connect
    timed out before any answer, no route / host or network unreachable, name
    resolution failed.  That is distinct from "it answered with an error"
    (an HTTP 500, a TLS handshake failure, a read timeout after connecting):
    those are samples.  ``reason`` says what failed, for the logs.
    ``sample`` is what to publish when no member can reach the resource
    (e.g. ``http.status`` 0 with the error); None: publish nothing.
    """

    resource_id: str
    reason: str
    sample: Sample | None = None


class Pollster(abc.ABC):
    """A plugin that measures one meter on a list of resources.

    Subclasses set :attr:`default_discovery` (the discovery used when the
    source names no ``resources`` or ``discovery``) and implement
    :meth:`get_samples`.  The constructor receives the agent's ``conf``; it
    may raise :class:`zkpoll.exceptions.PluginOptOut` to be skipped quietly
    on a host where it cannot work.
    """

    def __init__(self, conf: Any = None) -> None:
        self.conf = conf

    @property
    @abc.abstractmethod
    def default_discovery(self) -> str | None:
        """Name of the discovery to use when the source gives none (or None)."""

    @abc.abstractmethod
    def get_samples(self, context: PollingContext,
                    resources: list[Any]) -> Iterable[Sample | Unreachable]:
        """Return or yield samples for exactly the ``resources`` given.

        Poll only these resources (the agent has already kept the ones this
        member owns); never poll others.  Raise on failure: the agent logs
        and counts the error and the rest of the cycle goes on.

        For a resource that cannot be reached from here at the connection
        level, yield one :class:`Unreachable` and no sample: the agent may
        have another member poll it in the same cycle, and publishes
        ``Unreachable.sample`` when none can.  Do not retry internally for
        long; fail fast and let the agent decide.
        """


@dataclass
class PollsterSet:
    """What a ``zkpoll.pollster_sets`` entry point builds from configuration.

    Such an entry point is a callable ``(conf, namespaces) -> PollsterSet``
    for plugins whose meters are named by the operator (e.g. SNMP OIDs
    defined in YAML): ``pollsters`` holds ``(namespace, meter, pollster)``
    for the loaded ``namespaces`` only, ``discoveries`` the discoveries
    they need, ``failures`` an invalid definition's key and reason.
    """

    pollsters: list[tuple[str, str, Pollster]] = field(default_factory=list)
    discoveries: dict[str, Discovery] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class Discovery(abc.ABC):
    """A plugin that finds the resources a source polls."""

    def __init__(self, conf: Any = None) -> None:
        self.conf = conf

    @abc.abstractmethod
    def discover(self, context: PollingContext, param: str | None = None) -> list[Any]:
        """Return the resources, each a string or something with an ``id``.

        ``param`` is the text after ``://`` in the source's discovery entry
        (``static://a,b`` gives ``"a,b"``), or None.
        """

    def refresh_failures(self) -> Mapping[tuple[str, str], int]:
        """Failed refreshes so far by (source, mechanism), for a discovery that
        keeps its last good list when a refresh fails (exported as
        ``zkpoll_sd_refresh_failures_total``); default none."""
        return {}


def resource_key(resource: Any) -> str:
    """Return the stable id of a resource (the partitioning key).

    Strings are their own id; mappings use ``resource["id"]``; other objects
    use ``resource.id``.  Raise ``ValueError`` when there is none.
    """
    if isinstance(resource, str):
        scheme = resource[:resource.find("://")] if "://" in resource else ""
        return _without_credentials(resource) if scheme.lower() in CREDENTIAL_SCHEMES \
            else resource
    if isinstance(resource, Mapping):
        rid = resource.get("id")
    else:
        rid = getattr(resource, "id", None)
    if rid is None or rid == "":
        raise ValueError(f"resource {resource!r} has no id")
    return str(rid)


def _without_credentials(url: str) -> str:
    """``url`` (of a :data:`CREDENTIAL_SCHEMES` scheme) without its user part
    and secret query values."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not any(word in k.lower() for word in _SECRET_QUERY)]
    return urlunsplit((parts.scheme, host, parts.path, urlencode(query), parts.fragment))
