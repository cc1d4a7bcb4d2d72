"""``zkpoll-status``: health of the polling groups, and who polls a resource.

    zkpoll-status [--config-file zkpoll.conf] [--format table|json] [--group G ...]
    zkpoll-status [--config-file zkpoll.conf] owner RESOURCE_ID [--source NAME] [--group G]
    zkpoll-status [--config-file zkpoll.conf] forget GROUP
    zkpoll-status [--config-file zkpoll.conf] alarms [--group G]

It reads the agents' ``[coordination] backend_url`` and only what the
members publish; it never runs discoveries.  Exit status: 0 healthy,
1 warning, 2 critical (:mod:`zkpoll.status`); an unreachable backend is one
line on stderr and 2.  Without ``backend_url`` (standalone agents) there is
nothing to inspect: it says so and exits 1, so a monitoring check pointed
at the wrong configuration never reads as healthy.  ``owner`` exits 0 when
the resource has an owner in the cycle in flight, 2 when nobody would poll it.
``forget`` removes a retired group (one with no live member) from the
backend: 0 done, 2 refused (live members, no such group, unreachable).
``alarms`` (with an evaluator's configuration) lists the evaluators and
every alarm: its stored state, last transition, last evaluation and who
owns it in the cycle in flight; 1 when an alarm is evaluated late, 2 when
alarms are defined and no evaluator is a member.
A configuration error is one line and exit status 2.

Its options (``--format``, ``--group``, ``--source``, ``--timeout``) are
command-line only: the configuration files are the agents'.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from oslo_config import cfg

from zkpoll.cmd._common import check_all_options, die, parse_command_line
from zkpoll.cmd._config_files import check_config_files
from zkpoll.cmd._status_alarms import alarms_command
from zkpoll.cmd._status_alarms import register_opts as register_alarm_opts
from zkpoll.cmd._status_forget import forget
from zkpoll.coordination import Coordinator, Membership, get_coordinator, make_member_id
from zkpoll.coordination import register_opts as register_coordination_opts
from zkpoll.coordination.url import parse_backend_url, redact
from zkpoll.exceptions import ConfigError, CoordinatorUnreachable, ZkpollError
from zkpoll.status import (
    OwnerReport,
    Problem,
    Report,
    Severity,
    build_report,
    find_owner,
    source_intervals,
    with_claims,
)
from zkpoll.version import __version__

__all__ = ["OPTS", "load", "main"]

PROG = "zkpoll-status"

#: The commands and the argument each takes (no command: the health report).
COMMANDS = {"owner": "RESOURCE_ID", "forget": "GROUP", "alarms": ""}

#: zkpoll-status's own options (command line only; files hold the agents' options).
OPTS = [
    cfg.StrOpt("format", default="table", choices=[
        ("table", "aligned columns for people"), ("json", "one JSON document for scripts")],
               help="Output format of zkpoll-status."),
    cfg.MultiStrOpt("group", default=[],
                    help="Report only this group (repeatable; default: every group). With "
                         "'owner', the group to look the resource up in."),
    cfg.StrOpt("source",
               help="With 'owner': the source whose cycles to use (default: every source "
                    "of the group)."),
    cfg.FloatOpt("timeout", default=10.0, min=0.1,
                 help="Seconds zkpoll-status waits for the coordination backend before "
                      "reporting it unreachable (exit status 2)."),
]

_ARGS = [
    cfg.BoolOpt("debug", default=False, help="Log the backend client's messages."),
    cfg.StrOpt("command", positional=True, required=False, metavar="{owner,forget,alarms}",
               help="'owner RESOURCE_ID': show which member polls RESOURCE_ID now, next "
                    "cycle, and after its owner's death. 'forget GROUP': remove a retired "
                    "group (no live member) from the backend. 'alarms': the alarm "
                    "evaluators and every alarm's state. Without a command: the "
                    "health report."),
    cfg.StrOpt("argument", positional=True, required=False, metavar="RESOURCE_ID|GROUP",
               help="The resource id (owner) or the group (forget)."),
]


def _parse(argv: Sequence[str] | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(OPTS + _ARGS)
    register_coordination_opts(conf)
    register_alarm_opts(conf)
    parse_command_line(conf, list(sys.argv[1:] if argv is None else argv), project="zkpoll",
                       prog=PROG, version=__version__)
    check_all_options(conf)
    check_config_files(conf)
    command, argument = conf.command, conf.argument
    if command is not None and command not in COMMANDS:
        raise ConfigError(f"unknown command {command!r}; commands: "
                          + ", ".join(f"{c} {a}".rstrip() for c, a in COMMANDS.items())
                          + " (none: the health report)")
    if command is not None and COMMANDS[command] and not argument:
        raise ConfigError(f"{command}: give the {COMMANDS[command]}")
    if command is not None and not COMMANDS[command] and argument:
        raise ConfigError(f"{command}: takes no argument (got {argument!r})")
    return conf


def _quiet_logging(debug: bool) -> None:
    """stdout is the report; backend clients' chatter would break the one-line rule."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.CRITICAL, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _stop_soon(coordinator: Coordinator, timeout: float = 2.0) -> None:
    """Stop the coordinator, not waiting longer than ``timeout`` (a retry may be asleep)."""
    thread = threading.Thread(target=coordinator.stop, name="zkpoll-status-stop", daemon=True)
    thread.start()
    thread.join(timeout)


