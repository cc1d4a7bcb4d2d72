"""``zkpoll-status forget GROUP``: remove a retired group (no live member) from the backend."""

from __future__ import annotations

from oslo_config import cfg

from zkpoll.cmd._common import die
from zkpoll.coordination.admin import GroupNotEmpty, GroupNotFound, forget_group
from zkpoll.coordination.url import parse_backend_url, redact
from zkpoll.exceptions import CoordinationError, CoordinatorUnreachable

__all__ = ["forget"]


def forget(prog: str, conf: cfg.ConfigOpts, url: str | None) -> int:
    """Remove an empty group; 0 done, 2 refused (one line on stderr says why)."""
    group = conf.argument
    if not url:
        return die(prog, "forget: no [coordination] backend_url in "
                   f"{', '.join(conf.config_file) or 'the configuration'}: standalone "
                   "agents have no group to forget")
    parsed = parse_backend_url(url)
    try:
        forget_group(parsed, conf.coordination, group, conf.timeout)
    except (GroupNotEmpty, GroupNotFound) as exc:
        return die(prog, f"forget: {exc}")
    except CoordinatorUnreachable as exc:
        return die(prog, f"forget: coordination backend {redact(url)} unreachable: {exc}")
    except CoordinationError as exc:
        return die(prog, f"forget: coordination backend {redact(url)}: {exc}")
    print(f"forgot group {group} (no live member) in {redact(url)}")
    return 0
