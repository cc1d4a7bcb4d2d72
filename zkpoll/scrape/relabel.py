"""Prometheus relabelling (``relabel_configs``, ``metric_relabel_configs``).

Pure: rules are parsed and validated once, then applied to label sets::

    rules = parse_rules(yaml_list, where="job 'node' relabel_configs")
    labels = apply(rules, {"__address__": "h:9100", "job": "node"})   # None: dropped

A label set is a ``Mapping[str, str]``; :func:`apply` never changes it and
returns a new ``dict`` (or None when a rule drops it).  A label with an
empty value does not exist, as in Prometheus: such labels are removed from
the input and a rule that writes an empty value deletes the label.  For
metric relabelling the metric name is the ``__name__`` label.

Semantics follow Prometheus's ``model/relabel``: the source label values
joined by ``separator`` are matched against ``regex`` anchored at both
ends; ``$1``, ``${1}`` and ``${name}`` in ``replacement`` (and in
``target_label`` for ``replace``) expand as Go's ``regexp.Expand`` does (a
missing group is empty, ``$$`` is ``$``, ``$1x`` names group ``1x``);
``hashmod`` takes the last 8 bytes of the MD5 of the joined value, big
endian, modulo ``modulus``.  Actions: replace, keep, drop, keepequal,
dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase.

The regex is compiled by Python's ``re`` (ASCII classes, as RE2's): the
common syntax is the same; ``(?<name>...)`` and ``\\z`` are translated and
POSIX classes (``[[:alpha:]]``) expanded, ``\\p{...}`` is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zkpoll.exceptions import ConfigError

__all__ = ["ACTIONS", "LABEL_NAME", "RelabelRule", "apply", "expand", "parse_rules"]

ACTIONS = frozenset(("replace", "keep", "drop", "keepequal", "dropequal", "hashmod", "labelmap",
                     "labeldrop", "labelkeep", "lowercase", "uppercase"))
#: A valid label name (Prometheus's legacy scheme).
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RELABEL_TARGET = re.compile(r"(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+", re.ASCII)
_KEYS = ("source_labels", "separator", "regex", "modulus", "target_label", "replacement",
         "action")
_DEFAULT_REGEX = "(.*)"
_POSIX = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
          "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
          "print": " -~", "punct": "!-/:-@[-`{-~", "space": "\\t\\n\\v\\f\\r ",
          "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f"}

Template = tuple["str | int", ...]  # literal text, or the index of a group


def compile_regex(text: str) -> re.Pattern[str]:
    """Compile a Prometheus (RE2) regex for :meth:`re.Pattern.fullmatch`.

    Raises ``re.error`` (or ``ValueError`` for syntax Python cannot run).
    """
    if re.search(r"\\[pP]", text):
        raise ValueError("Unicode classes (\\p{...}) are not supported")
    py = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", text)
    py = py.replace("\\z", "\\Z")
    py = re.sub(r"\[:(\^?)([a-z]+):\]",
                lambda m: (_POSIX[m.group(2)] if not m.group(1) else m.group(0))
                if m.group(2) in _POSIX else m.group(0), py)
    return re.compile(f"(?:{py})", re.ASCII)


def _name_at(template: str, pos: int) -> tuple[str | None, int]:
    """Go's ``extract``: the group name after a ``$`` at ``pos`` and where it ends."""
    brace = template.startswith("{", pos)
    start = i = pos + 1 if brace else pos
    while i < len(template) and (template[i].isalpha() or template[i].isdecimal()
                                 or template[i] == "_"):
        i += 1
    if i == start:
        return None, pos
    if brace:
        if i >= len(template) or template[i] != "}":
            return None, pos
        return template[start:i], i + 1
    return template[start:i], i