def _read(coordinator: Coordinator, conf: cfg.ConfigOpts) -> list[Membership]:
    """Every group as the backend holds it now (all of them: overlaps need the others)."""
    deadline = time.monotonic() + conf.timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    try:
        try:
            coordinator.start(timeout=conf.timeout)
        except CoordinatorUnreachable as exc:
            raise CoordinatorUnreachable(f"no answer within {conf.timeout:g}s") from exc
        groups = coordinator.get_groups(timeout=left())
        memberships = [coordinator.get_members(group, timeout=left()) for group in groups]
        return [with_claims(m, coordinator.read_claims(m.group, m.member_ids, timeout=left()))
                for m in memberships]
    finally:
        _stop_soon(coordinator)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report (or an owner lookup); return the exit status."""
    try:
        return _main(argv)
    except (ZkpollError, cfg.Error) as exc:  # a configuration error found late: still one line
        return die(PROG, str(exc))
    except KeyboardInterrupt:
        return die(PROG, "interrupted", 130)
    except SystemExit as exc:  # argparse/oslo.config said why on stderr; 1 would read "warning"
        return 0 if exc.code in (0, None) else 2


def load(argv: Sequence[str] | None) -> tuple[cfg.ConfigOpts, Coordinator | None]:
    """Parse and check the command line and files; build (not start) the coordinator.

    None without ``backend_url``.  :raises ZkpollError: any configuration problem.
    """
    try:
        conf = _parse(argv)
        url = conf.coordination.backend_url
        if url and conf.command == "forget":
            parse_backend_url(url)
            return conf, None
        return conf, (get_coordinator(conf, make_member_id("zkpoll-status")) if url else None)
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from exc


def _main(argv: Sequence[str] | None) -> int:
    try:
        conf, coordinator = load(argv)
    except ZkpollError as exc:
        return die(PROG, str(exc))
    _quiet_logging(conf.debug)
    url = conf.coordination.backend_url
    if conf.command == "forget":
        return forget(PROG, conf, url)
    if coordinator is None:
        problem = Problem(Severity.WARNING, "standalone: no [coordination] backend_url in "
                          f"{', '.join(conf.config_file) or 'the configuration'}; every agent "
                          "polls everything on its own and there is no group to inspect")
        report = Report(time.time(), [], [], [problem])
        return _emit(conf, _report_doc(report, None), _render_report(report, None),
                     report.severity)
    if conf.command == "alarms":
        try:
            return alarms_command(conf, coordinator, _emit, table)
        except ZkpollError as exc:
            return _unreachable(conf, url, str(exc))
        except Exception as exc:  # noqa: BLE001  any client failure is "unreachable"
            return _unreachable(conf, url, f"{type(exc).__name__}: {exc}")
        finally:
            _stop_soon(coordinator)
    try:
        memberships = _read(coordinator, conf)
    except ZkpollError as exc:
        return _unreachable(conf, url, str(exc))
    except Exception as exc:  # noqa: BLE001  any client failure is "unreachable", no traceback
        return _unreachable(conf, url, f"{type(exc).__name__}: {exc}")
    now = time.time()
    if conf.command == "owner":
        return _owner(conf, memberships, now)
    report = build_report(memberships, now, conf.group)
    return _emit(conf, _report_doc(report, url), _render_report(report, url), report.severity)


def _unreachable(conf: cfg.ConfigOpts, url: str, message: str) -> int:
    """One line on stderr (and a JSON document on stdout with --format json); 2."""
    line = f"CRITICAL: coordination backend {redact(url)} unreachable: {message}"
    if conf.format == "json":
        print(json.dumps({"status": "critical", "exit_code": 2, "backend": redact(url),
                          "error": line}))
    print(f"{PROG}: {line}", file=sys.stderr)
    return int(Severity.CRITICAL)


def _emit(conf: cfg.ConfigOpts, doc: dict[str, Any], lines: list[str], code: int) -> int:
    print(json.dumps(doc, indent=2) if conf.format == "json" else "\n".join(lines))
    return int(code)


def _report_doc(report: Report, url: str | None) -> dict[str, Any]:
    return {"backend": redact(url) if url else None, **report.to_dict()}


# --- tables ---------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; None shows as '-'; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _render_report(report: Report, url: str | None) -> list[str]:
    counts = {s: sum(p.severity is s for p in report.problems) for s in Severity}
    lines = [f"{str(report.severity).upper()}: {counts[Severity.CRITICAL]} critical, "
             f"{counts[Severity.WARNING]} warning(s); {len(report.groups)} group(s) at "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(report.time))}"
             + (f" from {redact(url)}" if url else "")]
    for g in report.groups:
        lines += ["", (f"group {g.group}: namespace {', '.join(g.namespaces) or '-'}, ring "
                       f"{g.ring_epoch} with {len(g.ring_members)} of {len(g.members)} "
                       f"member(s): {g.severity}")]
        lines += table(("MEMBER", "HOST", "PID", "VERSION", "WEIGHT", "STATE", "SESSION",
                        "CLOCK", "DETAIL"),
                       [(m.member_id, m.host, m.pid, m.version, f"{m.weight:g}", m.state,
                         m.session, m.clock and f"{m.clock.offset:+.3f}s", m.detail)
                        for m in g.members]) if g.members else []
        if g.sources:
            lines += table(("SOURCE", "INTERVAL", "CYCLE", "OWNED", "BALANCE"),
                           [(s.name, f"{s.interval:g}s", s.current_cycle, s.total,
                             None if s.balance is None else f"{s.balance:.2f}")
                            for s in g.sources])
            lines += table(("SOURCE", "MEMBER", "OWNED", "LAST CYCLE", "BEHIND", ""),
                           [(name, m.member_id, p.owned, p.last_cycle, p.behind,
                             "STALE" if p.stale else "")
                            for m in g.members for name, p in m.sources.items()])
    if report.overlaps:
        lines += ["", "meter overlaps (polled twice):"]
        lines += table(("GROUPS", "NAMESPACE", "METERS"),
                       [(" + ".join(o.groups), o.namespace, ", ".join(o.meters))
                        for o in report.overlaps])
    if report.problems:
        lines += ["", "problems:"]
        lines += table(("SEVERITY", "GROUP", "MEMBER", "SOURCE", "PROBLEM"),
                       [(str(p.severity).upper(), p.group, p.member, p.source, p.message)
                        for p in report.problems])
    return lines


# --- owner ----------------------------------------------------------------------
def _owner(conf: cfg.ConfigOpts, memberships: list[Membership], now: float) -> int:
    rows: list[OwnerReport] = []
    for membership in memberships:
        if conf.group and membership.group not in conf.group:
            continue
        intervals = source_intervals(membership)
        for source in [conf.source] if conf.source else list(intervals):
            if source in intervals:
                rows.append(find_owner(membership, conf.argument, source,
                                       intervals[source], now))
    if not rows:
        where = f"group {', '.join(conf.group)}" if conf.group else "any group"
        what = f"source {conf.source!r}" if conf.source else "any source"
        return die(PROG, f"no member of {where} polls {what}", 2)
    code = Severity.OK if all(r.owner for r in rows) else Severity.CRITICAL
    doc = {"resource": conf.argument, "time": now, "status": str(code), "exit_code": int(code),
           "owners": [asdict(r) for r in rows]}
    title = (f"resource {conf.argument} at {_clock(now)} (polled only where a discovery or "
             "the source's resources list it):")
    lines = [title]
    lines += table(("GROUP", "SOURCE", "CYCLE", "START", "OWNER", "NEXT START", "NEXT OWNER",
                    "IF OWNER DIES"),
                   [(r.group, r.source, r.cycle, _clock(r.cycle_start), r.owner or "NOBODY",
                     _clock(r.next_start), r.next_owner or "NOBODY", r.successor)
                    for r in rows])
    lines += table(("GROUP", "SOURCE", "LAST CYCLE", "POLLED BY", "HOW"),
                   [(r.group, r.source, r.last_cycle, r.last_polled_by or "NOBODY", r.last_how)
                    for r in rows])
    return _emit(conf, doc, lines, code)


if __name__ == "__main__":
    sys.exit(main())
