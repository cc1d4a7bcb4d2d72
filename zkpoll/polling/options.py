"""Options of the polling agent, and where its polling YAML comes from."""

from __future__ import annotations

import logging
import os
import socket

from oslo_config import cfg

from zkpoll.endpoint import server as api
from zkpoll.exceptions import ConfigError
from zkpoll.polling.sources import PollingConfig, load_polling_config
from zkpoll.publisher import spool_options

__all__ = [
    "AGENT_COORDINATION_OPTS",
    "COMPUTE_OPTS",
    "DEFAULT_OPTS",
    "DEFAULT_POLLING_FILE",
    "POLLING_OPTS",
    "PUBLISHER_OPTS",
    "check_timing",
    "load_sources",
    "register_opts",
]

LOG = logging.getLogger(__name__)

DEFAULT_POLLING_FILE = os.path.join(os.path.dirname(__file__), "default_polling.yaml")

DEFAULT_OPTS = [
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host: the resource id of the host pollsters."),
]

POLLING_OPTS = [
    cfg.StrOpt("cfg_file", default="polling.yaml",
               help="Polling definition (Ceilometer polling.yaml format). A relative "
                    "name is looked up in the directories of the config files and "
                    "the usual oslo.config locations; when the default name is found "
                    "nowhere, a built-in definition polls this host every 10 s."),
    cfg.StrOpt("partitioning_group_prefix",
               help="Prefix of the groups this agent joins (<prefix>-<namespace>). "
                    "Agents with different prefixes split work separately and must "
                    "poll disjoint meters."),
    cfg.IntOpt("batch_size", default=500, min=1,
               help="Samples handed to a publisher in one call."),
    cfg.FloatOpt("pollster_timeout", default=60.0, min=0.1,
                 help="Seconds a pollster may take in one cycle (capped at the "
                      "source's interval). Past it the pollster's samples for that "
                      "cycle are lost, the timeout is logged and counted, and the "
                      "pollster is skipped while it is still running."),
    cfg.BoolOpt("overlap_fatal", default=False,
                help="Refuse to poll a meter that agents of another sub-group "
                     "(another partitioning_group_prefix) of the same namespace also "
                     "poll. Either way the overlap is logged at start and whenever "
                     "membership changes."),
    cfg.IntOpt("withdraw_after", default=3, min=0,
               help="Health-aware withdrawal: after this many consecutive cycles in "
                    "which every publisher failed, or cycles overran their interval, a "
                    "partitioned agent hands its work over exactly as on SIGTERM, keeps "
                    "running, probes, and rejoins when healthy (http publishers are "
                    "probed; otherwise it rejoins after this many of its longest "
                    "intervals). It never withdraws as the last active member. 0 "
                    "disables it."),
    cfg.IntOpt("max_parallel_pollsters", default=8, min=1, max=256,
               help="Pollsters run at once, across all sources."),
    cfg.StrOpt("lock_dir", sample_default="/run/zkpoll if writable, else $XDG_RUNTIME_DIR, "
                                          "else the temporary directory",
               help="Directory of the lock files that keep a second standalone agent "
                    "(no [coordination] backend_url) from running the same configuration "
                    "(same config files, polling YAML and namespace): it exits with status "
                    "2 naming the first agent's pid and the lock file. Unset: /run/zkpoll "
                    "if writable, else $XDG_RUNTIME_DIR, else the temporary directory."),
]

PUBLISHER_OPTS = [
    cfg.ListOpt("default_publishers", default=["file:zkpoll-samples.jsonl", "log://"],
                help="Publisher URLs for sources that name none: file:PATH or "
                     "file:///abs/path (JSON lines), http(s)://HOST/PATH (JSON POST), "
                     "prometheus+remote-write[+https]://HOST:PORT/api/v1/write, "
                     "udp://HOST:PORT, log://, null://. Network publishers (http, "
                     "https, prometheus+remote-write, ...) deliver through a durable "
                     "spool (spool_* options); see docs/publishers.md."),
    *spool_options.OPTS,
]

