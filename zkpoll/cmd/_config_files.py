"""Refuse section and option names nothing knows: a typo must never change the mode.

oslo.config ignores what nobody registered, so ``[coordinaton]`` or
``backend_ur =`` would silently turn a cluster agent into a standalone one.
:func:`check_config_files` re-reads every file oslo.config read
(``--config-file``, ``--config-dir``, or the default locations) and refuses
the first name that is neither

- registered on ``conf`` as a configuration-file option (zkpoll's own and
  any a plugin registered while loading, so call it after every plugin has
  loaded), nor
- declared through an ``oslo.config.opts`` entry point by zkpoll or by a
  distribution that provides zkpoll plugins (their groups that this process
  did not load, e.g. a compute plugin's group read by a central agent or by
  ``zkpoll-status``).

``OS_<GROUP>__<OPTION>`` environment variables (oslo.config reads them too)
are checked the same way when their group is known or close to a known one.

Command-line-only options (``--polling-namespaces``, ``zkpoll-status
--format``) are refused in files.  Deprecated names are accepted.
"""

from __future__ import annotations

import difflib
import glob
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from oslo_config import cfg, iniparser

from zkpoll.exceptions import ConfigError

__all__ = ["Name", "check_config_files", "config_files", "unknown_names"]

LOG = logging.getLogger(__name__)

DEFAULT = "DEFAULT"
#: Options every oslo.config program has (set by oslo.config itself).
_BUILTIN = {"config_file", "config_dir", "config_source"}

Known = dict[str, set[str]]   # normalised section -> option names


@dataclass(frozen=True)
class Name:
    """A section header (``option`` None) or an option assignment in a file."""

    path: str
    line: int
    section: str
    option: str | None = None


def _normalise(section: str) -> str:
    """oslo.config's rule: group names are case-insensitive, DEFAULT is not."""
    return section if section == DEFAULT else section.lower()


