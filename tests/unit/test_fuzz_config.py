"""Fuzz the operator's inputs: config files, backend URLs and polling YAML.

The only acceptable outcomes are a valid configuration or one of zkpoll's
own errors (which the console scripts print as one line with exit status
2): never another exception (a traceback), never a hang.  The config-file
cases run in-process through the functions the console scripts call
(``zkpoll.cmd.polling._parse`` + ``configure``, ``zkpoll.cmd.status.load``);
a few real subprocess runs prove the exit status end to end.  Each case is
bounded in time by SIGALRM; examples are derandomised so CI is repeatable.
"""

from __future__ import annotations

import contextlib
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oslo_config import cfg

from zkpoll.cmd import polling as polling_cmd
from zkpoll.cmd import status as status_cmd
from zkpoll.coordination import get_coordinator, parse_backend_url, register_opts
from zkpoll.exceptions import ConfigError, PollingConfigError, ZkpollError
from zkpoll.opts import list_opts
from zkpoll.polling.agent import Agent
from zkpoll.polling.sources import load_polling_config

FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
CASE_SECONDS = 10  # one example may take this long before it counts as a hang

GOOD_YAML = ("sources:\n  - name: s\n    interval: 5\n    meters: ['synthetic.*']\n"
             "    resources: [r1]\n    publishers: ['null://']\n")


class Hang(Exception):
    """An example ran past CASE_SECONDS."""


