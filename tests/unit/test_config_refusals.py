"""Configuration mistakes refused at start: one line naming what is wrong, exit status 2.

The console scripts run as subprocesses (the installed entry points); the
checks behind them are also tested directly.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from oslo_config import cfg

from zkpoll.cmd import polling as polling_cmd
from zkpoll.cmd._config_files import unknown_names
from zkpoll.coordination import parse_backend_url
from zkpoll.coordination.loader import get_coordinator, register_opts
from zkpoll.exceptions import ConfigError, PollingConfigError
from zkpoll.ownership import Contact, OwnershipConfig, OwnershipState
from zkpoll.polling import dynamic, options
from zkpoll.polling.plugins import load_plugins
from zkpoll.polling.sources import MAX_INTERVAL, load_polling_config
from zkpoll.polling.startup_checks import check_discoveries, check_namespaces
from zkpoll.publisher import load_publisher

BIN = Path(sys.executable).parent
GOOD_YAML = "sources:\n  - name: s\n    interval: 5\n    meters: ['host.*']\n"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / script), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, stdin=subprocess.DEVNULL, check=False)


def one_error(result: subprocess.CompletedProcess[str], script: str) -> str:
    """The single error line; the run must have exited 2 without a traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if f"{script}: error:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def conf_in(tmp_path: Path, text: str, polling: str = GOOD_YAML) -> Path:
    (tmp_path / "polling.yaml").write_text(polling)
    path = tmp_path / "zkpoll.conf"
    path.write_text(f"[polling]\ncfg_file = {tmp_path / 'polling.yaml'}\n" + text)
    return path


# --- item 2: unknown sections and options, both console scripts -----------------
@pytest.mark.parametrize("script", ["zkpoll-polling", "zkpoll-status"])
@pytest.mark.parametrize("text, expected", [
    ("[coordinaton]\nbackend_url = zookeeper://h:2181\n",
     "zkpoll.conf:3: [coordinaton]: unknown section; did you mean [coordination]?"),
    ("[coordination]\nbackend_ur = zookeeper://h:2181\n",
     "zkpoll.conf:4: [coordination] backend_ur: unknown option; did you mean backend_url?"),
    ("[DEFAULT]\nbackend_url = zookeeper://h:2181\n",
     "zkpoll.conf:4: [DEFAULT] backend_url: unknown option here; it belongs in [coordination]"),
])
def test_unknown_names_are_refused(tmp_path: Path, script: str, text: str,
                                   expected: str) -> None:
    conf = conf_in(tmp_path, text)
    line = one_error(run(script, "--config-file", str(conf), "--polling-namespaces",
                         "compute", cwd=tmp_path) if script == "zkpoll-polling"
                     else run(script, "--config-file", str(conf), cwd=tmp_path), script)
    assert line.endswith(str(tmp_path / expected)), line


def test_unknown_name_in_a_config_dir_file(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-coordination.conf").write_text(
        "[coordination]\n\nbackend_url = zookeeper://h:2181\nsettle_tim = 3\n")
    line = one_error(run("zkpoll-status", "--config-dir", str(tmp_path / "conf.d"),
                         cwd=tmp_path), "zkpoll-status")
    assert "10-coordination.conf:4: [coordination] settle_tim: unknown option; did you mean " \
           "settle_time?" in line


def parsed(tmp_path: Path, text: str) -> cfg.ConfigOpts:
    path = tmp_path / "x.conf"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[])
    return conf


def test_options_registered_later_by_a_plugin_are_accepted(tmp_path: Path) -> None:
    conf = parsed(tmp_path, "[acme_probe]\nendpoint = x\n[coordination]\nbackend_url = z://h\n")
    assert [why for _n, why in unknown_names(conf)] == [
        f"{tmp_path}/x.conf:1: [acme_probe]: unknown section"]
    conf.register_opts([cfg.StrOpt("endpoint")], group="acme_probe")  # the plugin loads
    assert unknown_names(conf) == []


