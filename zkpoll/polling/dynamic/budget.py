"""What one dynamic pollster expression may cost: size, steps and time.

An operation of a ``*_attribute`` expression runs in zkpoll's own
interpreter (:mod:`zkpoll.polling.dynamic.expr`), under the GIL, in the
agent's process.  Without bounds, ``str([[0]*100000]*100000)`` would build
a 10**10-character string in one C call: the agent freezes, its heartbeat
and its signal handlers with it.  This module bounds every evaluation:

- **size**: every value an operation builds is measured
  (:func:`size_of`, about one unit per character of its ``repr``, shared
  items counted each time they appear, as ``str()`` would print them)
  and refused over :data:`MAX_SIZE`; where Python would build the value in
  one C call (``*`` repetition, ``str()``, ``join``, ``replace``,
  ``zfill``, ``sum`` of sequences, ``int()`` of a long string) the size is
  computed *before* building it;
- **allocation**: the sizes of all values built by one evaluation add up
  to at most :data:`MAX_ALLOCATED` (so ``list(map(lambda v: [v] * 100000,
  value))`` stops after a few items, not after building all of them);
- **integers**: a product over :data:`MAX_INT_BITS` bits is refused
  before it is computed (``**`` and shifts are not in the subset at all);
- **steps**: each interpreted node, lambda call and function call costs one
  step; over :data:`MAX_STEPS` per evaluation is refused;
- **time**: an evaluation stops after :data:`MAX_SECONDS`, or at the
  deadline of the poll it belongs to (:func:`evaluation_deadline`).

Going over a bound raises :class:`ExpressionBudgetError`, a
:class:`~zkpoll.exceptions.PluginError`: it is not one entry's bad data
but a definition that cannot be evaluated safely, so it fails the
pollster's call for that cycle and the agent counts an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, ValuesView
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import Any

from zkpoll.exceptions import PluginError

__all__ = ["MAX_ALLOCATED", "MAX_DEPTH", "MAX_INT_BITS", "MAX_SECONDS", "MAX_SIZE", "MAX_STEPS", "Budget",
           "ExpressionBudgetError", "check_size", "current", "evaluation_deadline",
           "size_of"]

#: Largest value an operation may build, in units of about one repr character.
MAX_SIZE = 1_000_000
#: Sum of the sizes of every value one evaluation builds.
MAX_ALLOCATED = 5 * MAX_SIZE
#: Widest integer a product may give, in bits (about 20 000 decimal digits).
MAX_INT_BITS = 65_536
#: Interpreted nodes, lambda calls and function calls per evaluation.
MAX_STEPS = 100_000
#: Wall-clock seconds per evaluation.
MAX_SECONDS = 0.5
#: Deepest nesting of lists, tuples and dicts a value may have.
MAX_DEPTH = 100
#: Decimal digits ``int()`` converts (CPython's own default limit).
MAX_INT_DIGITS = 4300
_CHECK_CLOCK_EVERY = 256
_FLOAT_UNITS = 24


class ExpressionBudgetError(PluginError):
    """An expression went over one of its bounds (size, steps, time)."""


class Budget:
    """Steps and deadline of one evaluation."""

    __slots__ = ("allocated", "deadline", "max_steps", "steps")

    def __init__(self, deadline: float, max_steps: int = MAX_STEPS) -> None:
        self.deadline = deadline
        self.max_steps = max_steps
        self.steps = 0
        self.allocated = 0

    def allocate(self, size: int) -> None:
        """Charge a value of ``size`` units built (or about to be); raise when over."""
        self.allocated += size
        if self.allocated > MAX_ALLOCATED:
            raise ExpressionBudgetError(f"built values of more than {MAX_ALLOCATED} units "
                                        "in all")

    def step(self, count: int = 1) -> None:
        """Charge ``count`` steps; raise when over the steps or past the deadline."""
        self.steps += count
        if self.steps > self.max_steps:
            raise ExpressionBudgetError(f"more than {self.max_steps} evaluation steps")
        if self.steps % _CHECK_CLOCK_EVERY < count and time.monotonic() > self.deadline:
            raise ExpressionBudgetError("evaluation took longer than its time budget "
                                        f"({MAX_SECONDS}s per evaluation, or the poll's)")


_LOCAL = threading.local()


def current() -> Budget:
    """The budget of the evaluation running in this thread (a fresh one if none)."""
    budget = getattr(_LOCAL, "budget", None)
    return budget if budget is not None else Budget(time.monotonic() + MAX_SECONDS)


@contextmanager
def evaluation(budget: Budget) -> Iterator[Budget]:
    """Make ``budget`` the current one in this thread while the block runs."""
    outer = getattr(_LOCAL, "budget", None)
    _LOCAL.budget = budget
    try:
        yield budget
    finally:
        _LOCAL.budget = outer


def new_budget() -> Budget:
    """A budget for one evaluation: MAX_SECONDS, or less if the poll ends sooner."""
    deadline = time.monotonic() + MAX_SECONDS
    outer = getattr(_LOCAL, "deadline", None)
    return Budget(deadline if outer is None else min(deadline, outer))


@contextmanager
def evaluation_deadline(deadline: float) -> Iterator[None]:
    """Evaluations in this thread stop at the monotonic ``deadline`` (a poll's end)."""
    outer = getattr(_LOCAL, "deadline", None)
    _LOCAL.deadline = deadline if outer is None else min(deadline, outer)
    try:
        yield
    finally:
        _LOCAL.deadline = outer


def _scalar_size(value: Any) -> int | None:
    if isinstance(value, (str, bytes, bytearray)):
        return len(value) + 3
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return _FLOAT_UNITS
    if isinstance(value, (list, tuple, Mapping, AbstractSet, ValuesView)):
        return None
    return 1  # a function, or a lazy iterator: measured once consumed


def size_of(value: Any, limit: int = MAX_SIZE) -> int:
    """About ``len(repr(value))``, counting shared items each time they appear.

    Stops counting once over ``limit`` (the result is then ``> limit``);
    the walk visits each distinct container once, so measuring costs what
    the value really occupies, never what printing it would.

    :raises ExpressionBudgetError: nested deeper than :data:`MAX_DEPTH`.
    """
    return _size(value, limit, {}, 0)


def _size(value: Any, limit: int, memo: dict[int, int], depth: int) -> int:
    scalar = _scalar_size(value)
    if scalar is not None:
        return scalar
    known = memo.get(id(value))
    if known is not None:
        return known
    if depth >= MAX_DEPTH:
        raise ExpressionBudgetError(f"a value nested deeper than {MAX_DEPTH} levels")
    total = 2 + 3 * len(value)  # each item: a separator and at least one character
    if total <= limit:
        total, last, last_size = 2, None, 0
        items = value.items() if isinstance(value, Mapping) else value
        for item in items:
            if item is not last:  # [x] * n repeats one object: measure it once
                last, last_size = item, _size(item, limit, memo, depth + 1)
            total += 2 + last_size
            if total > limit:
                break
    memo[id(value)] = total
    return total


def check_size(value: Any, what: str = "an operation") -> Any:
    """Return ``value``; raise ExpressionBudgetError when it is over MAX_SIZE."""
    size = size_of(value)
    if size > MAX_SIZE:
        raise ExpressionBudgetError(f"{what} built a value of more than {MAX_SIZE} units "
                                    f"(about characters of its text)")
    current().allocate(size)
    return value


def refuse_size(size: int, what: str) -> None:
    """Raise ExpressionBudgetError when ``size`` (computed before building) is too big."""
    if size > MAX_SIZE:
        raise ExpressionBudgetError(f"{what} would build a value of about {size} units "
                                    f"(limit {MAX_SIZE}); refused before building it")
    current().allocate(size)


def refuse_product(left: int, right: int) -> None:
    """Raise ExpressionBudgetError when ``left * right`` would be over MAX_INT_BITS."""
    bits = abs(left).bit_length() + abs(right).bit_length()
    if bits > MAX_INT_BITS:
        raise ExpressionBudgetError(f"'*' would build an integer of about {bits} bits "
                                    f"(limit {MAX_INT_BITS}); refused before computing it")
