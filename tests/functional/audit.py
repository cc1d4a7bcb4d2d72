"""What service processes recorded, and the audit of it: every key done exactly
once in every cycle.  Used by :mod:`tests.functional.fleet` and by the tests
that read the output of agents they start themselves.

- :class:`Collector` reads the processes' JSON-lines outputs incrementally
  into records, one per line, through a parse function of the service
  (``agents.parse_poll``, ``alarm_fleet.parse_evaluation``).  A record has a
  :class:`Record`'s fields: the key (a resource, an alarm), the cycle it
  belongs to, the member and the process that did it, when, and whether it
  counts as done (a poll always; an evaluation when its state was written).
- :func:`audit_cycles` gives one :class:`CycleAudit` per cycle: the keys
  not done (gaps), the keys recorded twice or more (duplicates), done twice
  or more, and done wrongly (a service's ``check``).
- :func:`rule`, :func:`require`, :func:`always_right` and
  :func:`exactly_once` turn audits into failure messages.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar


def clock(t: float) -> str:
    """``HH:MM:SS.mmm`` local time, the format of the services' log timestamps."""
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


class Output(Protocol):
    """A process whose output a :class:`Collector` reads (a ``ServiceProcess``)."""

    @property
    def name(self) -> str: ...
    @property
    def output(self) -> Path: ...


class Record(Protocol):
    """What the audit needs of one line of a service's output."""

    @property
    def key(self) -> str: ...        # the resource or alarm
    @property
    def cycle_at(self) -> float: ...  # the start of the cycle it belongs to (epoch s)
    @property
    def member(self) -> str: ...      # the membership session that did it
    @property
    def at(self) -> float: ...        # wall-clock time it was done
    @property
    def agent(self) -> str: ...       # the ServiceProcess whose file holds it
    @property
    def done(self) -> bool: ...       # counts as the key's work for its cycle


R = TypeVar("R", bound=Record)


class Collector(Generic[R]):
    """Reads the outputs of processes incrementally (add processes as they start).

    Only complete lines are consumed, so a line being written is read at the
    next :meth:`refresh`; reading stays cheap however long a test runs.
    ``parse(line, process name)`` makes a record of a decoded line, or None
    for a line the audit does not concern.
    """

    def __init__(self, parse: Callable[[dict[str, Any], str], R | None],
                 processes: Iterable[Output] = ()) -> None:
        self._parse = parse
        self._offsets: dict[str, tuple[Path, int]] = {}
        self._records: list[R] = []
        for process in processes:
            self.add(process)

    def add(self, process: Output) -> None:
        self._offsets.setdefault(process.name, (process.output, 0))

    def refresh(self) -> list[R]:
        """Every record read so far (a new list; read new lines first)."""
        for name, (path, offset) in list(self._offsets.items()):
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                record = self._parse(json.loads(line), name)
                if record is not None:
                    self._records.append(record)
            self._offsets[name] = (path, offset + end)
        return list(self._records)


def first_cycle_done_by_all(records: Sequence[Record], agents: Iterable[str]) -> float | None:
    """Start of the first cycle from which on each named process has done work (None: not yet).

    That is the latest of their first cycles: from there on all of them are
    active members.
    """
    first: dict[str, float] = {}
    for record in records:
        if record.done and (record.agent not in first or record.cycle_at < first[record.agent]):
            first[record.agent] = record.cycle_at
    names = list(agents)
    if any(name not in first for name in names):
        return None
    return max(first[name] for name in names)


def member_ids_of(records: Sequence[Record], agent: str) -> list[str]:
    """The member ids under which the process named ``agent`` worked, in order of first use."""
    seen: dict[str, float] = {}
    for record in records:
        if record.agent == agent and (record.member not in seen
                                      or record.at < seen[record.member]):
            seen[record.member] = record.at
    return sorted(seen, key=seen.__getitem__)


# --- the audit ------------------------------------------------------------------------------


@dataclass
class CycleAudit(Generic[R]):
    """What was done to which key in one cycle, against the keys every cycle must do."""

    cycle_at: float                                   #: the cycle's start (epoch seconds)
    records: dict[str, list[R]]                       #: key -> its records in this cycle
    gaps: set[str] = field(default_factory=set)       #: expected keys not done
    duplicates: dict[str, list[R]] = field(default_factory=dict)  #: keys recorded 2+ times
    double_done: set[str] = field(default_factory=set)  #: keys done 2+ times
    wrong: dict[str, str] = field(default_factory=dict)  #: key -> what its work got wrong
    absent: bool = False                              #: nobody recorded anything this cycle

    @property
    def by_agent(self) -> Counter[str]:
        """Process name -> keys done in this cycle."""
        return Counter(r.agent for rs in self.records.values() for r in rs if r.done)

    @property
    def by_member(self) -> Counter[str]:
        """Member id -> keys done in this cycle."""
        return Counter(r.member for rs in self.records.values() for r in rs if r.done)

    def done_by(self, agent: str) -> set[str]:
        """Keys that the process named ``agent`` did in this cycle."""
        return {k for k, rs in self.records.items()
                if any(r.agent == agent and r.done for r in rs)}

    def describe(self, origin: float | None = None, examples: int = 5) -> str:
        """One line: the cycle; its gaps, duplicates and wrong work, with examples; the
        work per process."""
        when = f"cycle {clock(self.cycle_at)}"
        when += " (nobody recorded anything)" if self.absent else ""
        when += f" (t{self.cycle_at - origin:+.2f}s)" if origin is not None else ""

        def by(rs: list[R]) -> str:
            return "+".join(f"{r.agent}@{clock(r.at)}" + ("" if r.done else ":not done")
                            for r in rs)
        dup = ", ".join(f"{k} by {by(rs)}" for k, rs in sorted(self.duplicates.items())[:examples])
        return (f"{when}: {len(self.gaps)} gaps {sorted(self.gaps)[:examples]}, "
                f"{len(self.duplicates)} duplicates [{dup}], {len(self.double_done)} done twice, "
                f"{len(self.wrong)} wrong {dict(sorted(self.wrong.items())[:examples])}, "
                f"done by {dict(sorted(self.by_agent.items()))}")


