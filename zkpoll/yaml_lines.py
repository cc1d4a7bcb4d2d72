"""Reading YAML configuration files with the line of every node kept.

Shared by the loaders of the polling YAML and of the alarm definitions:
the file is parsed with PyYAML's safe loader (no Python tags) into a node
tree, so an error can name the line of the value at fault, then into plain
data.  Every failure to read or parse becomes one exception built by the
caller's ``error(reason, line)`` function.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import yaml

__all__ = ["describe", "duplicate_key", "key_lines", "node_line", "read_yaml", "value_node",
           "yaml_files"]

LOG = logging.getLogger(__name__)

#: Builds the caller's error from a reason and a 1-based line (None: unknown).
ErrorFactory = Callable[[str, int | None], Exception]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, warning about keys given twice in one mapping."""

    warn_duplicates = True

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in first and self.warn_duplicates:
                LOG.warning("%s:%d: key %r given twice in one mapping (first at line %d); "
                            "the last one wins", self.name, line, key_node.value,
                            first[key_node.value])
            first.setdefault(key_node.value, line)
        return super().construct_mapping(node, deep=deep)


class _QuietLoader(_Loader):
    warn_duplicates = False


def read_yaml(path: str, error: ErrorFactory, *, warn_duplicates: bool = True
              ) -> tuple[yaml.Node | None, Any]:
    """Parse ``path`` safely; return its node tree (for lines) and its data.

    A key given twice in one mapping keeps its last value, with a warning
    unless ``warn_duplicates`` is False (for a caller that refuses them
    itself, see :func:`duplicate_key`).  Raises ``error(reason, line)`` when
    the file is missing, unreadable or not valid YAML.
    """
    loader_class = _Loader if warn_duplicates else _QuietLoader
    try:
        with open(path, "rb") as stream:
            loader = loader_class(stream)
            try:
                root = loader.get_single_node()
                data = None if root is None else loader.construct_document(root)
            finally:
                loader.dispose()
    except FileNotFoundError as exc:
        raise error("file not found", None) from exc
    except OSError as exc:
        raise error(f"cannot read file: {exc.strerror or exc}", None) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        if exc.context_mark is not None and exc.context_mark is not mark:
            reason += f" (started at line {exc.context_mark.line + 1})"
        raise error(f"invalid YAML: {reason}",
                    None if mark is None else mark.line + 1) from exc
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", None) from exc
    except RecursionError as exc:
        raise error("invalid YAML: nested too deeply", None) from exc
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5000 digits
        raise error(f"invalid YAML value: {exc}", None) from exc
    return root, data


def node_line(node: yaml.Node | None) -> int | None:
    """1-based line where ``node`` starts (None without a node)."""
    return None if node is None else node.start_mark.line + 1


def key_lines(node: yaml.Node | None) -> dict[str, int]:
    """Line of each scalar key of a mapping node (the last one when repeated)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value
            if isinstance(k, yaml.ScalarNode)}


def duplicate_key(node: yaml.Node | None) -> tuple[str, int, int] | None:
    """The first scalar key given twice in a mapping node: (key, first line, its line)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    first: dict[str, int] = {}
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and not key_node.tag.endswith(":merge"):
            line = key_node.start_mark.line + 1
            if key_node.value in first:
                return key_node.value, first[key_node.value], line
            first[key_node.value] = line
    return None


def value_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of ``key`` in a mapping node (the last one when repeated)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    return found[-1] if found else None


def describe(value: object) -> str:
    """Name the YAML kind of ``value`` for an error message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    kinds = ((str, "a string"), (int, "an integer"), (float, "a number"),
             (dict, "a mapping"), (list, "a list"))
    for kind, text in kinds:
        if isinstance(value, kind):
            shown = f" ({value!r})" if not isinstance(value, (dict, list)) else ""
            return text + shown
    return f"a {type(value).__name__}"


def yaml_files(directories: Iterable[str], what: str) -> Iterator[str]:
    """The ``*.yaml`` and ``*.yml`` files of ``directories``, sorted per directory;
    a missing directory is skipped (DEBUG, naming ``what`` it would hold)."""
    for directory in directories:
        if not os.path.isdir(directory):
            LOG.debug("no %s directory %s", what, directory)
            continue
        for filename in sorted(os.listdir(directory)):
            path = os.path.join(directory, filename)
            if filename.endswith((".yaml", ".yml")) and os.path.isfile(path):
                yield path
