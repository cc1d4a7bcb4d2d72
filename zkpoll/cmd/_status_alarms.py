"""``zkpoll-status alarms``: read the evaluator group and the alarm states, print them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from oslo_config import cfg

from zkpoll.alarm import options as alarm_options
from zkpoll.alarm.definitions import load_alarm_dir
from zkpoll.alarm.notify_options import register_opts as register_notify_opts
from zkpoll.alarm.store import AlarmStore
from zkpoll.coordination import Coordinator
from zkpoll.exceptions import ConfigError, CoordinatorUnreachable
from zkpoll.status import Problem, Severity, with_claims
from zkpoll.status.alarms import alarm_rows

__all__ = ["alarms_command", "register_opts"]

Emit = Callable[[cfg.ConfigOpts, dict[str, Any], list[str], int], int]
Table = Callable[[Sequence[str], Sequence[Sequence[Any]]], list[str]]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """The evaluator's options, so its configuration files are accepted and read."""
    alarm_options.register_opts(conf)
    register_notify_opts(conf)


def _clock(t: float | None) -> str | None:
    return None if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def alarms_command(conf: cfg.ConfigOpts, coordinator: Coordinator, emit: Emit,
                   table: Table) -> int:
    """Print the evaluators and every alarm; return the exit status."""
    try:
        coordinator.start(timeout=conf.timeout)
    except CoordinatorUnreachable as exc:
        raise CoordinatorUnreachable(f"no answer within {conf.timeout:g}s") from exc
    group = conf.group[0] if conf.group else alarm_options.group_name(conf)
    membership = coordinator.get_members(group, timeout=conf.timeout)
    membership = with_claims(membership, coordinator.read_claims(
        group, membership.member_ids, timeout=conf.timeout))
    stored = AlarmStore(coordinator, group, timeout=conf.timeout).all_states()
    problems: list[Problem] = []
    try:
        definitions = load_alarm_dir(alarm_options.definitions_dir(conf)).by_id()
        note = None
    except ConfigError as exc:
        definitions, note = {}, f"definitions not read ({exc}): intervals and owners unknown"
    now = time.time()
    rows, late = alarm_rows({k: v.state for k, v in stored.items() if not v.broken},
                            definitions, membership, now)
    problems += late
    problems += [Problem(Severity.WARNING, f"alarm {k}: stored state cannot be decoded",
                         group=group) for k, v in stored.items() if v.broken]
    if definitions and not membership.members:
        problems.append(Problem(Severity.CRITICAL, f"no evaluator in group {group}: "
                                f"{len(definitions)} alarm(s) are not evaluated", group=group))
    severity = max((p.severity for p in problems), default=Severity.OK)
    doc = {"group": group, "time": now, "status": str(severity), "exit_code": int(severity),
           "evaluators": [{"member_id": m.member_id, "host": m.fields.host,
                           "active_at": m.fields.active_at,
                           "leave_at": m.fields.leave_at,
                           "fenced": m.fields.fenced} for m in membership.members],
           "alarms": [r.to_dict() for r in rows],
           "problems": [asdict(p) for p in problems], "note": note}
    title = (f"{str(severity).upper()}: group {group}: {len(membership.members)} "
             f"evaluator(s), {len(rows)} alarm(s) at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    lines = [title]
    if note:
        lines.append(f"  note: {note}")
    if membership.members:
        lines += table(("EVALUATOR", "HOST", "FENCED"),
                       [(m.member_id, m.fields.host, m.fields.fenced or "")
                        for m in membership.members])
    if rows:
        lines += [""] + table(
            ("ALARM", "STATE", "SEQ", "LAST TRANSITION", "AT", "CYCLE", "EVALUATED",
             "BY", "OWNER NOW", ""),
            [(r.alarm_id, r.state or "never evaluated", r.seq, r.last_transition,
              _clock(r.transition_at), r.cycle, _clock(r.evaluated_at), r.evaluated_by,
              r.owner, "LATE" if r.stale else "") for r in rows])
    if problems:
        lines += ["", "problems:"] + table(("SEVERITY", "PROBLEM"),
                                           [(str(p.severity).upper(), p.message)
                                            for p in problems])
    return emit(conf, doc, lines, int(severity))