class _Reader(iniparser.BaseParser):
    """Lists the section headers and option names of one file, with their lines."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.names: list[Name] = []
        self.section: str | None = None
        self._key_line = 0

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        self._key_line = self.lineno
        return super()._split_key_value(line)

    def new_section(self, section: str) -> None:
        self.section = section
        self.names.append(Name(self.path, self.lineno, section))

    def assignment(self, key: str, value: list[str]) -> None:
        if self.section is None:
            raise ConfigError(f"{self.path}:{self._key_line}: option {key!r} before any "
                              "[section]")
        self.names.append(Name(self.path, self._key_line, self.section, key))

    def parse_exc(self, msg: str, lineno: int, line: str | None = None  # type: ignore[override]
                  ) -> Exception:
        return ConfigError(f"{self.path}:{lineno}: {msg}: {line!r}")


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """Every file oslo.config read for ``conf``, in its order."""
    files = [os.path.expanduser(f) for f in (conf.config_file or [])]
    namespace: Any = getattr(conf, "_namespace", None)
    dirs = list(getattr(namespace, "_config_dirs", []) or [])
    if not dirs:
        dirs = [d for d in (conf.default_config_dirs or []) if os.path.exists(d)]
    for directory in dirs:
        files += sorted(glob.glob(os.path.join(os.path.expanduser(directory), "*.conf")))
    return [f for f in files if os.path.isfile(f)]


def read_names(path: str) -> list[Name]:
    """Section headers and option names of the file at ``path``."""
    reader = _Reader(path)
    try:
        with open(path) as stream:
            reader.parse(stream.readlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    return reader.names


def _add(known: Known, group: object, opts: Iterable[cfg.Opt]) -> None:
    name = group.name if isinstance(group, cfg.OptGroup) else (group or DEFAULT)
    section = _normalise(str(name))
    names = known.setdefault(section, set())
    for opt in opts:
        names.add(opt.dest)
        for old in opt.deprecated_opts:
            old_section = _normalise(old.group) if old.group else section
            known.setdefault(old_section, set()).add(old.name or opt.dest)


def registered(conf: cfg.ConfigOpts) -> tuple[Known, Known]:
    """``(file options, command-line-only options)`` registered on ``conf``."""
    files: Known = {DEFAULT: set()}
    cli: Known = {}
    # oslo.config has no public listing of Opt objects; these two dicts are it.
    groups: list[tuple[str, Mapping[str, Any]]] = [(DEFAULT, conf._opts)]
    groups += [(name, group._opts) for name, group in conf._groups.items()]
    for section, infos in groups:
        files.setdefault(_normalise(section), set())
        for info in infos.values():
            if info["opt"].dest in _BUILTIN:
                continue
            _add(cli if info.get("cli") else files, section, [info["opt"]])
    return files, cli


def declared() -> Known:
    """Options declared by zkpoll and its plugins' distributions.

    That is the ``oslo.config.opts`` entry points of every installed
    distribution that also provides a zkpoll entry point (a pollster,
    discovery, publisher or backend); other programs' options are not ours.
    """
    known: Known = {}
    for dist in metadata.distributions():
        entry_points = list(dist.entry_points)
        if not any(ep.group.startswith("zkpoll.") for ep in entry_points):
            continue
        for ep in entry_points:
            if ep.group != "oslo.config.opts":
                continue
            try:
                for group, opts in ep.load()():
                    _add(known, group, opts)
            except Exception as exc:  # noqa: BLE001 - a broken listing only costs its names
                LOG.debug("oslo.config.opts entry point %s failed: %s", ep.value, exc)
    return known


def _merge(*knowns: Known) -> Known:
    out: Known = {}
    for known in knowns:
        for section, names in known.items():
            out.setdefault(section, set()).update(names)
    return out


def _is_known(name: Name, known: Known) -> bool:
    section = known.get(_normalise(name.section))
    return section is not None and (name.option is None or name.option in section)


def unknown_names(conf: cfg.ConfigOpts, files: Iterable[str] | None = None, *,
                  registered_only: bool = False) -> list[tuple[Name, str]]:
    """Every unknown name in ``files`` (default: all read), with why, in file order.

    With ``registered_only`` (plugins may not have loaded yet), only options
    of registered sections and section names close to a registered one count.
    """
    names = [n for path in (config_files(conf) if files is None else files)
             for n in read_names(path)]
    mine, cli = registered(conf)
    if all(_is_known(n, mine) for n in names) and not _environment(os.environ, mine, mine):
        return []
    known = _merge(mine, declared())
    problems: list[tuple[Name, str]] = []
    for name in names:
        if _is_known(name, known):
            continue
        section = _normalise(name.section)
        if name.option is not None and section not in known:
            continue  # reported once, as an unknown section
        if registered_only and not (
                section in mine if name.option is not None
                else difflib.get_close_matches(section, sorted(mine), n=1)):
            continue
        problems.append((name, _explain(name, known, cli)))
    return problems + _environment(os.environ, known, mine, registered_only=registered_only)


_ENV = re.compile(r"^OS_([A-Z0-9_]+?)__([A-Z0-9_]+)$")


def _environment(environ: Mapping[str, str], known: Known, mine: Known, *,
                 registered_only: bool = False) -> list[tuple[Name, str]]:
    """Unknown ``OS_<GROUP>__<OPTION>`` variables (oslo.config's environment source).

    A variable whose group is neither known nor close to a known one belongs
    to another program and is left alone.
    """
    sections = {s.upper(): s for s in known}
    problems: list[tuple[Name, str]] = []
    for var in sorted(environ):
        match = _ENV.match(var)
        if not match:
            continue
        group, option = match.groups()
        section = sections.get(group)
        name = Name(f"${var}", 0, section or group.lower(), option.lower())
        if section is None:
            close = difflib.get_close_matches(group, sorted(sections), n=1, cutoff=0.8)
            if close:
                why = (f"environment variable {var}: unknown section [{group.lower()}]; did "
                       f"you mean OS_{close[0]}__{option}?")
                problems.append((name, why))
            continue
        options = {o.upper() for o in known[section]}
        if option in options or (registered_only and section not in mine):
            continue
        close = difflib.get_close_matches(option, sorted(options), n=1)
        hint = f"; did you mean OS_{group}__{close[0]}?" if close else ""
        why = f"environment variable {var}: [{section}] {option.lower()}: unknown option{hint}"
        problems.append((name, why))
    return problems


def _explain(name: Name, known: Known, cli: Known) -> str:
    if name.option is None:
        close = difflib.get_close_matches(_normalise(name.section), sorted(known), n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        return f"{name.path}:{name.line}: [{name.section}]: unknown section{hint}"
    where = f"{name.path}:{name.line}: [{name.section}] {name.option}"
    if name.option in cli.get(_normalise(name.section), ()):
        flag = name.option.replace("_", "-")
        return (f"{where}: a command-line option (--{flag}), not a configuration-file "
                "option")
    close = difflib.get_close_matches(name.option, sorted(known[_normalise(name.section)]),
                                      n=1)
    if close:
        return f"{where}: unknown option; did you mean {close[0]}?"
    elsewhere = sorted(s for s, opts in known.items() if name.option in opts)
    if elsewhere:
        return f"{where}: unknown option here; it belongs in [{elsewhere[0]}]"
    return f"{where}: unknown option"


def check_config_files(conf: cfg.ConfigOpts) -> None:
    """Raise :class:`ConfigError` naming the first unknown section or option."""
    problems = unknown_names(conf)
    if problems:
        more = len(problems) - 1
        raise ConfigError(problems[0][1] + (f" (and {more} more unknown name(s))"
                                            if more else ""))