COMPUTE_OPTS = [
    cfg.BoolOpt("workload_partitioning", default=False,
                help="Split the compute namespace's discovered resources between "
                     "compute agents through the compute group. Off: each compute "
                     "agent polls its own host and joins no group."),
]

AGENT_COORDINATION_OPTS = [
    cfg.FloatOpt("settle_time", default=5.0, min=0.0,
                 help="Seconds between an agent announcing that it joins or leaves "
                      "and that taking effect, so all agents switch rings at the "
                      "same cycle. Must exceed the worst membership watch delay plus "
                      "the clock skew between agents (keep them on NTP)."),
    cfg.FloatOpt("fence_margin", default=0.25, min=0.05, max=0.9,
                 help="Fraction of the session timeout kept as a safety margin: an "
                      "agent stops polling partitioned work once it has not heard "
                      "from the backend for (1 - fence_margin) x session_timeout."),
    cfg.StrOpt("on_backend_loss", default="fence", choices=[
        ("fence", "stop polling partitioned work: gaps, never duplicates"),
        ("keep_last_ring", ("keep polling the last slice: no gaps if the whole backend "
                            "is down, duplicates if only this agent was cut off"))],
               help="What an agent does once it has lost contact with the coordination "
                    "backend for longer than its lease. It cannot tell a dead ensemble "
                    "from its own network partition, so choose the failure you prefer. "
                    "With keep_last_ring, agents that reconnect at different times "
                    "overlap for the cycles in between: keep max_retry_interval short."),
    cfg.FloatOpt("weight", default=1.0, min=0.01,
                 help="This agent's share of the work relative to the others."),
    cfg.FloatOpt("start_timeout", default=10.0, min=0.0,
                 help="Seconds to wait for the backend at start before logging an "
                      "error; the agent keeps retrying either way."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every agent option on ``conf``."""
    conf.register_opts(DEFAULT_OPTS)
    conf.register_opts(POLLING_OPTS, group="polling")
    conf.register_opts(PUBLISHER_OPTS, group="publisher")
    conf.register_opts(COMPUTE_OPTS, group="compute")
    conf.register_opts(AGENT_COORDINATION_OPTS, group="coordination")
    conf.register_opts(api.OPTS, group="api")


def check_timing(settle_time: float, heartbeat: float, session_timeout: float) -> None:
    """Refuse timings that make partitioning unsafe or always fenced."""
    if heartbeat * 3 > session_timeout:
        raise ConfigError(
            f"[coordination] heartbeat_interval ({heartbeat:g}s) must be at most a third "
            f"of the session timeout ({session_timeout:g}s), or the lease runs out "
            "between two heartbeats")
    if settle_time <= 2 * heartbeat:
        raise ConfigError(
            f"[coordination] settle_time ({settle_time:g}s) must exceed twice "
            f"heartbeat_interval ({heartbeat:g}s): an agent trusts its view of the group "
            "only for settle_time after the last answered heartbeat")


def load_sources(conf: cfg.ConfigOpts) -> PollingConfig:
    """Load ``[polling] cfg_file``, or the built-in default when it is not found."""
    name = conf.polling.cfg_file
    path = name if os.path.isabs(name) or os.path.isfile(name) else conf.find_file(name)
    if path is None:
        if name != "polling.yaml":
            raise ConfigError(f"[polling] cfg_file: {name!r} not found (looked in the "
                              "config file directories and the working directory)")
        LOG.info("no polling.yaml found: using the built-in definition (%s)",
                 DEFAULT_POLLING_FILE)
        path = DEFAULT_POLLING_FILE
    polling = load_polling_config(path)
    LOG.info("polling definition %s: %d source(s): %s", os.path.abspath(path),
             len(polling.sources), ", ".join(s.name for s in polling.sources))
    return polling
