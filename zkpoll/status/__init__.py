"""What ``zkpoll-status`` reports: pure functions of what was read from the backend.

* :mod:`~zkpoll.status.report`: groups, members, sources, overlaps and the
  problems found (:func:`build_report`, with :func:`with_claims`);
* :mod:`~zkpoll.status.owner`: who polls a resource now and next cycle;
* :mod:`~zkpoll.status.publishers`: publisher health published by members;
* :mod:`~zkpoll.status.alarms`: the alarm rows of ``zkpoll-status alarms``.

The command line (parsing, reading the backend, printing) is
:mod:`zkpoll.cmd.status`.
"""

from zkpoll.status.alarms import AlarmRow, alarm_rows
from zkpoll.status.owner import OwnerReport, find_owner
from zkpoll.status.publishers import PublisherFinding, publisher_findings
from zkpoll.status.report import (
    Problem,
    Report,
    Severity,
    build_report,
    member_state,
    source_intervals,
    with_claims,
)

__all__ = [
    "AlarmRow",
    "OwnerReport",
    "Problem",
    "PublisherFinding",
    "Report",
    "Severity",
    "alarm_rows",
    "build_report",
    "find_owner",
    "member_state",
    "publisher_findings",
    "source_intervals",
    "with_claims",
]
