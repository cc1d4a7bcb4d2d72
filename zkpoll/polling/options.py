"""Options of the polling agent, and where its polling YAML comes from."""

from __future__ import annotations

import logging
import os

from oslo_config import cfg

from zkpoll.coordination.base import Coordinator
from zkpoll.endpoint import server as api
from zkpoll.exceptions import ConfigError
from zkpoll.polling.sources import PollingConfig, load_polling_config
from zkpoll.publisher import spool_options
from zkpoll.service.options import AGENT_COORDINATION_OPTS, DEFAULT_OPTS

__all__ = [
    "COMPUTE_OPTS",
    "DEFAULT_POLLING_FILE",
    "POLLING_OPTS",
    "PUBLISHER_OPTS",
    "failover_hops",
    "load_sources",
    "register_opts",
]

LOG = logging.getLogger(__name__)

DEFAULT_POLLING_FILE = os.path.join(os.path.dirname(__file__), "default_polling.yaml")

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
    cfg.IntOpt("failover_hops", min=0, max=8,
               sample_default="1 on ZooKeeper and Redis, 0 on backends without handoff "
                              "inboxes (Memcached, standalone)",
               help="Per-resource failover: when the member that owns a resource "
                    "cannot reach it (connection refused, connect timeout, no route: "
                    "the pollster says Unreachable), it hands the resource to the next "
                    "member of its ring, which polls it in the same cycle; up to this "
                    "many members are tried after the owner, and the last one "
                    "publishes the unreachable sample once. 0 turns it off. Unset: 1 "
                    "where the coordination backend has handoff inboxes (ZooKeeper, "
                    "Redis), 0 elsewhere; set above 0 on a backend without them, the agent "
                    "refuses to start (docs/design.md, Per-resource failover)."),
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

def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every agent option on ``conf``."""
    conf.register_opts(DEFAULT_OPTS)
    conf.register_opts(POLLING_OPTS, group="polling")
    conf.register_opts(PUBLISHER_OPTS, group="publisher")
    conf.register_opts(COMPUTE_OPTS, group="compute")
    conf.register_opts(AGENT_COORDINATION_OPTS, group="coordination")
    conf.register_opts(api.OPTS, group="api")


def failover_hops(conf: cfg.ConfigOpts, coordinator: Coordinator) -> int:
    """``[polling] failover_hops`` for this backend (see the option's help).

    :raises ConfigError: set above 0 on a backend without handoff inboxes
    """
    hops: int | None = conf.polling.failover_hops
    supported = coordinator.supports_handoffs
    if hops is None:
        return 1 if supported else 0
    if hops > 0 and not supported:
        raise ConfigError(f"[polling] failover_hops = {hops}: the coordination backend "
                          f"({type(coordinator).__name__}) has no handoff inboxes, so "
                          "per-resource failover cannot be exactly once there; set it to "
                          "0 or use ZooKeeper")
    return hops


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
