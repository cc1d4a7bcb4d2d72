"""Attribute expressions of dynamic pollsters: a path, then safe operations.

Ceilometer's ``*_attribute`` values read ``path | operation | operation``:
the path picks a value out of a response entry (``a.b.c`` for nested keys,
a number for a list index, ``.`` for the entry itself); each operation then
transforms ``value``.  Ceilometer runs the operations with ``eval()``;
zkpoll never does.  Each operation is parsed with :mod:`ast` when the
definition loads, checked against the subset below, and interpreted by the
small evaluator of this module.  Anything outside the subset refuses the
definition with the reason.

The subset:

- the name ``value`` (and the parameters of a ``lambda``), literals (str,
  int, float, bool, None, lists, tuples, dicts);
- ``value[key]``, ``value[i]``, ``value[a:b]``;
- ``+ - * / // %`` (``*`` repeats a string or list only up to
  :data:`MAX_LENGTH` items; ``%`` only on numbers), unary ``- + not``,
  ``and``/``or``, comparisons (``== != < <= > >= in not in is is not``),
  ``x if cond else y``;
- calls of the functions in :data:`FUNCTIONS` and of the methods in
  :data:`METHODS` (``value.split('$')``, ``','.join(value)``,
  ``value.get('href')``), keyword arguments included;
- ``lambda v: ...`` as an argument (``filter(lambda v: v.get('rel') ==
  'next', value)``).

Not allowed: attribute access other than those method calls (so no
dunders), imports, comprehensions, f-strings, ``**``, shifts, assignments.
An operation is at most :data:`MAX_TEXT` characters and :data:`MAX_NODES`
nodes nested at most :data:`MAX_NESTING` deep.

Every evaluation has a budget of size, steps and time
(:mod:`zkpoll.polling.dynamic.budget`); going over it raises
:class:`~zkpoll.polling.dynamic.budget.ExpressionBudgetError`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from zkpoll.polling.dynamic import budget
from zkpoll.polling.dynamic.budget import ExpressionBudgetError
from zkpoll.polling.dynamic.safe import FUNCTIONS, call_method

__all__ = ["FUNCTIONS", "MAX_LENGTH", "MAX_NESTING", "MAX_NODES", "MAX_TEXT", "METHODS",
           "Expression", "ExpressionBudgetError", "ExpressionError", "lookup"]

#: Longest string or list that ``*`` may build.
MAX_LENGTH = 100_000
#: Longest attribute expression (path and operations), in characters.
MAX_TEXT = 4096
#: Most AST nodes in one operation.
MAX_NODES = 1000
#: Deepest nesting of AST nodes in one operation.
MAX_NESTING = 50

#: Methods an operation may call, by the type of the object.
METHODS: Mapping[type, frozenset[str]] = {
    str: frozenset({"capitalize", "count", "endswith", "find", "isdigit", "isnumeric",
                    "join", "lower", "lstrip", "partition", "removeprefix", "removesuffix",
                    "replace", "rfind", "rpartition", "rsplit", "rstrip", "split",
                    "splitlines", "startswith", "strip", "title", "upper", "zfill"}),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
_ALL_METHODS = frozenset().union(*METHODS.values())

_BINARY: Mapping[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY: Mapping[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE: Mapping[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_,
    ast.IsNot: operator.is_not, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b}
_CONSTANTS = (str, int, float, bool, type(None))
# Nodes that only hold children to check (their operators are checked by type).
_PLAIN = (ast.Expression, ast.Subscript, ast.Slice, ast.IfExp, ast.Dict, ast.List, ast.Tuple,
          ast.Load, ast.BoolOp, ast.And, ast.Or, ast.keyword, ast.Compare, ast.BinOp,
          ast.UnaryOp)


class ExpressionError(ValueError):
    """An expression is outside the safe subset, or an operation failed on a value."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check(node: ast.AST, names: frozenset[str]) -> None:
    """Raise ExpressionError unless every node of ``node`` is in the subset."""
    kind = type(node).__name__
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _CONSTANTS):
            raise ExpressionError(f"constant {node.value!r} is not allowed")
        return
    if isinstance(node, ast.Name):
        if node.id not in names and node.id not in FUNCTIONS:
            raise ExpressionError(f"unknown name {node.id!r} (use 'value')")
        return
    if isinstance(node, ast.Attribute):
        raise ExpressionError(f"attribute .{node.attr} is only allowed as a method call")
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr not in _ALL_METHODS:
                raise ExpressionError(f"method .{func.attr}() is not allowed")
            _check(func.value, names)
        elif not (isinstance(func, ast.Name) and func.id in FUNCTIONS):
            called = func.id if isinstance(func, ast.Name) else type(func).__name__
            raise ExpressionError(f"{called!r} cannot be called; allowed functions: "
                                  f"{', '.join(sorted(FUNCTIONS))}")
        for arg in node.args:
            _check(arg, names)
        for kw in node.keywords:
            if kw.arg is None:
                raise ExpressionError("**kwargs is not allowed")
            _check(kw.value, names)
        return
    if isinstance(node, ast.Lambda):
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.posonlyargs:
            raise ExpressionError("a lambda may only take plain positional parameters")
        _check(node.body, names | {a.arg for a in args.args})
        return
    if isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        raise ExpressionError("'**' unpacking is not allowed")
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
        raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.UnaryOp) and type(node.op) not in _UNARY:
        raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
    if isinstance(node, ast.Compare) and any(type(op) not in _COMPARE for op in node.ops):
        raise ExpressionError("comparison operator not allowed")
    if not isinstance(node, _PLAIN):
        raise ExpressionError(f"{kind} is not allowed in an operation")
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.operator, ast.unaryop, ast.cmpop, ast.boolop)):
            _check(child, names)


