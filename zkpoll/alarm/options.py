"""Options of the alarm evaluator (``[alarm]``)."""

from __future__ import annotations

import os

from oslo_config import cfg

from zkpoll.exceptions import ConfigError

__all__ = ["ALARM_OPTS", "definitions_dir", "group_name", "register_opts"]

ALARM_OPTS = [
    cfg.StrOpt("definitions_dir", default="/etc/zkpoll/alarms",
               help="Directory of alarm definition files (*.yaml, *.yml; see "
                    "docs/alarming.md). A relative path is taken from the directory of "
                    "the first --config-file. Reloaded on SIGHUP (validated first)."),
    cfg.StrOpt("partitioning_group_prefix",
               help="Prefix of the evaluator group (<prefix>-alarm; 'alarm' without "
                    "one). Evaluators with different prefixes split different alarm "
                    "directories separately."),
    cfg.StrOpt("prometheus_url",
               help="Base URL of the Prometheus-compatible HTTP API that 'prometheus' "
                    "alarms query, e.g. http://127.0.0.1:9090 (the evaluator calls "
                    "<url>/api/v1/query). Required when any such alarm is defined."),
    cfg.FloatOpt("query_timeout", default=10.0, min=0.1,
                 help="Seconds one query (Prometheus, or an agent's /samples) may take; "
                      "a query that fails or times out counts as no data."),
    cfg.BoolOpt("prometheus_verify", default=True,
                help="Verify the Prometheus server's TLS certificate (https only)."),
    cfg.StrOpt("prometheus_ca_file",
               help="CA bundle for the Prometheus server's certificate (https only)."),
    cfg.ListOpt("sample_endpoints", default=[],
                help="HTTP endpoints ([api] bind) of the polling agents whose latest "
                     "samples 'threshold' alarms read, e.g. http://10.0.0.5:9464. The "
                     "agents serve them on /samples."),
    cfg.FloatOpt("sample_max_age", min=0.0,
                 help="Seconds after which a polled sample no longer counts for a "
                      "'threshold' alarm. Unset: twice the alarm's evaluation_interval."),
    cfg.IntOpt("max_parallel_queries", default=8, min=1,
               help="Queries an evaluator runs at once."),
    cfg.StrOpt("evaluation_log",
               help="File to append one JSON line per alarm evaluation to (alarm, "
                    "cycle, member, result, state, transition sequence): an audit of who "
                    "evaluated what. Unset: none. Not rotated by zkpoll."),
    cfg.StrOpt("spool_dir", default="/var/lib/zkpoll/alarm-spool",
               help="Directory of the durable notification spools (one per webhook "
                    "URL): notifications survive a sink outage and a crash."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the ``[alarm]`` options (idempotent)."""
    conf.register_opts(ALARM_OPTS, group="alarm")


def group_name(conf: cfg.ConfigOpts) -> str:
    """``<prefix>-alarm``, or ``alarm`` without a prefix."""
    prefix = conf.alarm.partitioning_group_prefix
    return f"{prefix}-alarm" if prefix else "alarm"


def definitions_dir(conf: cfg.ConfigOpts) -> str:
    """``[alarm] definitions_dir``, a relative one taken from the first config file's directory."""
    path = conf.alarm.definitions_dir
    if not path:
        raise ConfigError("[alarm] definitions_dir: must not be empty")
    if not os.path.isabs(path) and conf.config_file:
        path = os.path.join(os.path.dirname(os.path.abspath(conf.config_file[0])), path)
    return path
