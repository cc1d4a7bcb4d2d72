"""One way for tests to wait: poll a predicate until it holds or time runs out.

::

    from zkpoll.testing.waiting import wait_for

    member = wait_for(lambda: coordinator.get_members("g").get(me), 5, "my registration")

The predicate is called at once, then every ``interval`` seconds, and once
more at the deadline; the first truthy value it returns is returned.  When
none comes, :class:`AssertionError` names what was awaited, how long, and
the last value the predicate returned, so a failing test says how far it
got.  An exception raised by the predicate (a failed assertion about a
process that died, say) ends the wait at once and propagates unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")

#: Longest ``repr`` of the last value quoted in a timeout message.
_LAST_VALUE_CHARS = 400


def wait_for(predicate: Callable[[], T], timeout: float, what: str, *,
             interval: float = 0.05, diagnostics: Callable[[], object] | None = None) -> T:
    """Poll ``predicate()`` until it returns a truthy value; return that value.

    :param timeout: seconds from now; the predicate is checked a last time then
    :param what: what is awaited, for the failure message ("b's leave")
    :param interval: seconds between two calls of the predicate
    :param diagnostics: called on timeout; its result (as text) ends the message
    :raises AssertionError: no truthy value within ``timeout``
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    last = repr(value)
    if len(last) > _LAST_VALUE_CHARS:
        last = last[:_LAST_VALUE_CHARS] + f"... ({len(last)} chars)"
    message = f"timed out after {timeout:g}s waiting for {what}; last value: {last}"
    if diagnostics is not None:
        message += "\n" + str(diagnostics())
    raise AssertionError(message)
