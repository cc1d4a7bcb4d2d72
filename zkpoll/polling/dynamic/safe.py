"""The functions and methods of the expression subset, each with its cost bounded.

Every function an operation may call (or hand to ``map``/``sorted``, which
then call it from C) is wrapped: it charges a step and its result is
measured.  Those that could build a huge value in one C call check the
size first: ``str()``, ``int()`` of a string, ``sum()`` of sequences, and
the methods ``join``, ``replace`` and ``zfill``.  See
:mod:`zkpoll.polling.dynamic.budget` for the bounds.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from zkpoll.polling.dynamic.budget import (
    MAX_INT_BITS,
    MAX_INT_DIGITS,
    MAX_SIZE,
    ExpressionBudgetError,
    check_size,
    current,
    refuse_size,
    size_of,
)

__all__ = ["FUNCTIONS", "call_method"]

_NAMES = ("abs", "all", "any", "bool", "dict", "filter", "float", "int", "len", "list", "map",
          "max", "min", "reversed", "round", "sorted", "str", "sum", "tuple")


def _bounded(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        current().step()
        return check_size(function(*args, **kwargs), f"{name}()")

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{name}()``, its result measured against the size budget."
    return call


def _str(*args: Any, **kwargs: Any) -> str:
    if len(args) == 1 and not kwargs:
        value = args[0]
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise ExpressionBudgetError(f"str() of an integer of {value.bit_length()} bits "
                                        f"(limit {MAX_INT_BITS})")
        refuse_size(size_of(value), "str()")
    return builtins.str(*args, **kwargs)


def _int(*args: Any, **kwargs: Any) -> int:
    if args and isinstance(args[0], (str, bytes, bytearray)) \
            and len(args[0]) > 2 * MAX_INT_DIGITS:
        raise ExpressionBudgetError(f"int() of a text of {len(args[0])} characters "
                                    f"(limit {2 * MAX_INT_DIGITS})")
    return builtins.int(*args, **kwargs)


def _sum(iterable: Any, /, start: Any = 0) -> Any:
    items = builtins.list(iterable)
    if not isinstance(start, (list, tuple)):
        return builtins.sum(items, start)  # numbers; Python refuses strings itself
    for item in items:
        if type(item) is not type(start):
            raise TypeError(f"can only concatenate {type(start).__name__} (not "
                            f"\"{type(item).__name__}\") to {type(start).__name__}")
    total = size_of(start) + builtins.sum(size_of(item) for item in items)
    refuse_size(total, "sum() of sequences")
    # Python's own sum() of sequences copies the growing result at each item.
    return type(start)(itertools.chain(start, *items))


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    name: _bounded({"str": _str, "int": _int, "sum": _sum}.get(name, getattr(builtins, name)),
                   name)
    for name in _NAMES}


def _join(separator: str, iterable: Any) -> str:
    items = builtins.list(iterable)
    if all(isinstance(item, builtins.str) for item in items):
        total = len(separator) * max(0, len(items) - 1) + builtins.sum(map(len, items))
        refuse_size(total, "join()")
    return separator.join(items)


def _replace(text: str, old: Any, new: Any, count: Any = -1) -> str:
    if isinstance(old, builtins.str) and isinstance(new, builtins.str) \
            and isinstance(count, builtins.int):
        times = text.count(old) if old else len(text) + 1
        if count >= 0:
            times = min(times, count)
        refuse_size(len(text) + times * max(0, len(new) - len(old)), "replace()")
    return text.replace(old, new, count)


def _zfill(text: str, width: Any) -> str:
    if isinstance(width, builtins.int) and width > MAX_SIZE:
        raise ExpressionBudgetError(f"zfill({width}) would build more than {MAX_SIZE} "
                                    "characters")
    return text.zfill(width)


_CHECKED_METHODS: Mapping[str, Callable[..., Any]] = {
    "join": _join, "replace": _replace, "zfill": _zfill}


def call_method(obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``obj.name(*args, **kwargs)`` of an allowed method, with its cost bounded."""
    current().step()
    checked = _CHECKED_METHODS.get(name) if isinstance(obj, builtins.str) else None
    if checked is not None:
        result = checked(obj, *args, **kwargs)
    else:
        result = getattr(obj, name)(*args, **kwargs)
    return check_size(result, f".{name}()")