def compile_template(template: str, regex: re.Pattern[str]) -> Template:
    """Split ``template`` into literals and group indexes for :func:`expand`."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    while (j := template.find("$", i)) != -1:
        literal.append(template[i:j])
        if template.startswith("$", j + 1):
            literal.append("$")
            i = j + 2
            continue
        name, end = _name_at(template, j + 1)
        if name is None:
            literal.append("$")
            i = j + 1
            continue
        i = end
        if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0") \
                and len(name) < 9:
            group = int(name) if int(name) <= regex.groups else None
        else:
            group = regex.groupindex.get(name)
        if group is not None:
            parts.append("".join(literal))
            literal = []
            parts.append(group)
    literal.append(template[i:])
    parts.append("".join(literal))
    return tuple(p for p in parts if p != "")


def expand(template: Template, match: re.Match[str]) -> str:
    """The text of a compiled template for one match (a group that did not
    take part in the match is empty)."""
    if len(template) == 1 and type(template[0]) is str:
        return template[0]
    return "".join(p if type(p) is str else (match.group(p) or "") for p in template)


@dataclass(frozen=True)
class RelabelRule:
    """One validated relabel rule; build it with :meth:`from_mapping`."""

    action: str = "replace"
    source_labels: tuple[str, ...] = ()
    separator: str = ";"
    regex: str = _DEFAULT_REGEX
    target_label: str = ""
    replacement: str = "$1"
    modulus: int = 0
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    target_template: Template = field(init=False, repr=False, compare=False)
    replacement_template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = compile_regex(self.regex)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "target_template", compile_template(self.target_label, pattern))
        object.__setattr__(self, "replacement_template",
                           compile_template(self.replacement, pattern))

    @classmethod
    def from_mapping(cls, raw: Any, index: int = 0, where: str = "relabel_configs") -> RelabelRule:
        """Parse one YAML mapping with Prometheus's keys; ConfigError names
        ``where[index]`` and the key at fault."""
        def fail(key: str, reason: str) -> ConfigError:
            return ConfigError(f"{where}[{index}]: {key}: {reason}")

        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}[{index}]: a relabel rule is a mapping, not "
                              f"{type(raw).__name__}")
        for key in raw:
            if key not in _KEYS:
                raise fail(str(key), f"unknown key (expected one of {', '.join(_KEYS)})")
        kw: dict[str, Any] = {}
        for key in ("separator", "regex", "target_label", "replacement", "action"):
            if key in raw and raw[key] is not None:
                if not isinstance(raw[key], str):
                    raise fail(key, f"expected a string, got {type(raw[key]).__name__}")
                kw[key] = raw[key]
        action = kw.get("action", "replace").lower()
        if action not in ACTIONS:
            raise fail("action", f"unknown relabel action {kw['action']!r}")
        kw["action"] = action
        sources = raw.get("source_labels")
        if sources is not None:
            if not isinstance(sources, list):
                raise fail("source_labels", "expected a list of label names")
            for name in sources:
                if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
                    raise fail("source_labels", f"{name!r} is not a valid label name")
            kw["source_labels"] = tuple(sources)
        modulus = raw.get("modulus")
        if modulus is not None:
            if isinstance(modulus, bool) or not isinstance(modulus, int) or modulus < 0:
                raise fail("modulus", f"expected a non-negative integer, got {modulus!r}")
            kw["modulus"] = modulus
        try:
            rule = cls(**kw)
        except (re.error, ValueError) as exc:
            raise fail("regex", f"invalid regex {kw.get('regex')!r}: {exc}") from exc
        problem = rule._problem(set(kw))
        if problem is not None:
            raise fail(*problem)
        return rule

    def _problem(self, given: set[str]) -> tuple[str, str] | None:
        """(key, reason) of what Prometheus's ``Config.Validate`` refuses, or None."""
        a, target = self.action, self.target_label
        if a == "hashmod" and self.modulus == 0:
            return "modulus", "hashmod requires a non-zero modulus"
        if a in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
                and not target:
            return "target_label", f"the {a} action requires a target_label"
        if a == "replace" and not (LABEL_NAME.fullmatch(target) if "$" not in target
                                    else _RELABEL_TARGET.fullmatch(target)):
            return "target_label", f"{target!r} is invalid for the replace action"
        if a in ("hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
                and not LABEL_NAME.fullmatch(target):
            return "target_label", f"{target!r} is invalid for the {a} action"
        if a in ("lowercase", "uppercase", "keepequal", "dropequal") and "replacement" in given \
                and self.replacement != "$1":
            return "replacement", f"cannot be set for the {a} action"
        if a == "labelmap" and not _RELABEL_TARGET.fullmatch(self.replacement):
            return "replacement", f"{self.replacement!r} is invalid for the labelmap action"
        if a in ("keepequal", "dropequal"):
            for key in ("regex", "modulus", "separator", "replacement"):
                if key in given and getattr(self, key) != getattr(RelabelRule, key):
                    return key, f"the {a} action takes only source_labels and target_label"
        if a in ("labeldrop", "labelkeep"):
            for key in ("source_labels", "target_label", "modulus", "separator", "replacement"):
                if key in given and getattr(self, key) != getattr(RelabelRule, key):
                    return key, f"the {a} action takes only regex"
        return None

    def apply_in_place(self, labels: dict[str, str]) -> bool:
        """Apply this rule to ``labels`` (no empty values); False: drop the set."""
        a = self.action
        val = self.separator.join([labels.get(n, "") for n in self.source_labels])
        if a == "replace":
            m = self.pattern.fullmatch(val)
            if m is None:
                return True
            target = expand(self.target_template, m)
            if not LABEL_NAME.fullmatch(target):
                return True
            res = expand(self.replacement_template, m)
            if res:
                labels[target] = res
            else:
                labels.pop(target, None)
        elif a == "keep":
            return self.pattern.fullmatch(val) is not None
        elif a == "drop":
            return self.pattern.fullmatch(val) is None
        elif a == "keepequal":
            return labels.get(self.target_label, "") == val
        elif a == "dropequal":
            return labels.get(self.target_label, "") != val
        elif a == "hashmod":
            digest = hashlib.md5(val.encode(), usedforsecurity=False).digest()
            labels[self.target_label] = str(int.from_bytes(digest[8:], "big") % self.modulus)
        elif a in ("lowercase", "uppercase"):
            res = val.lower() if a == "lowercase" else val.upper()
            if res:
                labels[self.target_label] = res
            else:
                labels.pop(self.target_label, None)
        elif a == "labelmap":
            for name, value in sorted(labels.items()):
                m = self.pattern.fullmatch(name)
                if m is not None:
                    new = expand(self.replacement_template, m)
                    if LABEL_NAME.fullmatch(new):
                        labels[new] = value
        else:  # labeldrop, labelkeep
            keep = a == "labelkeep"
            for name in [n for n in labels if (self.pattern.fullmatch(n) is not None) != keep]:
                del labels[name]
        return True


def parse_rules(raw: Any, where: str = "relabel_configs") -> tuple[RelabelRule, ...]:
    """Parse a YAML list of relabel rules (None or [] gives no rules)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of relabel rules, got {type(raw).__name__}")
    return tuple(RelabelRule.from_mapping(r, i, where) for i, r in enumerate(raw))


def apply(rules: Sequence[RelabelRule], labels: Mapping[str, str]) -> dict[str, str] | None:
    """Apply ``rules`` in order to a copy of ``labels`` (empty values removed).

    Returns the new label set, or None when a rule dropped it.
    """
    out = {k: v for k, v in labels.items() if v}
    for rule in rules:
        if not rule.apply_in_place(out):
            return None
    return out
