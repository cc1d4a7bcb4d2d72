"""What ``zkpoll-status`` reports, computed from membership snapshots and a time.

Pure logic: no I/O, no clock.  Members publish in their data (see
``zkpoll.polling.agent``) ``intervals``, ``active_at``/``leave_at`` and
meters per source; their claims records (read on demand, see
:func:`with_claims`) hold the cycles claimed and completed, ``owned`` per
source and ``fenced``.  :func:`build_report` turns snapshots into a
:class:`Report` (:mod:`zkpoll.status.owner` answers "who polls this
resource" for a cycle).

Severity (the exit status of ``zkpoll-status``): CRITICAL for a stale member
(no cycle of a source completed for 2 intervals), a meter overlap between
sub-groups, a group without members or without anyone in the ring, or
members on different ring layouts; WARNING for a fenced member, a ring that
is empty only because everyone is still joining, or members that disagree
on a source's interval.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zkpoll.coordination import Member, Membership
from zkpoll.coordination.member_data import MemberData
from zkpoll.ownership import eligible_members, member_meters, ring_epoch
from zkpoll.service.cycles import cycle_index, source_offset
from zkpoll.status.publishers import publisher_findings

__all__ = ["STALE_CYCLES", "ClockReport", "GroupReport", "MemberReport", "MemberSource", "Overlap",
           "Problem", "Report", "Severity", "SourceReport",
           "build_report", "clock_report", "member_state", "source_intervals", "with_claims"]

#: A member is stale when the last cycle it completed is this many cycles
#: behind the last cycle that should be complete: none completed for 2 intervals.
STALE_CYCLES = 2


class Severity(enum.IntEnum):
    """Health of a report; the value is the exit status."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Problem:
    """One finding, with where it is."""

    severity: Severity
    message: str
    group: str | None = None
    member: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class MemberSource:
    """One member's progress on one source."""

    interval: float
    owned: int | None            #: resources owned in its last completed cycle
    last_cycle: int | None       #: index of its last completed cycle
    behind: int | None           #: cycles missing since then (0: up to date)
    stale: bool


@dataclass(frozen=True)
class MemberReport:
    """One member as published, classified."""

    member_id: str
    host: str | None
    pid: int | None
    version: str | None
    weight: float
    layout: int | None
    state: str                   #: joining, active, leaving, withdrawn or fenced
    session: str                 #: live, "live, fenced" or "live, silent"
    detail: str                  #: why/when, for humans
    active_at: float | None
    leave_at: float | None
    fenced: str | None
    sources: dict[str, MemberSource] = field(default_factory=dict)
    #: clock offset against the backend (s, +: ahead), its error and the bound
    clock: ClockReport | None = None


@dataclass(frozen=True)
class ClockReport:
    """A member's clock offset against the backend, as its claims record says."""

    offset: float
    error: float
    bound: float

    @property
    def worst(self) -> float:
        return abs(self.offset) + self.error

    def describe(self) -> str:
        return f"{self.offset:+.3f}s +/-{self.error:.3f}s (bound {self.bound:.2f}s)"