def _check_product(left: Any, right: Any) -> None:
    """Refuse a ``*`` whose result would be over budget, before computing it."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and count > 0:
            if len(seq) * count > MAX_LENGTH:
                raise ExpressionBudgetError(f"'*' would build more than {MAX_LENGTH} items")
            budget.refuse_size(budget.size_of(seq) * count, "'*'")
    if isinstance(left, int) and isinstance(right, int):
        budget.refuse_product(left, right)


def _binary(op: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(op, ast.Mult):
        _check_product(left, right)
    if isinstance(op, ast.Mod) and not isinstance(left, (int, float)):
        raise ExpressionError("'%' is only allowed on numbers")
    return budget.check_size(_BINARY[type(op)](left, right), "an operator")


def _call(node: ast.Call, env: Mapping[str, Any]) -> Any:
    args = [_eval(a, env) for a in node.args]
    kwargs = {kw.arg: _eval(kw.value, env) for kw in node.keywords if kw.arg}
    func = node.func
    if isinstance(func, ast.Attribute):
        obj = _eval(func.value, env)
        allowed = next((m for t, m in METHODS.items() if isinstance(obj, t)), frozenset())
        if func.attr not in allowed:
            raise ExpressionError(f"{type(obj).__name__}.{func.attr}() is not allowed")
        return call_method(obj, func.attr, args, kwargs)
    return FUNCTIONS[func.id](*args, **kwargs)  # type: ignore[attr-defined]


def _lambda(node: ast.Lambda, env: Mapping[str, Any]) -> Callable[..., Any]:
    params = [a.arg for a in node.args.args]

    def function(*args: Any) -> Any:
        budget.current().step()
        if len(args) != len(params):
            raise ExpressionError(f"lambda takes {len(params)} argument(s), got {len(args)}")
        return _eval(node.body, {**env, **dict(zip(params, args))})

    return function


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    """Interpret a checked node."""
    budget.current().step()
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id] if node.id in env else FUNCTIONS[node.id]
    if isinstance(node, ast.Call):
        return _call(node, env)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, env)[_eval(node.slice, env)]
    if isinstance(node, ast.Slice):
        return slice(*(None if part is None else _eval(part, env)
                       for part in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.BinOp):
        return _binary(node.op, _eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, ast.BoolOp):
        want = isinstance(node.op, ast.Or)  # the value that short-circuits
        result: Any = None
        for operand in node.values:
            result = _eval(operand, env)
            if bool(result) is want:
                break
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, env)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(e, env) for e in node.elts]
        return budget.check_size(items if isinstance(node, ast.List) else tuple(items),
                                 "a list or tuple")
    if isinstance(node, ast.Dict):
        return budget.check_size({_eval(k, env): _eval(v, env)
                                  for k, v in zip(node.keys, node.values) if k is not None},
                                 "a dict")
    if isinstance(node, ast.Lambda):
        return _lambda(node, env)
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable once checked


def _check_shape(tree: ast.AST) -> None:
    """Refuse a tree of more than MAX_NODES nodes or nested deeper than MAX_NESTING."""
    count = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"more than {MAX_NODES} syntax nodes")
        if depth > MAX_NESTING:
            raise ExpressionError(f"nested deeper than {MAX_NESTING} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _compile(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"operation {text!r} is not a valid expression: {exc}") from exc
    try:
        _check_shape(tree)
        _check(tree, frozenset({"value"}))
    except ExpressionError as exc:
        raise ExpressionError(f"operation {text!r}: {exc}") from None
    return tree


def _finish(value: Any) -> Any:
    """The result of an operation as data: lazy iterators consumed, never a function."""
    if isinstance(value, (Iterator, KeysView, ValuesView, ItemsView)):
        return FUNCTIONS["list"](value)
    if callable(value):
        raise ExpressionError("the operation gives a function, not a value")
    return value


def lookup(obj: Any, path: str) -> Any:
    """Return ``obj[a][b]...`` for the path ``a.b...`` (``.`` is ``obj`` itself).

    A numeric part indexes a list.  :raises KeyError: a part is missing.
    """
    if path == ".":
        return obj
    for part in path.split("."):
        if isinstance(obj, Mapping) and part in obj:
            obj = obj[part]
        elif isinstance(obj, (list, tuple)) and part.lstrip("-").isdigit() \
                and -len(obj) <= int(part) < len(obj):
            obj = obj[int(part)]
        else:
            raise KeyError(f"no {part!r} in {_short(obj)}")
    return obj


class Expression:
    """A compiled ``path | operation | ...`` attribute expression.

    :raises ExpressionError: (constructor) the text is empty or an operation
        is outside the subset; the message says which and why.
    """

    __slots__ = ("_ops", "path", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError(f"must be a non-empty string, not {_short(text)}")
        if len(text) > MAX_TEXT:
            raise ExpressionError(f"{_short(text)} is longer than {MAX_TEXT} characters")
        path, *ops = text.split("|")
        self.text = text
        self.path = path.strip()
        if not self.path:
            raise ExpressionError(f"{text!r} names no attribute before the first '|'")
        self._ops = [(op.strip(), _compile(op.strip())) for op in ops]

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __call__(self, obj: Any) -> Any:
        """Look the path up in ``obj`` and apply the operations.

        :raises KeyError: the path is missing from ``obj``.
        :raises ExpressionError: an operation failed.
        """
        return self.apply(lookup(obj, self.path))

    def apply(self, value: Any) -> Any:
        """Apply the operations (not the path) to ``value``.

        :raises ExpressionError: an operation failed on this value.
        :raises ExpressionBudgetError: an operation went over its budget.
        """
        if not self._ops:
            return value
        with budget.evaluation(budget.new_budget()):
            for text, tree in self._ops:
                value = self._apply_one(text, tree, value)
        return value

    @staticmethod
    def _apply_one(text: str, tree: ast.Expression, value: Any) -> Any:
        try:
            return _finish(_eval(tree.body, {"value": value}))
        except ExpressionError:
            raise
        except ExpressionBudgetError as exc:
            raise ExpressionBudgetError(f"operation {text!r} went over its budget: "
                                        f"{exc}") from None
        except (MemoryError, RecursionError) as exc:
            raise ExpressionBudgetError(f"operation {text!r} went over its budget: "
                                        f"{type(exc).__name__}") from None
        except (ArithmeticError, AttributeError, LookupError, TypeError,
                ValueError) as exc:
            raise ExpressionError(f"operation {text!r} failed on {_short(value)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
