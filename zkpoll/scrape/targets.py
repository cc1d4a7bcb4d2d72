"""Service-discovery target groups to scrape targets, as Prometheus builds them.

Pure: the caller reads files; this module parses and transforms::

    groups = parse_file_sd(text, "/etc/zkpoll/sd/node.yml")
    job = JobConfig.from_mapping({"job_name": "node", "relabel_configs": [...]})
    targets, problems = build_targets(groups, job)
    for t in targets:
        t.url, t.labels, t.id          # what to fetch, what to add, what to partition on
    series_labels = merge_labels(scraped_labels, t.labels, job.honor_labels)

For each target of a group, the label set starts from ``__address__`` and
the group's labels (file_sd adds ``__meta_filepath``); ``job``,
``__scheme__``, ``__metrics_path__`` (and ``__scrape_interval__`` /
``__scrape_timeout__`` when the job sets them) are added unless the group
set them; ``__param_<name>`` is set from the job's ``params``.  The job's
``relabel_configs`` then run.  A target dropped by them is skipped; one
left without ``__address__`` (or with a ``/`` in it, or bad durations) is a
problem, reported and skipped, as Prometheus reports it.  ``__meta_*``
labels go, ``instance`` defaults to ``__address__``, and the public labels
are those not starting with ``__``.  The URL is scheme, address, metrics
path and the query of the job's params with the final ``__param_*`` values
(first value replaced, keys sorted, as Go's ``url.Values.Encode``).  As in
Prometheus 3, no default port is added.

:attr:`ScrapeTarget.id` is the URL followed by the public labels as a
selector (``http://h:9100/metrics{instance="h:9100",job="node"}``): the URL
alone is not unique (two jobs may scrape one endpoint with different
labels, each producing its own series) and the labels alone are not either
(relabelling may leave two endpoints the same labels).  Both are what
Prometheus hashes to tell targets apart; the id is a plain string, the same
in every process, for the ring to hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from zkpoll.exceptions import ConfigError
from zkpoll.scrape.relabel import LABEL_NAME, RelabelRule, apply, parse_rules

__all__ = ["JobConfig", "ScrapeTarget", "TargetGroup", "build_target", "build_targets",
           "merge_labels", "parse_duration", "parse_file_sd"]

_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"
                       r"(?:(\d+)ms)?")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_JOB_KEYS = ("job_name", "scheme", "metrics_path", "params", "relabel_configs",
             "metric_relabel_configs", "honor_labels", "scrape_interval", "scrape_timeout")

Labels = tuple[tuple[str, str], ...]


def parse_duration(text: str) -> float:
    """A Prometheus duration (``1h30m``, ``15s``, ``500ms``, ``0``) in seconds."""
    if text == "0":
        return 0
    m = _DURATION.fullmatch(text) if text else None
    if m is None or not any(m.groups()):
        raise ValueError(f"not a valid duration: {text!r}")
    return sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS) if g)


@dataclass(frozen=True)
class TargetGroup:
    """A discovered group: target addresses sharing labels; ``source`` names it."""

    targets: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class JobConfig:
    """The parts of a Prometheus ``scrape_config`` that shape targets and series."""

    job_name: str
    scheme: str = "http"
    metrics_path: str = "/metrics"
    params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    relabel_configs: tuple[RelabelRule, ...] = ()
    metric_relabel_configs: tuple[RelabelRule, ...] = ()
    honor_labels: bool = False
    scrape_interval: str | None = None
    scrape_timeout: str | None = None

    @classmethod
    def from_mapping(cls, raw: Any, where: str = "scrape_config") -> JobConfig:
        """Parse a YAML mapping with Prometheus's keys (a subset: see the fields)."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
        for key in raw:
            if key not in _JOB_KEYS:
                raise ConfigError(f"{where}: {key}: unknown key (expected one of "
                                  f"{', '.join(_JOB_KEYS)})")
        name = raw.get("job_name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: job_name: a non-empty string is required")
        where = f"{where} (job {name!r})"
        kw: dict[str, Any] = {"job_name": name}
        for key in ("scheme", "metrics_path", "scrape_interval", "scrape_timeout"):
            if raw.get(key) is not None:
                if not isinstance(raw[key], str):
                    raise ConfigError(f"{where}: {key}: expected a string")
                kw[key] = raw[key]
        if kw.get("scheme", "http") not in ("http", "https"):
            raise ConfigError(f"{where}: scheme: expected http or https, got {kw['scheme']!r}")
        for key in ("scrape_interval", "scrape_timeout"):
            if key in kw:
                try:
                    parse_duration(kw[key])
                except ValueError as exc:
                    raise ConfigError(f"{where}: {key}: {exc}") from None
        if raw.get("honor_labels") is not None:
            if not isinstance(raw["honor_labels"], bool):
                raise ConfigError(f"{where}: honor_labels: expected true or false")
            kw["honor_labels"] = raw["honor_labels"]
        params = raw.get("params") or {}
        if not isinstance(params, Mapping) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
                for k, v in params.items()):
            raise ConfigError(f"{where}: params: expected a mapping of names to lists of strings")
        kw["params"] = {k: tuple(v) for k, v in params.items()}
        for key in ("relabel_configs", "metric_relabel_configs"):
            kw[key] = parse_rules(raw.get(key), f"{where}: {key}")
        return cls(**kw)


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape.

    ``labels``: the public target labels, sorted (none starts with ``__``);
    ``interval`` / ``timeout``: seconds from ``__scrape_interval__`` /
    ``__scrape_timeout__`` when set, else None (the caller's defaults).
    """

    url: str
    labels: Labels
    id: str
    interval: float | None = None
    timeout: float | None = None


def parse_file_sd(text: str | bytes, path: str, fmt: str | None = None) -> list[TargetGroup]:
    """Parse a file_sd document (``fmt`` "json" or "yaml"; by default from the
    extension of ``path``: ``.json``, ``.yml``, ``.yaml``).  A bad document
    raises ConfigError naming ``path`` and the reason."""
    if fmt is None:
        lower = path.lower()
        fmt = "json" if lower.endswith(".json") else \
            "yaml" if lower.endswith((".yml", ".yaml")) else None
        if fmt is None:
            raise ConfigError(f"{path}: a file_sd file ends in .json, .yml or .yaml")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {fmt.upper()}: {exc}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of target groups, got {type(data).__name__}")
    return [_group(entry, path, i) for i, entry in enumerate(data)]


def _group(entry: Any, path: str, i: int) -> TargetGroup:
    where = f"{path}: group {i}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with 'targets' and 'labels'")
    for key in entry:
        if key not in ("targets", "labels"):
            raise ConfigError(f"{where}: unknown key {key!r} (expected targets, labels)")
    targets = entry.get("targets")
    if not isinstance(targets, list):
        raise ConfigError(f"{where}: 'targets' must be a list of strings")
    for j, t in enumerate(targets):
        if not isinstance(t, str):
            raise ConfigError(f"{where}: targets[{j}]: {t!r} is not a string")
    labels = entry.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise ConfigError(f"{where}: 'labels' must be a mapping of names to strings")
    for name, value in labels.items():
        if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
            raise ConfigError(f"{where}: labels: {name!r} is not a valid label name")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: labels: {name}: {value!r} is not a string")
    return TargetGroup(tuple(targets), {**labels, "__meta_filepath": path}, f"{path}:{i}")


def build_targets(groups: Iterable[TargetGroup],
                  job: JobConfig) -> tuple[list[ScrapeTarget], list[str]]:
    """The targets of ``groups`` for ``job``, and one line per target that could
    not be built (its group, index and reason); dropped targets are in neither."""
    targets: list[ScrapeTarget] = []
    problems: list[str] = []
    for group in groups:
        for i, address in enumerate(group.targets):
            try:
                target = build_target({**group.labels, "__address__": address}, job)
            except ConfigError as exc:
                problems.append(f"{group.source or 'group'} target {i} ({address!r}): {exc}")
                continue
            if target is not None:
                targets.append(target)
    return targets, problems


def build_target(discovered: Mapping[str, str], job: JobConfig) -> ScrapeTarget | None:
    """The target for one discovered label set, None when relabelling drops it.

    Raises ConfigError for a target Prometheus refuses (no address, a bad
    address or duration).
    """
    lset = dict(discovered)
    defaults = {"job": job.job_name, "__scrape_interval__": job.scrape_interval,
                "__scrape_timeout__": job.scrape_timeout,
                "__metrics_path__": job.metrics_path, "__scheme__": job.scheme}
    for name, value in defaults.items():
        if value is not None and not lset.get(name):
            lset[name] = value
    for name, values in job.params.items():
        if values:
            lset["__param_" + name] = values[0]
    out = apply(job.relabel_configs, lset)
    if out is None:
        return None
    address = out.get("__address__", "")
    if not address:
        raise ConfigError("no __address__ label after relabelling")
    if "/" in address:
        raise ConfigError(f"{address!r} is not a valid address (host:port)")
    interval = _duration(out, "__scrape_interval__")
    timeout = _duration(out, "__scrape_timeout__")
    if interval is not None and timeout is not None and timeout > interval:
        raise ConfigError(f"scrape timeout {out['__scrape_timeout__']!r} is greater than "
                          f"the interval {out['__scrape_interval__']!r}")
    for name in [n for n in out if n.startswith("__meta_")]:
        del out[name]
    out.setdefault("instance", address)
    url = _url(out, job.params)
    labels = tuple(sorted((k, v) for k, v in out.items() if not k.startswith("__")))
    return ScrapeTarget(url, labels, url + _selector(labels), interval, timeout)


def _duration(labels: Mapping[str, str], name: str) -> float | None:
    text = labels.get(name)
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if seconds == 0:
        raise ConfigError(f"{name} cannot be 0")
    return seconds


def _url(labels: Mapping[str, str], params: Mapping[str, Sequence[str]]) -> str:
    query = {k: list(v) for k, v in params.items()}
    for name, value in labels.items():
        if name.startswith("__param_"):
            key = name[len("__param_"):]
            if query.get(key):
                query[key][0] = value
            else:
                query[key] = [value]
    path = quote(labels.get("__metrics_path__", ""), safe="$&+,/:;=@")
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{labels.get('__scheme__', '')}://{labels['__address__']}{path}"
    if query:
        url += "?" + urlencode([(k, v) for k in sorted(query) for v in query[k]])
    return url


def _selector(labels: Labels) -> str:
    body = ",".join('{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"')
                                     .replace("\n", "\\n")) for k, v in labels)
    return "{" + body + "}"


def merge_labels(scraped: Iterable[tuple[str, str]], target: Sequence[tuple[str, str]],
                 honor_labels: bool) -> dict[str, str]:
    """The labels of a scraped series once its target's labels are attached.

    As Prometheus's ``mutateSampleLabels``: with ``honor_labels`` a label
    the series has (even with an empty value) wins over the target's;
    without it the target's wins and the series' value moves to
    ``exported_<name>`` (``exported_exported_<name>``... until free; shorter
    names first).  A series label with an empty value is no conflict.
    Empty values are removed from the result.  The result is a new dict,
    ready for ``metric_relabel_configs``.
    """
    out = dict(scraped)
    if honor_labels:
        for name, value in target:
            if name not in out:
                out[name] = value
    else:
        conflicts: list[tuple[str, str]] = []
        for name, value in target:
            old = out.get(name)
            if old:
                conflicts.append((name, old))
            out[name] = value
        conflicts.sort(key=lambda kv: len(kv[0]))
        for name, value in conflicts:
            new = "exported_" + name
            while out.get(new):
                new = "exported_" + new
            out[new] = value
    if "" in out.values():
        out = {k: v for k, v in out.items() if v}
    return out