def clock_report(member: Member) -> ClockReport | None:
    """The clock fields of a member's claims record (None: none, or malformed)."""
    clock = MemberData.value(member.data, MemberData.CLOCK) or {}
    values = [clock.get(k) for k in ("offset", "error", "bound")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return ClockReport(*(float(v) for v in values))


@dataclass(frozen=True)
class SourceReport:
    """A source across the members of the current ring."""

    name: str
    interval: float
    current_cycle: int
    owned: dict[str, int]        #: ring member -> resources owned (as last published)
    total: int
    balance: float | None        #: max/mean of owned/weight; None when nothing is owned


@dataclass(frozen=True)
class GroupReport:
    """One group: its members, sources and current ring."""

    group: str
    namespaces: list[str]
    ring_epoch: str
    ring_members: list[str]
    members: list[MemberReport]
    sources: list[SourceReport]
    severity: Severity = Severity.OK


@dataclass(frozen=True)
class Overlap:
    """Two sub-groups of a namespace polling the same meters."""

    groups: tuple[str, str]
    namespace: str
    meters: list[str]


@dataclass(frozen=True)
class Report:
    """Everything ``zkpoll-status`` shows."""

    time: float
    groups: list[GroupReport]
    overlaps: list[Overlap]
    problems: list[Problem]

    @property
    def severity(self) -> Severity:
        return max((p.severity for p in self.problems), default=Severity.OK)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (severities as lower-case names)."""
        return {"status": str(self.severity), "exit_code": int(self.severity),
                **asdict(self, dict_factory=_plain)}


def _plain(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Severity) else v for k, v in items}


def _num(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def with_claims(membership: Membership,
                claims: Mapping[str, Mapping[str, Any]]) -> Membership:
    """``membership`` with each member's claims record merged into its data
    (``polling_cycle``, ``last_completed_cycle``, ``owned``, ``fenced``, and
    the fields of the agent's report, e.g. ``publishers``)."""
    members = []
    for member in membership.members:
        record = _dict(claims.get(member.member_id))
        extra = {MemberData.POLLING_CYCLE: _dict(record.get("cycles")),
                 MemberData.LAST_COMPLETED_CYCLE: _dict(record.get("completed")),
                 MemberData.OWNED: _dict(record.get("owned")),
                 MemberData.FENCED: record.get("fenced"),
                 MemberData.CLOCK: record.get("clock"),
                 MemberData.HANDOFFS: record.get("handoffs"),
                 **_dict(record.get("report"))}
        members.append(Member(member.member_id, {**member.data, **extra}))
    return Membership(membership.group, tuple(members), membership.version)


def member_state(member: Member, now: float) -> tuple[str, str]:
    """(state, detail): fenced > withdrawn > leaving > joining > active."""
    fields = member.fields
    active_at, leave_at = fields.active_at, fields.leave_at
    if fields.fenced:
        return "fenced", fields.fenced
    if fields.withdrawn:
        return "withdrawn", f"health withdrawal: {fields.withdrawn}"
    if leave_at is not None:
        return "leaving", (f"leaves in {leave_at - now:.1f}s" if leave_at > now
                           else f"left the ring {now - leave_at:.1f}s ago, finishing")
    if active_at is not None and now < active_at:
        return "joining", f"active in {active_at - now:.1f}s"
    return "active", ""


def source_intervals(membership: Membership) -> dict[str, float]:
    """Source -> interval, the most common value the members publish."""
    seen: dict[str, Counter[float]] = {}
    for member in membership.members:
        for name, interval in member.fields.intervals.items():
            if interval > 0:
                seen.setdefault(name, Counter())[interval] += 1
    return {name: counts.most_common(1)[0][0] for name, counts in sorted(seen.items())}


def _progress(member: Member, name: str, interval: float, now: float) -> MemberSource:
    """How far behind ``member`` is on source ``name`` at ``now``."""
    data = member.data
    offset = source_offset(name, interval)
    leave_at = member.fields.leave_at
    at = now if leave_at is None else min(now, leave_at)   # a leaver stops at leave_at
    due = cycle_index(at, interval, offset) - 1             # should be complete by now
    last = _num(_dict(data.get(MemberData.LAST_COMPLETED_CYCLE)).get(name))
    owned = _num(_dict(data.get(MemberData.OWNED)).get(name))
    if last is not None:
        baseline = int(last)
    else:   # none yet: count from the first cycle after it became active
        active_at = member.fields.active_at
        baseline = cycle_index(active_at, interval, offset) if active_at is not None else due
    behind = max(0, due - baseline)
    return MemberSource(interval, None if owned is None else int(owned),
                        None if last is None else int(last), behind, behind >= STALE_CYCLES)


def _member(member: Member, intervals: Mapping[str, float], now: float,
            problems: list[Problem], group: str) -> MemberReport:
    fields = member.fields
    state, detail = member_state(member, now)
    polled = sorted(fields.meters)
    sources = {name: _progress(member, name, intervals[name], now)
               for name in polled if name in intervals}
    where = {"group": group, "member": member.member_id}
    if state in ("fenced", "withdrawn"):
        problems.append(Problem(Severity.WARNING, f"{state}: {detail}", **where))
    clock = clock_report(member)
    if clock is not None and clock.worst > clock.bound / 2:
        beyond = clock.worst > clock.bound
        problems.append(Problem(Severity.WARNING, f"clock offset {clock.describe()} is "
                                + ("beyond the bound: the member fences itself" if beyond
                                   else "above half the bound: fix its time synchronisation"),
                                **where))
    for name, progress in sources.items():
        if progress.stale:
            last = "none" if progress.last_cycle is None else str(progress.last_cycle)
            problems.append(Problem(
                Severity.CRITICAL, f"stale: no cycle completed for {progress.behind} "
                f"intervals of {progress.interval:g}s (last completed cycle {last}); its "
                "resources are not polled until its session expires", source=name, **where))
    silent = bool(sources) and all(s.stale for s in sources.values())
    session = "live, fenced" if state == "fenced" else "live, silent" if silent else "live"
    return MemberReport(
        member.member_id, fields.host, fields.pid, fields.version, member.weight,
        fields.layout, state, session, detail, fields.active_at, fields.leave_at,
        fields.fenced, sources, clock)


def _group(membership: Membership, now: float, problems: list[Problem]) -> GroupReport:
    name = membership.group
    intervals = source_intervals(membership)
    mine: list[Problem] = []
    members = [_member(m, intervals, now, mine, name) for m in membership.members]
    ring = eligible_members(membership, now)
    if not members:
        mine.append(Problem(Severity.CRITICAL, "empty group: no agent is a member, "
                            "nothing is polled", group=name))
    elif not ring:
        joining = any(m.state == "joining" for m in members)
        mine.append(Problem(Severity.WARNING if joining else Severity.CRITICAL,
                            "nobody in the ring yet: every member is still joining"
                            if joining else "nobody in the ring: nothing is polled",
                            group=name))
    for finding in publisher_findings((m.member_id, m.data) for m in membership.members):
        if finding.warning:  # degraded: samples wait in its spool, it still polls
            mine.append(Problem(Severity.WARNING, finding.message, group=name,
                                member=finding.member))
    layouts = {m.layout for m in members if m.layout is not None}
    if len(layouts) > 1:
        mine.append(Problem(Severity.CRITICAL, f"members use different ring layouts "
                            f"{sorted(layouts)}: they disagree on ownership", group=name))
    sources = []
    for source, interval in intervals.items():
        values = {m.fields.intervals.get(source) for m in membership.members}
        if len(values - {None}) > 1:
            mine.append(Problem(Severity.WARNING, "members disagree on the interval "
                                f"{sorted(values - {None})}: cycles do not line up",
                                group=name, source=source))
        owned = {m.member_id: m.sources[source].owned for m in members
                 if m.member_id in ring and source in m.sources}
        counts = {k: v for k, v in owned.items() if v is not None}
        loads = [counts[k] / ring[k] for k in counts]
        mean = sum(loads) / len(loads) if loads else 0.0
        sources.append(SourceReport(
            source, interval, cycle_index(now, interval, source_offset(source, interval)),
            counts, sum(counts.values()), round(max(loads) / mean, 3) if mean else None))
    problems.extend(mine)
    return GroupReport(name, sorted({m.fields.namespace for m in membership.members
                                     if m.fields.namespace}),
                       ring_epoch(membership, now), sorted(ring), members, sources,
                       max((p.severity for p in mine), default=Severity.OK))


def _overlaps(memberships: Sequence[Membership]) -> list[Overlap]:
    found = []
    for a, b in itertools.combinations(sorted(memberships, key=lambda m: m.group), 2):
        spaces = {m.fields.namespace for m in a.members} & \
            {m.fields.namespace for m in b.members}
        for ns in sorted(s for s in spaces if isinstance(s, str)):
            common = member_meters(a, ns) & member_meters(b, ns)
            if common:
                found.append(Overlap((a.group, b.group), ns, sorted(common)))
    return found


def build_report(memberships: Iterable[Membership], now: float,
                 groups: Sequence[str] = ()) -> Report:
    """The report at wall-clock ``now``; ``groups`` limits it to those groups.

    Overlaps are looked for among all the snapshots given, and reported when
    they involve a selected group.
    """
    every = list(memberships)
    known = {m.group for m in every}
    selected = [m for m in every if not groups or m.group in groups]
    problems: list[Problem] = []
    reports = [_group(m, now, problems) for m in sorted(selected, key=lambda m: m.group)]
    for missing in sorted(set(groups) - known):
        problems.append(Problem(Severity.CRITICAL, "no such group: no agent ever joined "
                                "it", group=missing))
    if not every and not groups:
        problems.append(Problem(Severity.CRITICAL, "no groups: no agent is registered"))
    wanted = {m.group for m in selected}
    overlaps = [o for o in _overlaps(every) if set(o.groups) & wanted]
    for o in overlaps:
        problems.append(Problem(
            Severity.CRITICAL, f"meter overlap with group {o.groups[1]} (namespace "
            f"{o.namespace}): {', '.join(o.meters)} polled twice", group=o.groups[0]))
    return Report(now, reports, overlaps, problems)