def audit_cycles(records: Sequence[R], ids: Iterable[str], *, since: float | None = None,
                 until: float | None = None, skip_newest: bool = True,
                 interval: float | None = None,
                 check: Callable[[str, float, R], str | None] | None = None,
                 ) -> list[CycleAudit[R]]:
    """Per-cycle audit: every key of ``ids`` must be done exactly once in every cycle.

    :param records: every record of every process (:meth:`Collector.refresh`)
    :param ids: the keys every cycle must do exactly once
    :param since: keep the cycles starting at or after this epoch time
        (e.g. the first cycle in which all initial processes did work)
    :param until: keep the cycles starting at or before this epoch time
    :param skip_newest: drop the newest cycle seen (it may be partially written)
    :param interval: the cycles' interval; when given, a cycle in which
        nobody recorded anything (between two cycles seen) is audited too,
        with every key a gap.  Without it such a cycle is invisible.
    :param check: ``check(key, cycle start, record)`` of the first record
        done for a key: what it got wrong, or None
    :returns: one :class:`CycleAudit` per cycle, oldest first.
    """
    expected = list(ids)
    cycles: dict[float, dict[str, list[R]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        cycles[round(record.cycle_at, 3)][record.key].append(record)
    starts = sorted(cycles)
    if skip_newest:
        starts = starts[:-1]
    audits: list[CycleAudit[R]] = []
    for start in starts:
        by_key = dict(cycles[start])
        audit = CycleAudit(start, by_key)
        for key in expected:
            if not any(r.done for r in by_key.get(key, ())):
                audit.gaps.add(key)
        for key, rs in by_key.items():
            done = [r for r in rs if r.done]
            if len(rs) > 1:
                audit.duplicates[key] = rs
            if len(done) > 1:
                audit.double_done.add(key)
            if done and check is not None and (problem := check(key, start, done[0])):
                audit.wrong[key] = problem
        audits.append(audit)
    if interval is not None:
        for at in missing_cycles(audits, interval):
            audits.append(CycleAudit(round(at, 3), {}, set(expected), absent=True))
        audits.sort(key=lambda a: a.cycle_at)
    # cycle starts are rounded to the millisecond: compare within half of one
    return [a for a in audits if (since is None or a.cycle_at >= since - 5e-4)
            and (until is None or a.cycle_at <= until + 5e-4)]


def missing_cycles(audits: Sequence[CycleAudit[Any]], interval: float) -> list[float]:
    """Starts of cycles absent between the first and last audited ones (nobody recorded)."""
    missing = []
    for before, after in itertools.pairwise(audits):
        t = before.cycle_at + interval
        while t < after.cycle_at - interval / 2:
            missing.append(t)
            t += interval
    return missing


def describe_cycles(audits: Iterable[CycleAudit[Any]], origin: float | None = None,
                    limit: int = 20) -> str:
    """The :meth:`CycleAudit.describe` lines of ``audits`` (at most ``limit``)."""
    audits = list(audits)
    lines = [a.describe(origin) for a in audits[:limit]]
    if len(audits) > limit:
        lines.append(f"... and {len(audits) - limit} more cycle(s)")
    return "\n".join(lines)


def rule(failures: list[str], title: str, audits: Sequence[CycleAudit[Any]],
         bad: Callable[[CycleAudit[Any]], bool], origin: float) -> None:
    """Record a failure naming every audited cycle for which ``bad`` holds."""
    offending = [a for a in audits if bad(a)]
    if offending:
        failures.append(f"RULE BROKEN: {title}: {len(offending)} of {len(audits)} audited "
                        f"cycle(s) (t relative to {clock(origin)}):\n"
                        + describe_cycles(offending, origin))


def require(failures: list[str], condition: bool, message: str) -> None:
    """Record a failure when the scenario did not happen as the test needs it to."""
    if not condition:
        failures.append(f"SCENARIO: {message}")


def always_right(failures: list[str], audits: Sequence[CycleAudit[Any]], origin: float) -> None:
    """No key done twice in a cycle, and no work done wrong."""
    rule(failures, "no key done twice in a cycle", audits, lambda a: bool(a.double_done), origin)
    rule(failures, "all work done right (the service's check)", audits,
         lambda a: bool(a.wrong), origin)


def exactly_once(failures: list[str], audits: Sequence[CycleAudit[Any]], origin: float,
                 min_cycles: int = 0) -> None:
    """Every key done in every cycle (0 gaps), recorded once (0 duplicates), done right."""
    require(failures, len(audits) >= min_cycles,
            f"only {len(audits)} cycle(s) audited (at least {min_cycles} needed)")
    rule(failures, "every key done in every cycle (0 gaps)", audits,
         lambda a: bool(a.gaps), origin)
    rule(failures, "no key recorded twice in a cycle (0 duplicates)", audits,
         lambda a: bool(a.duplicates), origin)
    always_right(failures, audits, origin)
