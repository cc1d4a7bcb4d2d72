"""The pollster behind each dynamic pollster definition.

:class:`DynamicPollster` reads its target (a URL, pages included, or a
command) once per cycle through :class:`~zkpoll.pollsters.reading.ReadingPollster`
and turns each entry of the answer into samples as Ceilometer does:
``resource_id_attribute`` (missing default ``id``: the polled resource),
``metadata_fields`` and ``metadata_mapping``, ``skip_sample_values``,
``value_mapping``/``default_value``, multi-metric ``[list].attribute``.
An entry that gives no sample (missing attribute, not a number, failed
operation) is counted; one WARNING per poll gives the count and the first
reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from zkpoll.discovery.local import host_id
from zkpoll.exceptions import PluginError
from zkpoll.plugin import PollingContext, resource_key
from zkpoll.polling.dynamic.budget import evaluation_deadline
from zkpoll.polling.dynamic.defs import Definition
from zkpoll.polling.dynamic.expr import ExpressionError, lookup
from zkpoll.polling.dynamic.fetch import http_get, parse_response, run_command
from zkpoll.pollsters.reading import ReadingPollster
from zkpoll.sample import Sample

__all__ = ["MAX_PAGES", "URL_DISCOVERY", "DynamicPollster"]

LOG = logging.getLogger(__name__)

#: Pages followed through ``next_sample_url_attribute`` in one poll.
MAX_PAGES = 100
#: Discovery of an absolute-URL dynamic pollster: ``dynamic_url://<url>`` gives ``[url]``.
URL_DISCOVERY = "dynamic_url"
_SKIP = object()


def _number(value: Any) -> int | float:
    """A sample volume from a JSON/XML/text value; ValueError when it is none."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                pass
    raise ValueError(f"value {value!r} is not a number (map it with value_mapping or "
                     "an operation)")