def test_declared_and_deprecated_names_and_group_case_are_accepted(tmp_path: Path) -> None:
    # [polling] is not registered here but zkpoll declares it (oslo.config.opts);
    # oslo.config reads group names case-insensitively.
    conf = parsed(tmp_path, "[Coordination]\nbackend_url = z://h\n[polling]\nbatch_size = 3\n"
                  "[old]\nname = 1\n")
    conf.register_opts([cfg.StrOpt("new", deprecated_opts=[cfg.DeprecatedOpt("name", "old")])],
                       group="new")
    assert unknown_names(conf) == []


def test_command_line_only_options_are_refused_in_files(tmp_path: Path) -> None:
    conf = parsed(tmp_path, "[DEFAULT]\nformat = json\n")
    assert "[DEFAULT] format: unknown option" in unknown_names(conf)[0][1]
    (tmp_path / "y.conf").write_text("[DEFAULT]\nwhat = json\n")
    conf2 = cfg.ConfigOpts()
    conf2.register_cli_opts([cfg.StrOpt("what")])
    conf2(["--config-file", str(tmp_path / "y.conf")], default_config_files=[])
    assert unknown_names(conf2)[0][1].endswith(
        "[DEFAULT] what: a command-line option (--what), not a configuration-file option")


# --- item 3: errors that were tracebacks or silent localhost ------------------------
@pytest.mark.parametrize("url, fragment", [
    ("zookeeper://", "'zookeeper://' names no server (an empty host is not localhost)"),
    ("redis://", "'redis://' names no server"),
    ("memcached://", "'memcached://' names no server"),
    ("redis://:secret@/zkpoll", "names no server"),
    ("zookeeper://h:70000", "port 70000 of 'h:70000'"),
    ("zookeeper://h:1,g:0", "port 0 of 'g:0'"),
    ("zookeeper://h:1/a//b", "has an empty, '.' or '..' component"),
    ("zookeeper://h:1/a/../b", "has an empty, '.' or '..' component"),
    ("zookeeper://h:1/a%00b", "contains a control character"),
])
def test_backend_urls_refused(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[coordination\] backend_url: ") as info:
        parse_backend_url(url)
    assert fragment in str(info.value)
    assert "secret" not in str(info.value)


def test_backend_url_error_names_its_file(tmp_path: Path) -> None:
    conf = parsed(tmp_path, "[coordination]\nbackend_url = redis://\n")
    with pytest.raises(ConfigError, match=rf"\(in {tmp_path}/x.conf\)$"):
        get_coordinator(conf)


@pytest.mark.parametrize("script", ["zkpoll-polling", "zkpoll-status"])
@pytest.mark.parametrize("url", ["zookeeper://", "zookeeper://h:99999", "memcached://"])
def test_bad_backend_url_exits_2(tmp_path: Path, script: str, url: str) -> None:
    conf = conf_in(tmp_path, f"[coordination]\nbackend_url = {url}\n")
    args = ["--polling-namespaces", "compute"] if script == "zkpoll-polling" else []
    line = one_error(run(script, "--config-file", str(conf), *args, cwd=tmp_path), script)
    assert "[coordination] backend_url:" in line and f"(in {conf})" in line


@pytest.mark.parametrize("script", ["zkpoll-polling", "zkpoll-status"])
def test_config_file_that_is_a_directory_or_binary(tmp_path: Path, script: str) -> None:
    line = one_error(run(script, "--config-file", str(tmp_path), cwd=tmp_path), script)
    assert line.endswith(f"{tmp_path}: cannot read: Is a directory")
    binary = tmp_path / "b.conf"
    binary.write_bytes(b"\xff\xfe[coordination]\n")
    line = one_error(run(script, "--config-file", str(binary), cwd=tmp_path), script)
    assert f"{binary}: not UTF-8 text" in line


# --- item 7: namespaces, discoveries, intervals --------------------------------------
def test_namespace_typo_refused_with_the_closest_one(tmp_path: Path) -> None:
    conf = conf_in(tmp_path, "")
    line = one_error(run("zkpoll-polling", "--config-file", str(conf), "--polling-namespaces",
                         "synthetic,centrl", cwd=tmp_path), "zkpoll-polling")
    assert line.endswith("--polling-namespaces: unknown namespace 'centrl'; did you mean "
                         "'central'? known namespaces: central, compute, synthetic")


def test_check_namespaces() -> None:
    check_namespaces(["a", "b"], {"a", "b", "c"})
    with pytest.raises(ConfigError, match="give at least one"):
        check_namespaces([], {"a"})
    with pytest.raises(ConfigError, match=r"unknown namespace 'x'; known namespaces: a$"):
        check_namespaces(["x"], {"a"})


def test_unknown_discovery_refused_at_start(tmp_path: Path) -> None:
    yaml_text = ("sources:\n  - name: s\n    interval: 5\n    meters: ['host.*']\n"
                 "  - name: web\n    interval: 5\n    meters: ['http.status']\n"
                 "    discovery: ['statc://a,b']\n")
    conf = conf_in(tmp_path, "", yaml_text)
    line = one_error(run("zkpoll-polling", "--config-file", str(conf), "--polling-namespaces",
                         "central", "compute", cwd=tmp_path), "zkpoll-polling")
    # the discoveries of zkpoll and of the plugins of plugins/ (installed by run_tests.sh)
    assert line.endswith("polling.yaml:5 (source 'web'): unknown discovery 'statc'; did you "
                         "mean 'static'? loaded discoveries: file, local_host, "
                         "prometheus_sd, redis_replication, snmp_devices, static, "
                         "zookeeper_servers")


def test_pollster_default_discovery_must_be_loaded(tmp_path: Path) -> None:
    polling = load_polling_config(str(conf_in(tmp_path, "").parent / "polling.yaml"))
    plugins = load_plugins(None, ["compute"])
    source = polling.sources[0]
    infos = [plugins.pollsters[m] for m in source.select_meters(plugins.pollsters)]
    check_discoveries(polling.path, [(source, infos)], plugins.discoveries)
    with pytest.raises(PollingConfigError, match=r"polling.yaml:2 \(source 's'\): meter "
                       r"host\.\S+ needs discovery 'local_host', which is not loaded"):
        check_discoveries(polling.path, [(source, infos)], {})


AT_MOST = "must be at most 2678400 seconds (31 days)"


@pytest.mark.parametrize("value, reason", [
    ("1e20", "must be a whole number of seconds, got a string ('1e20')"),
    ("1.0e+20", "must be a whole number of seconds, got a number (1e+20)"),
    ("100000000000000000000", f"{AT_MOST}, got a number of 20 digits or more"),
    (str(MAX_INTERVAL + 1), f"{AT_MOST}, got {MAX_INTERVAL + 1}"),
])
def test_absurd_intervals_refused(tmp_path: Path, value: str, reason: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"sources:\n  - name: s\n    interval: {value}\n    meters: [a]\n")
    with pytest.raises(PollingConfigError) as info:
        load_polling_config(str(path))
    assert str(info.value) == f"{path}:3 (source 's'): invalid 'interval': {reason}"


def test_integer_too_long_to_convert_is_a_yaml_error(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"sources:\n  - name: s\n    interval: {'9' * 5000}\n    meters: [a]\n")
    with pytest.raises(PollingConfigError, match="invalid YAML value"):
        load_polling_config(str(path))


# --- item 8: --list-plugins -----------------------------------------------------------
def test_list_plugins(tmp_path: Path) -> None:
    result = run("zkpoll-polling", "--config-file", str(conf_in(tmp_path, "")),
                 "--list-plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["central", "pollster", "http.status", "zkpoll"] == rows[1 + [
        r[2] for r in rows[1:-1]].index("http.status")][:4]
    kinds = {(r[0], r[1]) for r in rows[1:-1]}
    assert {("compute", "discovery"), ("-", "publisher"), ("synthetic", "pollster")} <= kinds
    assert rows[-1][3:] == ["loaded,", "0", "failed,", "0", "opted", "out"]


