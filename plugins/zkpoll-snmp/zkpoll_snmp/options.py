"""The ``[snmp]`` options of the SNMP plugin (docs in README.md)."""

from __future__ import annotations

from typing import Any

from oslo_config import cfg

__all__ = ["OPTS", "list_opts", "snmp_options"]

OPTS = [
    cfg.StrOpt("profiles_file",
               help="YAML or JSON file of credential profiles: a mapping of profile name to "
                    "{version: 2c, community: ...} or {version: 3, user: ..., auth_protocol: "
                    "SHA, auth_password: ..., priv_protocol: AES, priv_password: ...}. A "
                    "device names its profile (snmp://HOST?profile=NAME, or 'profile' in a "
                    "device file). Unset: only the built-in profile 'public' (SNMPv2c, "
                    "community 'public', Ceilometer's default) exists."),
    cfg.StrOpt("default_profile", default="public",
               help="Profile of a device that names none and carries no credentials in "
                    "its URL."),
    cfg.FloatOpt("timeout", default=1.0, min=0.05,
                 help="Seconds to wait for each SNMP answer before a retry."),
    cfg.IntOpt("retries", default=1, min=0,
               help="Retries of an unanswered request. A device that never answers costs "
                    "timeout * (retries + 1) seconds per round trip, and is 'unreachable "
                    "from here' (another member may try it, see [polling] failover_hops)."),
    cfg.IntOpt("max_repetitions", default=25, min=1, max=200,
               help="GETBULK max-repetitions: table rows asked per round trip."),
    cfg.IntOpt("concurrency", default=32, min=1, max=512,
               help="Devices polled at once by one agent (threads; Net-SNMP releases the "
                    "GIL while it waits)."),
    cfg.ListOpt("definitions_dirs", default=["/etc/zkpoll/snmp.d"],
                help="Directories of generic SNMP meter definitions (*.yaml, *.yml): "
                     "each a list of {name, type, unit, oid, ...} (README.md, 'Generic "
                     "meters'). A missing directory is skipped."),
]


def snmp_options(conf: Any) -> Any:
    """Register ``[snmp]`` on an oslo.config ``conf`` and return the group.

    Without a ConfigOpts (a test's plain object), return its ``snmp``
    attribute or the defaults.
    """
    if isinstance(conf, cfg.ConfigOpts):
        conf.register_opts(OPTS, group="snmp")
        return conf.snmp
    group = getattr(conf, "snmp", None)
    if group is not None:
        return group
    return _Defaults()


class _Defaults:
    def __getattr__(self, name: str) -> Any:
        for opt in OPTS:
            if opt.dest == name:
                return opt.default
        raise AttributeError(name)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """For oslo-config-generator (entry point ``oslo.config.opts``)."""
    return [("snmp", OPTS)]
