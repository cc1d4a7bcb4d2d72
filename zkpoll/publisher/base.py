"""The publisher contract and the helpers every publisher shares.

A publisher is loaded from a URL (see :func:`zkpoll.publisher.load_publisher`):
the scheme picks the plugin, the rest of the URL says where to deliver, and
the query string carries the options, parsed by :func:`url_options`.

Counters (see :attr:`Publisher.stats`):

- ``published``: samples handed over for good (written, sent, acknowledged);
- ``dropped``: samples lost (queue full, gave up, cannot be serialised);
- ``errors``: failed delivery operations (a write, a POST attempt, a
  datagram), retried ones included;
- ``queue_depth``: samples accepted and not yet published or dropped.

Health (see :attr:`Publisher.health`): since when delivery has been failing,
the last success, the oldest undelivered sample and the drops by reason.
Both are kept by the publisher's :class:`~zkpoll.delivery.ledger.Ledger`.

Spooled or not: a publisher whose health reports ``spool_bytes`` keeps its
undelivered samples in a durable spool
(:class:`~zkpoll.publisher.spooled.SpooledPublisher`, the publisher of every
``zkpoll.sender``).  This base class reports none: a direct subclass
(``file``, ``udp``, ``log``, a third-party ``zkpoll.publisher``) loses the
samples of a batch it fails, and :mod:`zkpoll.publisher.health` reports it
degraded at that batch.
"""

from __future__ import annotations

import abc
import json
import logging
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from zkpoll.delivery.ledger import Ledger, PublisherHealth
from zkpoll.exceptions import ConfigError
from zkpoll.sample import Sample

if TYPE_CHECKING:  # typing.Self is 3.11+; only type checkers import it
    from typing import Self

__all__ = ["Publisher", "PublisherHealth", "boolean", "integer", "number", "redact_url", "url_options"]

#: A query-string spec: parameter name -> (converter, default value).
OptionSpec = Mapping[str, tuple[Callable[[str], Any], Any]]

_USERINFO = re.compile(r"(//)[^/?#@]*@")


def redact_url(url: str | urllib.parse.SplitResult) -> str:
    """Return ``url`` with any ``user:password@`` replaced by ``***@``."""
    text = url.geturl() if isinstance(url, urllib.parse.SplitResult) else url
    if isinstance(url, urllib.parse.SplitResult) and not url.netloc and url.path \
            and url.path[:1] != "/":
        text = f"{url.scheme}:{text.split(':', 1)[1].lstrip('/')}"  # file:rel stays relative
    return _USERINFO.sub(r"\1***@", text, count=1)


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """Return a converter to ``int`` that checks ``lo <= value <= hi``."""
    def convert(raw: str) -> int:
        return _bounded(int(raw), lo, hi)
    return convert


