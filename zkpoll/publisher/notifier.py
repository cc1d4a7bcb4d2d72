"""``notifier://``: samples as Ceilometer ``telemetry.polling`` notifications.

zkpoll speaks to a ceilometer-notification agent as Ceilometer's own polling
agent does: one notification per batch, ``event_type`` ``telemetry.polling``,
priority ``SAMPLE``, payload ``{"samples": [meter message, ...]}`` (see
:mod:`zkpoll.publisher.ceilometer_sample`), sent with oslo.messaging's
``messagingv2`` envelope on the ``ceilometer`` exchange with routing key
``<topic>.sample`` (default topic ``notifications``), which is where the
notification agent listens by default.  Needs the ``notifier`` extra
(``pip install 'zkpoll[notifier]'``: oslo.messaging).

Where the transport URL comes from (as Ceilometer's notifier publisher):

- ``notifier://user:pass@host:5672/vhost?...``: the URL itself, with the
  scheme replaced by ``driver`` (default ``rabbit``);
- ``notifier://?...`` (no host): ``[publisher] notifier_transport_url``;
- neither: a configuration error (zkpoll never guesses a broker).

oslo.messaging reads its driver options (``[oslo_messaging_rabbit]``: TLS,
heartbeats, quorum queues, ...) from zkpoll's configuration files, as in any
OpenStack service.  RabbitMQ publisher confirms are on (oslo.messaging sets
them), so :meth:`NotifierSender.send` returns only once the broker took the
message.  It never waits for ever: ``retry`` (default 0) is the number of
reconnection attempts, a connection attempt gives up after kombu's connect
timeout and an answer is awaited at most
``[oslo_messaging_rabbit] heartbeat_timeout_threshold`` seconds (60), which
therefore must be above 0.

oslo.messaging's ``Notifier`` logs and swallows delivery errors, so the
sender hands the message to the transport itself
(``Transport._send_notification``, what every notifier driver calls),
which raises; the error becomes :class:`PublishError` and the spool retries.
"""

from __future__ import annotations

import datetime as _dt
import logging
import urllib.parse
import uuid
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from oslo_config import cfg

from zkpoll.exceptions import ConfigError, PublishError
from zkpoll.publisher.base import OptionSpec, integer, redact_url, url_options
from zkpoll.publisher.ceilometer_sample import meter_message
from zkpoll.publisher.sender import BatchSender
from zkpoll.sample import Sample

__all__ = ["EVENT_TYPE", "OPTS", "NotifierSender"]

LOG = logging.getLogger(__name__)

EVENT_TYPE = "telemetry.polling"
PRIORITY = "SAMPLE"

#: ``[publisher]`` options of the notifier sender.
OPTS = [
    cfg.StrOpt("telemetry_secret", secret=True, default="change this for valid signing",
               help="Secret that signs every sample sent to Ceilometer's notification bus "
                    "(the message_signature field, HMAC-SHA256, as Ceilometer computes "
                    "it). Set it to the [publisher] telemetry_secret of ceilometer.conf; "
                    "the default is Ceilometer's default. Empty: samples are not signed "
                    "(empty signature)."),
    cfg.StrOpt("notifier_transport_url", secret=True,
               help="oslo.messaging transport URL of the notification bus for notifier:// "
                    "publisher URLs that name no host, e.g. "
                    "rabbit://user:pass@host1:5672,user:pass@host2:5672/vhost."),
]


def register_opts(conf: Any) -> None:
    """Register :data:`OPTS` in ``[publisher]`` of ``conf`` (a ConfigOpts)."""
    conf.register_opts(OPTS, group="publisher")