@contextlib.contextmanager
def time_limit(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Raise Hang in the test if its body runs past ``seconds``.

    pytest-timeout's own SIGALRM timer (if any) is put back afterwards,
    shortened by the time spent here.
    """
    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"no answer within {seconds}s")

    began = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - began)))


# --- strategies -----------------------------------------------------------------------
#: zkpoll's real sections and options (drawn most of the time) ...
REAL = {group: sorted(o.dest for o in opts) for group, opts in list_opts()}
#: ... and typos, wrong places and command-line-only names.
JUNK_SECTIONS = ["coordinaton", "Coordination", "default", "pollin", "x", "ＤＥＦＡＵＬＴ"]
JUNK_OPTIONS = ["backend_ur", "format", "timeout", "polling_namespaces", "list_plugins",
                "backend_url", "x", "debug", "Batch_Size"]
WEIRD = ["", "0", "-1", "1e308", "1e400", "nan", "inf", "-inf", "true", "maybe", "99999999999",
         "10", "0.5", "null://", "log://", "file:out.jsonl", "zookeeper://", "redis://",
         "memcached://h:0", "zookeeper://h:70000", "zookeeper://h:2181/a//b", "json",
         "DIGEST-MD5", ":", "%(x)s", "$x", "ünïcode", "a" * 300, "x://y", "fence"]
URL_CHARS = string.ascii_letters + string.digits + ":/@?,[]%=&._-+ #\\\x00\x7f"

hosts = st.one_of(
    st.sampled_from(["h", "127.0.0.1", "[::1]", "", "h h", "[::1", "h:", ":1", "-", "h_1"]),
    st.tuples(st.sampled_from(["h", "[::1]", "zk-1.example"]),
              st.integers(-2, 100_000)).map(lambda hp: f"{hp[0]}:{hp[1]}"),
    st.text(URL_CHARS, max_size=12))
urls = st.one_of(
    st.builds(lambda scheme, userinfo, hs, path, query: f"{scheme}://{userinfo}{','.join(hs)}"
              f"{path}{query}",
              st.sampled_from(["zookeeper", "kazoo", "redis", "memcached", "etcd3", "Z K", ""]),
              st.sampled_from(["", "u:p@", ":p@", "@", "u@"]),
              st.lists(hosts, max_size=3),
              st.sampled_from(["", "/", "/zkpoll", "/1/x", "/a//b", "/..", "/%00", "/a b",
                               "/99999999999999999999"]),
              st.sampled_from(["", "?timeout=3", "?timeout=0", "?timeout=nan", "?db=x",
                               "?heartbeat=20", "?=x&&", "?timeout=1e400", "?ssl=yes"])),
    st.text(URL_CHARS, max_size=40))
values = st.one_of(st.sampled_from(WEIRD), urls,
                   st.text(st.characters(blacklist_categories=("Cs",),
                                         blacklist_characters="\n\r"), max_size=20))


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    real = st.sampled_from(sorted(REAL))
    for section in draw(st.lists(st.one_of(real, real, real, st.sampled_from(JUNK_SECTIONS)),
                                 min_size=1, max_size=4)):
        lines.append(f"[{section}]")
        names = st.sampled_from(REAL.get(section) or JUNK_OPTIONS)
        for option in draw(st.lists(st.one_of(names, names, names,
                                              st.sampled_from(JUNK_OPTIONS)), max_size=4)):
            value = draw(values).strip()
            lines.append(f"{option} = {value}")
    return "\n".join(lines) + "\n"


# --- the config files, in-process ----------------------------------------------------------
def release(agent: Agent) -> None:
    """Free what setup() built (the agent never started)."""
    if agent._executor is not None:
        agent._executor.shutdown(wait=False)
    for publisher in agent.publishers.values():
        publisher.close(timeout=0.1)
    if agent.api is not None:
        agent.api.server.server_close()


def write(directory: str, text: str) -> list[str]:
    Path(directory, "polling.yaml").write_text(GOOD_YAML)
    path = Path(directory, "zkpoll.conf")
    path.write_text(f"[polling]\ncfg_file = {directory}/polling.yaml\n"
                    "pollsters_definitions_dirs =\n" + text)
    return ["--config-file", str(path)]


@FUZZ
@given(text=config_texts())
def test_agent_config_files(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory, time_limit():
        args = write(directory, text) + ["--polling-namespaces", "synthetic"]
        try:
            agent = polling_cmd.configure(polling_cmd._parse(args))
        except ZkpollError as exc:
            assert "\n" not in str(exc).strip(), str(exc)
            return
        release(agent)


@FUZZ
@given(text=config_texts(), command=st.sampled_from([[], ["owner", "r"], ["forget", "g"],
                                                      ["owner"], ["bogus"]]))
def test_status_config_files(text: str, command: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory, time_limit():
        try:
            status_cmd.load(write(directory, text) + command)
        except ZkpollError as exc:
            assert "\n" not in str(exc).strip(), str(exc)


# --- backend URLs ------------------------------------------------------------------------
def conf_with(url: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], default_config_files=[])
    conf.set_override("backend_url", url, "coordination")
    return conf


@FUZZ
@given(url=urls)
def test_backend_urls(url: str) -> None:
    with time_limit():
        try:
            parsed = parse_backend_url(url)
        except ConfigError as exc:
            assert str(exc).startswith("[coordination] backend_url: ")
            return
        assert parsed.hosts, url  # never an implicit localhost
        for host in parsed.hosts:
            port = host.rpartition("]")[2].rpartition(":")[2] if ":" in host else ""
            assert not port or 1 <= int(port) <= 65535, url
        with contextlib.suppress(ConfigError):
            get_coordinator(conf_with(url))


# --- polling YAML ---------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                    st.floats(allow_nan=True), st.text(max_size=8),
                    st.sampled_from(["host.*", "!x", "*", "static://a", "null://", ""]))
KEYS = ["name", "interval", "meters", "resources", "discovery", "publishers", "sinks", "x"]
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(KEYS + ["sources"]), inner,
                                            max_size=4)),
    max_leaves=15)
sources = st.fixed_dictionaries({"sources": st.lists(
    st.dictionaries(st.sampled_from(KEYS), documents, max_size=6), max_size=3)})


@FUZZ
@given(doc=st.one_of(documents, sources), raw=st.text(max_size=60), use_raw=st.booleans())
def test_polling_yaml(doc: Any, raw: str, use_raw: bool) -> None:
    with tempfile.TemporaryDirectory() as directory, time_limit():
        path = Path(directory, "polling.yaml")
        path.write_text(raw if use_raw else yaml.safe_dump(doc))
        try:
            load_polling_config(str(path))
        except PollingConfigError as exc:
            assert str(exc).startswith(str(path)), str(exc)


# --- end to end: exit status 2 and one line, no traceback -------------------------------------
BIN = Path(sys.executable).parent


@settings(max_examples=3, derandomize=True, deadline=None, database=None)
@given(script=st.sampled_from(["zkpoll-polling", "zkpoll-status"]),
       bad=st.sampled_from(["[coordinaton]\nbackend_url = zookeeper://h:1\n",
                            "[coordination]\nbackend_url = zookeeper://\n",
                            "[coordination]\nbackend_url = redis://h:0\n",
                            "[coordination]\nsession_timeout = nan\n"]))
def test_console_scripts_exit_2(script: str, bad: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        args = write(directory, bad)
        if script == "zkpoll-polling":
            args += ["--polling-namespaces", "synthetic"]
        result = subprocess.run([str(BIN / script), *args], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if ": error: " in line]) == 1


@pytest.mark.parametrize("text, message", [
    ("[polling]\npollster_timeout =\n",   # oslo.config reads it as None: a TypeError later
     "[polling] pollster_timeout: empty value"),
    ("[coordination]\nbackend_url = zookeeper://h?timeout=1e400\n",   # OverflowError in kazoo
     "query parameter timeout='1e400'"),
    ("[DEFAULT]\ndebug = maybe\n",   # oslo.config printed a line and exited 1
     "[DEFAULT] debug: Invalid Boolean value: maybe"),
])
def test_found_by_fuzzing(text: str, message: str) -> None:
    """What the fuzzers found (each a traceback or exit 1 before), as plain regression cases."""
    with tempfile.TemporaryDirectory() as directory, pytest.raises(ConfigError) as info:
        polling_cmd.configure(polling_cmd._parse(write(directory, text)))
    assert message in str(info.value)


def test_time_limit_interrupts_a_hang() -> None:
    """The per-case bound is real: a stuck case fails instead of hanging the run."""
    began = time.monotonic()
    with pytest.raises(Hang), time_limit(0.2):
        time.sleep(5)
    assert time.monotonic() - began < 2
