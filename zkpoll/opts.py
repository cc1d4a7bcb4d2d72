"""``list_opts()`` for oslo-config-generator (entry point ``oslo.config.opts``).

Every option zkpoll reads is declared in the module that uses it; this
gathers them so ``etc/zkpoll/zkpoll.conf.sample`` can be generated.
Command-line-only options (``--polling-namespaces``, ``--list-plugins`` and
``zkpoll-status``'s) are not configuration-file options and are left out.
"""

from __future__ import annotations

import itertools

from oslo_config import cfg

from zkpoll.alarm import notify_options
from zkpoll.alarm.options import ALARM_OPTS
from zkpoll.cmd._common import LOGGING_OPTS
from zkpoll.cmd.polling import CLI_OPTS
from zkpoll.coordination.loader import OPTS as COORDINATION_OPTS
from zkpoll.endpoint import server as api
from zkpoll.polling import dynamic, options
from zkpoll.publisher import notifier
from zkpoll.service import options as service_options

__all__ = ["list_opts"]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Return (group, options) pairs for every zkpoll option."""
    return [
        ("DEFAULT", list(itertools.chain(
            service_options.DEFAULT_OPTS, LOGGING_OPTS,
            [o for o in CLI_OPTS if o.dest == "debug"]))),
        ("coordination", list(itertools.chain(COORDINATION_OPTS,
                                              service_options.AGENT_COORDINATION_OPTS))),
        ("polling", list(itertools.chain(options.POLLING_OPTS, dynamic.OPTS))),
        ("publisher", list(itertools.chain(options.PUBLISHER_OPTS, notifier.OPTS))),
        ("compute", list(options.COMPUTE_OPTS)),
        ("api", list(api.OPTS)),
        ("alarm", list(itertools.chain(ALARM_OPTS, notify_options.OPTS))),
    ]