def number(lo: float | None = None, hi: float | None = None) -> Callable[[str], float]:
    """Return a converter to a finite ``float`` that checks ``lo <= value <= hi``."""
    def convert(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return _bounded(value, lo, hi)
    return convert


def _bounded(value: Any, lo: Any, hi: Any) -> Any:
    if lo is not None and value < lo:
        raise ValueError(f"must be at least {lo}")
    if hi is not None and value > hi:
        raise ValueError(f"must be at most {hi}")
    return value


def boolean(raw: str) -> bool:
    """Convert ``true/false``, ``yes/no``, ``on/off`` or ``1/0`` to a bool."""
    lowered = raw.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("must be true or false")


def url_options(url: urllib.parse.SplitResult, spec: OptionSpec, *,
                what: str = "publisher URL") -> dict[str, Any]:
    """Parse and validate the query string of a publisher URL.

    Returns every option of ``spec``, defaulted when absent.  Raises
    :class:`ConfigError` naming ``what``, the (redacted) URL and the parameter
    for an unknown or repeated parameter or a value the converter rejects.
    """
    where = f"{what} {redact_url(url)!r}"
    try:
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True,
                                       strict_parsing=bool(url.query))
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed query string: {exc}") from exc
    values = {name: default for name, (_, default) in spec.items()}
    seen: set[str] = set()
    for name, raw in pairs:
        if name not in spec:
            accepted = ", ".join(sorted(spec)) or "none"
            raise ConfigError(f"{where}: unknown parameter {name!r} (accepted: {accepted})")
        if name in seen:
            raise ConfigError(f"{where}: parameter {name!r} is given more than once")
        seen.add(name)
        try:
            values[name] = spec[name][0](raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: bad value {raw!r} for parameter {name!r}: {exc}") from exc
    return values


class Publisher(abc.ABC):
    """Deliver samples somewhere; one plugin per URL scheme.

    :param conf: the agent's ``oslo.config`` options (may be None in tests)
    :param url: the publisher URL, already split

    Subclasses implement :meth:`publish_samples`, and :meth:`close` when
    they hold resources or a queue.  The constructor validates the URL
    (raising :class:`ConfigError`) but opens no connection and starts no
    thread.  Publishers may keep the samples they receive after returning,
    so callers must not mutate them.
    """

    #: Query-string options of this publisher, for :func:`url_options`.
    OPTIONS: ClassVar[OptionSpec] = {}

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        self.conf = conf
        self.url = url
        self.options = url_options(url, self.OPTIONS)
        self.log = logging.getLogger(type(self).__module__)
        self.ledger = Ledger(self.log, f"publisher {self.redacted_url}", self._redact)

    @abc.abstractmethod
    def publish_samples(self, samples: Sequence[Sample]) -> None:
        """Deliver or enqueue ``samples``.

        Called from the polling threads: must return quickly and must never
        raise for a delivery failure (log and count it instead).
        """

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued within ``timeout`` seconds and release resources."""

    def probe(self) -> bool | None:
        """Whether the destination accepts data now, or None when this
        publisher cannot tell without publishing (the default).  Used to
        rejoin after a health withdrawal."""
        return None

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``published``, ``dropped``, ``errors``, ``queue_depth``."""
        return {**self.ledger.counts(), "queue_depth": self._queue_depth()}

    @property
    def health(self) -> PublisherHealth:
        """Failure state, last success, backlog and drops by reason (see the class)."""
        return self.ledger.health(self._queue_depth(), None, None)

    @property
    def redacted_url(self) -> str:
        """The publisher URL with credentials hidden, for logs and reprs."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redacted_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _queue_depth(self) -> int:
        """Samples accepted and not yet published or dropped."""
        return 0

    def _delivered(self, count: int) -> None:
        """Count ``count`` samples as published; note a recovery after failures."""
        self.ledger.delivered(count)

    def _batch_done(self, delivered: int, lost: int, reason: str, drop_reason: str) -> None:
        """Settle one batch of a publisher without a spool: a success only when it
        lost nothing; else ``lost`` samples are dropped under ``drop_reason`` and
        the publisher is failing (degraded) until a batch loses nothing."""
        if not lost:
            if delivered:
                self._delivered(delivered)
            return
        self.ledger.add_published(delivered)  # a partial batch is no recovery
        self._failed(reason, lost, drop_reason=drop_reason)

    def _failed(self, reason: str, dropped: int = 0, *, error: bool = True,
                level: int = logging.ERROR, drop_reason: str = "failed") -> None:
        """Count a failure and ``dropped`` samples: see :meth:`Ledger.failed`."""
        self.ledger.failed(reason, dropped, error=error, level=level, drop_reason=drop_reason)

    def _redact(self, text: str) -> str:
        """Remove the URL's password from ``text`` (exception messages may echo it)."""
        secret = self.url.password
        if secret:
            text = text.replace(secret, "***").replace(urllib.parse.unquote(secret), "***")
        return redact_url(text)

    def _encode(self, samples: Sequence[Sample]) -> list[str]:
        """Serialise samples to compact JSON; count and skip the ones that cannot be."""
        lines = []
        for sample in samples:
            try:
                lines.append(json.dumps(sample.as_dict(), separators=(",", ":"),
                                        default=str, allow_nan=False))
            except (TypeError, ValueError) as exc:
                self._failed(f"dropped a {getattr(sample, 'name', '?')} sample that "
                             f"cannot be serialised to JSON: {exc}", 1, error=False,
                             drop_reason="unencodable")
        return lines