class NotifierSender(BatchSender):
    """Sends each batch as one ``telemetry.polling`` notification (module docstring).

    Options (query string): ``topic`` (``notifications``), ``exchange``
    (``ceilometer``), ``driver`` (``rabbit``: the transport scheme when the
    URL names a host), ``retry`` (0: reconnection attempts within one send)
    and ``publisher_id`` (``zkpoll.polling``).
    """

    sink = "ceilometer-notifier"

    OPTIONS: ClassVar[OptionSpec] = {
        "topic": (str, "notifications"),
        "exchange": (str, "ceilometer"),
        "driver": (str, "rabbit"),
        "retry": (integer(0, 100), 0),
        "publisher_id": (str, "zkpoll.polling"),
    }

    def __init__(self, conf: Any, url: urllib.parse.SplitResult) -> None:
        super().__init__(conf, url)
        self.redacted_url = redact_url(url)
        where = f"publisher URL {self.redacted_url!r}"
        opts = url_options(url, self.OPTIONS)
        for name in ("topic", "exchange", "driver", "publisher_id"):
            if not opts[name]:
                raise ConfigError(f"{where}: parameter {name!r} must not be empty")
        self.topic: str = opts["topic"]
        self.exchange: str = opts["exchange"]
        self.retry: int = opts["retry"]
        self.publisher_id: str = opts["publisher_id"]
        try:
            with warnings.catch_warnings():  # eventlet's deprecation notice, via oslo.service
                warnings.simplefilter("ignore")
                import oslo_messaging
        except ImportError as exc:
            raise ConfigError(f"{where}: the notifier sender needs oslo.messaging "
                              f"(pip install 'zkpoll[notifier]'): {exc}") from exc
        messaging_conf = conf if isinstance(conf, cfg.ConfigOpts) else cfg.ConfigOpts()
        register_opts(messaging_conf)
        self.secret: str = messaging_conf.publisher.telemetry_secret or ""
        transport_url = self._transport_url(url, opts["driver"],
                                            messaging_conf.publisher.notifier_transport_url)
        self._transport_url_text = transport_url
        self.redacted_transport_url = _redact(transport_url, transport_url)
        try:
            with warnings.catch_warnings():  # loads the driver, which imports oslo.service
                warnings.simplefilter("ignore")
                self._transport = oslo_messaging.get_notification_transport(
                    messaging_conf, url=transport_url)
        except (oslo_messaging.InvalidTransportURL, oslo_messaging.DriverLoadFailure) as exc:
            raise ConfigError(f"{where}: unusable transport URL "
                              f"{self.redacted_transport_url!r}: "
                              f"{_redact(str(exc), transport_url)}") from exc
        rabbit = getattr(messaging_conf, "oslo_messaging_rabbit", None)  # rabbit driver only
        if rabbit is not None and not rabbit.heartbeat_timeout_threshold > 0:
            self._transport.cleanup()
            raise ConfigError(f"{where}: [oslo_messaging_rabbit] heartbeat_timeout_threshold "
                              "must be above 0: it bounds how long a send waits for the "
                              "broker, and without it a frozen broker blocks delivery for ever")
        self._target = oslo_messaging.Target(topic=f"{self.topic}.{PRIORITY.lower()}",
                                             exchange=self.exchange)

    def _transport_url(self, url: urllib.parse.SplitResult, driver: str,
                       configured: str | None) -> str:
        if url.netloc:
            return urllib.parse.urlunsplit((driver, url.netloc, url.path or "/", "", ""))
        if configured:
            return configured
        raise ConfigError(f"publisher URL {self.redacted_url!r} names no message bus: give "
                          "one (notifier://user:pass@host:5672/) or set [publisher] "
                          "notifier_transport_url")

    def notification(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """The notification (message) for ``samples``, as oslo.messaging's Notifier builds it."""
        return {
            "message_id": str(uuid.uuid4()),
            "publisher_id": self.publisher_id,
            "event_type": EVENT_TYPE,
            "priority": PRIORITY,
            "payload": {"samples": [meter_message(s, self.secret) for s in samples]},
            "timestamp": str(_dt.datetime.now(_dt.UTC).replace(tzinfo=None)),
        }

    def send(self, samples: Sequence[Sample]) -> None:
        """Publish one notification; return once the broker confirmed it."""
        if not samples:
            return
        message = self.notification(samples)
        try:
            self._transport._send_notification(self._target, {}, message, version=2.0,
                                               retry=self.retry)
        except Exception as exc:  # any failure of the bus: the spool retries it
            raise PublishError(
                f"notification bus {self.redacted_transport_url} (exchange "
                f"{self.exchange!r}, topic {self._target.topic!r}) did not take "
                f"{len(samples)} samples: {type(exc).__name__}: "
                f"{_redact(str(exc), self._transport_url_text)}"
            ) from exc

    def close(self) -> None:
        """Close the transport's connections."""
        self._transport.cleanup()


def _passwords(transport_url: str) -> list[str]:
    """The passwords of every ``user:pass@host`` of a (multi-host) transport URL."""
    netloc = urllib.parse.urlsplit(transport_url).netloc
    found = []
    for part in netloc.split(","):
        userinfo = part.rpartition("@")[0]
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found += [password, urllib.parse.unquote(password)]
    return sorted({p for p in found if p}, key=len, reverse=True)


def _redact(text: str, transport_url: str) -> str:
    """``text`` without any password of ``transport_url``."""
    for password in _passwords(transport_url):
        text = text.replace(password, "***")
    return text