def test_list_plugins_names_a_broken_plugin_and_exits_1(tmp_path: Path) -> None:
    info = tmp_path / "site" / "acme_broken-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-broken\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[zkpoll.poll.central]\n"
                                           "acme.meter = acme_missing_module:Pollster\n")
    env_path = f"{tmp_path / 'site'}"
    result = subprocess.run([str(BIN / "zkpoll-polling"), "--config-file",
                             str(conf_in(tmp_path, "")), "--list-plugins"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 1, result.stderr
    row = next(line for line in result.stdout.splitlines() if "acme.meter" in line)
    assert "acme-broken 1.2" in row
    assert "FAILED: ModuleNotFoundError: No module named 'acme_missing_module'" in row
    assert ", 1 failed," in result.stdout.splitlines()[-1]


# --- item 10: wording ---------------------------------------------------------------------
def test_status_unknown_command_names_the_commands(tmp_path: Path) -> None:
    line = one_error(run("zkpoll-status", "foo", cwd=tmp_path), "zkpoll-status")
    assert "--command" not in line
    assert line.endswith("unknown command 'foo'; commands: owner RESOURCE_ID, forget GROUP, "
                         "alarms (none: the health report)")


def test_status_options_are_not_in_the_sample_config() -> None:
    sample = (Path(__file__).parents[2] / "etc/zkpoll/zkpoll.conf.sample").read_text()
    for name in ("format", "group", "source", "timeout", "command", "list_plugins"):
        assert f"\n#{name} = " not in sample and f"\n{name} = " not in sample


def test_polling_namespaces_help_says_how_and_default(tmp_path: Path) -> None:
    result = run("zkpoll-polling", "--help", cwd=tmp_path)
    text = "".join(result.stdout.split())  # argparse wraps lines anywhere
    assert "(default:computeandcentral)" in text
    assert "(--polling-namespacescentralcompute)" in text
    assert "(--polling-namespacescentral,compute)" in text


def test_relative_file_publisher_keeps_its_relative_url() -> None:
    publisher = load_publisher(None, "file:zkpoll-samples.jsonl")
    assert publisher.redacted_url == "file:zkpoll-samples.jsonl"
    assert load_publisher(None, "file:///var/x.jsonl").redacted_url == "file:///var/x.jsonl"
    assert urllib.parse.urlsplit("file:x").geturl() == "file:///x"  # why it needed fixing


def test_fence_reason_before_any_answer_is_not_for_infs() -> None:
    state = OwnershipState(OwnershipConfig("g", 5.0))
    reason = state.fence_reason(Contact(0.0, float("inf"), 10.0))
    assert reason == ("no answer from the coordination backend yet (lease 7.5s of a 10.0s "
                      "session)")


def test_the_loaded_polling_yaml_is_logged(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf(["--config-file", str(conf_in(tmp_path, ""))], default_config_files=[])
    with caplog.at_level(logging.INFO, logger="zkpoll.polling.options"):
        options.load_sources(conf)
    assert f"polling definition {tmp_path / 'polling.yaml'}: 1 source(s): s" in caplog.text


@pytest.mark.parametrize("url, says", [
    ("redis://127.0.0.1:1", "Redis at 127.0.0.1:1"),
    ("memcached://127.0.0.1:1", "Memcached at 127.0.0.1:1"),
    ("zookeeper://127.0.0.1:1", "ZooKeeper at 127.0.0.1:1: no answer within 1s"),
    (None, "forget: no [coordination] backend_url in"),
])
def test_forget_without_a_backend_is_one_line(tmp_path: Path, url: str | None,
                                              says: str) -> None:
    conf = tmp_path / "zkpoll.conf"
    conf.write_text("[coordination]\n" + (f"backend_url = {url}\n" if url else ""))
    line = one_error(run("zkpoll-status", "--config-file", str(conf), "--timeout", "1",
                         "forget", "g", cwd=tmp_path), "zkpoll-status")
    assert says in line


@pytest.mark.parametrize("variable, expected", [
    ("OS_COORDINATION__BACKEND_UR",
     ("environment variable OS_COORDINATION__BACKEND_UR: [coordination] backend_ur: unknown "
     "option; did you mean OS_COORDINATION__BACKEND_URL?")),
    ("OS_COORDINATON__BACKEND_URL",
     ("environment variable OS_COORDINATON__BACKEND_URL: unknown section [coordinaton]; did "
     "you mean OS_COORDINATION__BACKEND_URL?")),
])
def test_unknown_environment_variables_are_refused(tmp_path: Path, variable: str,
                                                   expected: str) -> None:
    conf = conf_in(tmp_path, "")
    result = subprocess.run([str(BIN / "zkpoll-polling"), "--config-file", str(conf),
                             "--polling-namespaces", "compute"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, check=False,
                            env={"PATH": "/usr/bin:/bin", variable: "zookeeper://h:2181"})
    assert one_error(result, "zkpoll-polling").endswith(expected)


def test_another_programs_environment_variables_are_left_alone(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setenv("OS_PLACEMENT_DATABASE__CONNECTION", "mysql://x")
    monkeypatch.setenv("OS_POLLING__BATCH_SIZE", "3")
    assert unknown_names(parsed(tmp_path, "[coordination]\nbackend_url = z://h\n")) == []


def test_a_plugin_distribution_declares_its_own_section(tmp_path: Path) -> None:
    """A third-party plugin's [acme] section is accepted where the plugin is not loaded."""
    site = tmp_path / "site"
    info = site / "acme_probe-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-probe\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        "[zkpoll.poll.central]\nacme.up = acme_probe:UpPollster\n"
        "[oslo.config.opts]\nacme_probe = acme_probe:list_opts\n")
    (site / "acme_probe.py").write_text(
        "from oslo_config import cfg\n\n\ndef list_opts():\n"
        "    return [('acme', [cfg.StrOpt('endpoint', help='x')])]\n")

    def status(text: str) -> subprocess.CompletedProcess[str]:
        conf = tmp_path / "zkpoll.conf"
        conf.write_text(text)
        return subprocess.run([str(BIN / "zkpoll-status"), "--config-file", str(conf)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path,
                              env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                              check=False)

    accepted = status("[acme]\nendpoint = http://x\n")
    assert accepted.returncode == 1 and "standalone" in accepted.stdout, accepted.stderr
    line = one_error(status("[acme]\nendpont = http://x\n"), "zkpoll-status")
    assert line.endswith("zkpoll.conf:2: [acme] endpont: unknown option; did you mean endpoint?")


def test_a_namespace_only_dynamic_pollsters_define_is_known(tmp_path: Path) -> None:
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "files.yaml").write_text(
        "- name: host.files.open\n  sample_type: gauge\n  unit: file\n"
        "  value_attribute: open\n  host_command: \"echo '{\\\"open\\\": 3}'\"\n"
        "  namespaces: [acme]\n")
    conf = cfg.ConfigOpts()
    conf.register_cli_opts(polling_cmd.CLI_OPTS)
    conf(["--polling-namespaces=acme,synthetic"], default_config_files=[])
    conf.register_opts(dynamic.OPTS, group="polling")
    conf.set_override("pollsters_definitions_dirs", [str(tmp_path / "defs")], "polling")
    assert polling_cmd._namespaces(conf) == ["acme", "synthetic"]
    conf.set_override("pollsters_definitions_dirs", [], "polling")
    with pytest.raises(ConfigError, match="unknown namespace 'acme'"):
        polling_cmd._namespaces(conf)