class DynamicPollster(ReadingPollster):
    """A pollster built from a :class:`~zkpoll.polling.dynamic.defs.Definition`."""

    reading = "zkpoll.polling.dynamic"

    def __init__(self, definition: Definition, conf: Any = None) -> None:
        super().__init__(conf)
        self.definition = d = definition
        self.meter, self.unit, self.sample_type = d.name, d.unit, d.sample_type  # type: ignore[misc]
        self.max_timeout = d.timeout
        if d.host_command:
            self.default_discovery = "local_host"
        elif d.absolute_url:
            self.default_discovery = f"{URL_DISCOVERY}://{d.url_path}"
        # Pollsters that fetch and split an answer the same way share one fetch per cycle.
        entries, pages = d.response_entries_key, d.next_sample_url_attribute
        self._fetch_key = json.dumps([d.url_path or d.host_command, sorted(d.headers.items()),
                                      d.response_handlers, entries and entries.text,
                                      pages and pages.text])

    def __repr__(self) -> str:
        return f"<DynamicPollster {self.meter} from {self.definition.path}>"

    # --- which resources, and reading them -------------------------------------
    def accepts(self, resource: Any) -> bool:
        key = resource_key(resource)
        if self.definition.host_command:
            return key == host_id(self.conf)
        if self.definition.absolute_url:
            return key == self.definition.url_path
        return urlsplit(key).scheme in ("http", "https")

    def cache_key(self, resource: Any) -> str:
        return f"{self.reading}:{self._fetch_key}:{resource_key(resource)}"

    def read(self, resource: Any, timeout: float) -> list[Any]:
        d = self.definition
        if d.host_command:
            text = run_command(d.host_command, timeout)
            return self._entries(parse_response(text, d.response_handlers, d.host_command))
        deadline = time.monotonic() + timeout
        base = resource_key(resource)
        url: str | None = d.url_path if d.absolute_url else urljoin(
            base if base.endswith("/") else base + "/", d.url_path or "")
        entries: list[Any] = []
        seen: set[str] = set()
        while url and url not in seen:
            if len(seen) >= MAX_PAGES:
                LOG.warning("%s: stopped after %d pages at %s", self.meter, MAX_PAGES, url)
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PluginError(f"{self.meter}: pages not all read within {timeout:.1f}s")
            seen.add(url)
            response = parse_response(http_get(url, d.headers, remaining),
                                      d.response_handlers, f"GET {url}")
            entries.extend(self._entries(response))
            url = self._next_url(response, url)
        return entries

    def _entries(self, response: Any) -> list[Any]:
        """The entries of one parsed answer, as Ceilometer picks them."""
        if isinstance(response, list):
            return response
        if not response:
            return []
        key = self.definition.response_entries_key
        try:
            found = key(response) if key else response[next(iter(response))]
        except (KeyError, ExpressionError, TypeError) as exc:
            raise PluginError(f"{self.meter}: no entries at response_entries_key "
                              f"{getattr(key, 'text', None)!r}: {exc}") from exc
        return found if isinstance(found, list) else [found]

    def _next_url(self, response: Any, url: str) -> str | None:
        attribute = self.definition.next_sample_url_attribute
        if attribute is None:
            return None
        try:
            found = attribute(response)
        except (KeyError, ExpressionError):
            return None
        return urljoin(url, found) if isinstance(found, str) and found else None

    # --- samples ------------------------------------------------------------------
    def get_samples(self, context: PollingContext, resources: list[Any]) -> list[Sample]:
        """Poll as any reading pollster; expressions stop at the end of the poll's budget.

        An expression over its budget (:mod:`~zkpoll.polling.dynamic.budget`)
        raises ExpressionBudgetError (a PluginError): the call fails and the
        agent counts an error for this pollster in this cycle.
        """
        with evaluation_deadline(time.monotonic() + self.timeout(context)):
            return super().get_samples(context, resources)

    def make_samples(self, resource_id: str, reading: Any,
                     timestamp: float) -> Iterable[Sample]:
        d = self.definition
        samples: list[Sample] = []
        problems: list[str] = []
        for entry in reading:
            try:
                rid = self._resource_id(entry, resource_id)
                metadata = self._metadata(entry)
                for name, value in self._values(entry):
                    samples.append(Sample(name, d.sample_type, d.unit, _number(value), rid,
                                          timestamp=timestamp, resource_metadata=dict(metadata)))
            except (ExpressionError, KeyError, TypeError, ValueError) as exc:
                problems.append(str(exc))
        if problems:
            LOG.warning("%s: %d of %d entries of %s gave no sample; first: %s", self.meter,
                        len(problems), len(reading), resource_id, problems[0])
        return samples

    def _resource_id(self, entry: Any, polled: str) -> str:
        attribute = self.definition.resource_id_attribute
        try:
            rid = attribute(entry)
        except KeyError:
            if attribute.text == "id":  # Ceilometer's default: fall back to what was polled
                return polled
            raise
        if rid is None or rid == "":
            raise ValueError(f"resource_id_attribute {attribute.text!r} is empty")
        return str(rid)

    def _metadata(self, entry: Any) -> dict[str, Any]:
        d = self.definition
        metadata: dict[str, Any] = {}
        for expression in d.metadata_fields:
            try:
                metadata[expression.text] = expression(entry)
            except (KeyError, ExpressionError) as exc:
                LOG.debug("%s: metadata %r: %s", self.meter, expression.text, exc)
                metadata[expression.text] = None
        for old, new in d.metadata_mapping.items():
            if old in metadata:
                metadata[new] = metadata[old] if d.preserve_mapped_metadata \
                    else metadata.pop(old)
        for key, attribute in (("user_id", d.user_id_attribute),
                               ("project_id", d.project_id_attribute)):
            try:
                value = attribute(entry)
            except (KeyError, ExpressionError):
                continue
            if value is not None:
                metadata.setdefault(key, value)
        return metadata

    def _values(self, entry: Any) -> list[tuple[str, Any]]:
        """``(meter name, value)`` of one entry, skipped and mapped values done."""
        d = self.definition
        if d.multi is None:
            assert d.value is not None
            value = self._map(d.value(entry), ())
            return [] if value is _SKIP else [(d.name, value)]
        items = lookup(entry, d.multi.list_key)
        if not isinstance(items, list):
            raise TypeError(f"[{d.multi.list_key}] is not a list: {items!r:.80}")
        values = []
        for item in items:
            sub_name = str(lookup(item, d.multi.name_attribute))
            value = self._map(lookup(item, d.multi.value_path), (sub_name,))
            if value is not _SKIP:
                values.append((d.name.replace(f"{{{d.multi.name_attribute}}}", sub_name),
                               value))
        return values

    def _map(self, value: Any, names: Sequence[str]) -> Any:
        d = self.definition
        if value in d.skip_sample_values or any(n in d.skip_sample_values for n in names):
            return _SKIP
        if d.value_mapping:
            try:
                return d.value_mapping.get(value, d.default_value)
            except TypeError:  # an unhashable value is never mapped
                return d.default_value
        return value
