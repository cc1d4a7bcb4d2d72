"""``zkpoll-alarm`` as an operator runs it: start-up errors, a standalone evaluator
end to end (real Prometheus, webhook receiver, endpoint, SIGHUP, SIGTERM),
``threshold`` alarms over a real polling agent's ``/samples``, and
``zkpoll-status alarms`` against a ZooKeeper group."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.functional.agents import agent_command, write_static_source
from tests.functional.alarm_fleet import evaluator_command
from zkpoll.testing.waiting import wait_for
from zkpoll.testing.webhook import WebhookReceiver

pytestmark = pytest.mark.functional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def write_conf(path: Path, alarms: Path, **sections: dict[str, object]) -> Path:
    sections.setdefault("alarm", {})
    sections["alarm"] = {"definitions_dir": alarms, "spool_dir": path.parent / "spool",
                         **sections["alarm"]}
    text = ""
    for name, options in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items())
    path.write_text(text)
    return path


def run(conf: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*evaluator_command(), "--config-file", str(conf)],
                          capture_output=True, text=True, timeout=timeout, check=False)


def flip_alarm(alarm_id: str, url: str, interval: int = 1, query: str = "vector(1)") -> str:
    return (f"  - id: {alarm_id}\n    type: prometheus\n    query: '{query}'\n"
            f"    comparison_operator: gt\n    threshold: 0.5\n"
            f"    evaluation_interval: {interval}\n    alarm_actions: ['{url}', 'log://']\n"
            f"    ok_actions: ['{url}']\n")


# --- start-up errors: one line, exit 2 ---------------------------------------------------


def test_bad_alarm_file_is_one_line_with_file_and_line_exit_2(tmp_path: Path) -> None:
    alarms = tmp_path / "alarms"
    alarms.mkdir()
    (alarms / "bad.yaml").write_text("alarms:\n  - id: x1\n    type: prometheus\n"
                                     "    query: up\n    threshold: high\n")
    result = run(write_conf(tmp_path / "a.conf", alarms,
                            alarm={"prometheus_url": "http://127.0.0.1:9"}))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{alarms / 'bad.yaml'}:5" in lines[0] and "x1" in lines[0]
    assert "threshold" in lines[0]
    assert "Traceback" not in result.stderr


def test_prometheus_alarm_without_prometheus_url_exit_2(tmp_path: Path) -> None:
    alarms = tmp_path / "alarms"
    alarms.mkdir()
    (alarms / "a.yaml").write_text("alarms:\n" + flip_alarm("p1", "log://"))
    result = run(write_conf(tmp_path / "a.conf", alarms))
    assert result.returncode == 2, result.stderr
    assert "prometheus_url" in result.stderr and "p1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_alarm_option_exit_2(tmp_path: Path) -> None:
    alarms = tmp_path / "alarms"
    alarms.mkdir()
    result = run(write_conf(tmp_path / "a.conf", alarms, alarm={"prometheus_uri": "x"}))
    assert result.returncode == 2, result.stderr
    assert "prometheus_uri" in result.stderr
    assert "Traceback" not in result.stderr


# --- standalone, end to end --------------------------------------------------------------


def test_standalone_evaluator_end_to_end(tmp_path: Path, managed_prometheus) -> None:
    prometheus = managed_prometheus()
    port = free_port()
    with WebhookReceiver() as receiver:
        alarms = tmp_path / "alarms"
        alarms.mkdir()
        (alarms / "a.yaml").write_text("alarms:\n" + flip_alarm("up1", receiver.url_for("/h")))
        conf = write_conf(tmp_path / "a.conf", alarms,
                          alarm={"prometheus_url": f"http://{prometheus.address}",
                                 "evaluation_log": tmp_path / "evals.jsonl"},
                          api={"bind": f"127.0.0.1:{port}"})
        log = open(tmp_path / "alarm.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([*evaluator_command(), "--config-file", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=log)
        try:
            delivered = receiver.wait_for(1, timeout=60)
            assert delivered[0].key == "up1:1"
            assert delivered[0].body["current"] == "alarm"
            assert delivered[0].body["alarm_id"] == "up1"
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: "up1" in get_json(base + "/alarms")["alarms"], 30,
                     '"up1" in get_json(base + "/alarms")["alarms"]', interval=0.2)
            assert get_json(base + "/healthz")["status"] == "ok"
            metrics = get_text(base + "/metrics")
            assert 'zkpoll_alarm_transitions_total{state="alarm"} 1.0' in metrics
            assert "zkpoll_alarm_evaluation_lag_seconds_bucket" in metrics
            assert 'zkpoll_alarm_notifications_delivered_total{url=' in metrics

            # SIGHUP: a second file is loaded, its alarm evaluated and notified
            (alarms / "b.yaml").write_text("alarms:\n" + flip_alarm("up2", receiver.url_for("/h"),
                                                                    query="vector(0)"))
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "up2:1" in list(receiver.keys()), 60,
                     '"up2:1" in list(receiver.keys())', interval=0.2,
                     diagnostics=lambda: receiver.keys())
            assert [d.body["current"] for d in receiver.deliveries() if d.key == "up2:1"] \
                == ["ok"]
            # SIGHUP with a broken file: refused, the running alarms go on
            (alarms / "c.yaml").write_text("alarms:\n  - id: bad\n")
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "reload refused" in (tmp_path / "alarm.log").read_text(),
                     30, '"reload refused" in alarm.log', interval=0.2)
            evaluated = len((tmp_path / "evals.jsonl").read_text().splitlines())
            wait_for(lambda: len((tmp_path / "evals.jsonl").read_text().splitlines())
                     > evaluated + 2, 30, f"more than {evaluated + 2} evaluations logged",
                     interval=0.2)
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
            log.close()
        text = (tmp_path / "alarm.log").read_text()
        assert rc == 0, text[-3000:]
        assert "Traceback" not in text
        assert "alarm up1 (up1): insufficient data -> alarm" in text   # the log:// action
        keys = receiver.keys()
        assert keys.count("up1:1") == 1 and keys.count("up2:1") == 1, keys
        lines = [json.loads(x) for x in (tmp_path / "evals.jsonl").read_text().splitlines()]
        cycles = [x["cycle"] for x in lines if x["alarm"] == "up1"]
        assert cycles == sorted(set(cycles)), "a cycle of up1 evaluated twice"
        assert {x["result"] for x in lines} == {"written"}


def test_second_standalone_evaluator_of_one_configuration_refused(
        tmp_path: Path, managed_prometheus) -> None:
    prometheus = managed_prometheus()
    alarms = tmp_path / "alarms"
    alarms.mkdir()
    (alarms / "a.yaml").write_text("alarms:\n" + flip_alarm("up1", "log://", interval=5))
    conf = write_conf(tmp_path / "a.conf", alarms,
                      alarm={"prometheus_url": f"http://{prometheus.address}"})
    log_path = tmp_path / "first.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen([*evaluator_command(), "--config-file", str(conf)],
                                 stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for(lambda: "alarm evaluator" in log_path.read_text(), 30,
                 '"alarm evaluator" in log_path.read_text()', interval=0.2,
                 diagnostics=lambda: log_path.read_text())
        second = run(conf, timeout=30)
        assert second.returncode == 2, second.stderr
        assert "already" in second.stderr.lower(), second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)


# --- threshold alarms over a real polling agent's /samples --------------------------------


def test_threshold_alarm_reads_a_polling_agents_samples(tmp_path: Path) -> None:
    api_port, polling = free_port(), tmp_path / "polling.yaml"
    write_static_source(polling, 3, interval=1)
    agent_conf = tmp_path / "agent.conf"
    agent_conf.write_text(f"[polling]\ncfg_file = {polling}\nlock_dir = {tmp_path}\n"
                          f"[publisher]\ndefault_publishers = null://\n"
                          f"[api]\nbind = 127.0.0.1:{api_port}\n")
    agent = subprocess.Popen([*agent_command(), "--config-file", str(agent_conf),
                              "--polling-namespaces", "synthetic"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: _samples(base), 30, "_samples(base)", interval=0.2)
        rows = _samples(base)
        assert {r["resource_id"] for r in rows} == {"res-00000", "res-00001", "res-00002"}
        assert {r["volume"] for r in rows} == {1.0}
        with WebhookReceiver() as receiver:
            alarms = tmp_path / "alarms"
            alarms.mkdir()
            (alarms / "t.yaml").write_text(
                "alarms:\n  - id: const-high\n    type: threshold\n"
                "    meter: synthetic.constant\n    resources: ['res-00000', 'res-00002']\n"
                "    aggregation: sum\n    comparison_operator: ge\n    threshold: 2\n"
                f"    evaluation_interval: 1\n    alarm_actions: ['{receiver.url_for('/t')}']\n")
            conf = write_conf(tmp_path / "a.conf", alarms, alarm={"sample_endpoints": base})
            evaluator = subprocess.Popen([*evaluator_command(), "--config-file", str(conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
            try:
                delivered = receiver.wait_for(1, timeout=60)
            finally:
                evaluator.send_signal(signal.SIGTERM)
                _, err = evaluator.communicate(timeout=60)
            assert delivered[0].key == "const-high:1", err[-2000:]
            assert delivered[0].body["current"] == "alarm"
            assert delivered[0].body["reason_data"]["most_recent"] == 2.0
            assert evaluator.returncode == 0, err[-2000:]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)


def _samples(base: str) -> list[dict[str, Any]]:
    try:
        return get_json(base + "/samples?meter=synthetic.constant")["samples"]
    except OSError:
        return []


# --- zkpoll-status alarms -------------------------------------------------------------------


def test_status_alarms_shows_evaluators_states_and_owners(
        tmp_path: Path, zookeeper_server, zk_chroot, managed_prometheus) -> None:
    prometheus = managed_prometheus()
    alarms = tmp_path / "alarms"
    alarms.mkdir()
    (alarms / "a.yaml").write_text("alarms:\n" + "".join(
        flip_alarm(f"s{i}", "log://", query=f"vector({i % 2})") for i in range(6)))
    url = f"zookeeper://{zookeeper_server.address}{zk_chroot}?timeout=3"
    procs = []
    for name in ("e1", "e2"):
        conf = write_conf(tmp_path / f"{name}.conf", alarms,
                          coordination={"backend_url": url, "member_name": name,
                                        "heartbeat_interval": 0.2, "settle_time": 1.0},
                          alarm={"prometheus_url": f"http://{prometheus.address}",
                                 "spool_dir": tmp_path / f"{name}-spool"})
        procs.append(subprocess.Popen([*evaluator_command(), "--config-file", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    status = [sys.executable, "-m", "zkpoll.cmd.status", "--config-file",
              str(tmp_path / "e1.conf"), "alarms", "--format", "json"]
    try:
        def states() -> dict[str, Any]:
            out = subprocess.run(status, capture_output=True, text=True, timeout=60, check=False)
            try:
                return json.loads(out.stdout)
            except ValueError:
                return {}
        wait_for(lambda: len(states().get("evaluators", [])) == 2
                 and all(a["state"] for a in states()["alarms"]),
                 60, "2 evaluators and a state for every alarm", interval=0.2)
        doc = states()
        assert doc["exit_code"] == 0, doc
        by_id = {a["alarm_id"]: a for a in doc["alarms"]}
        assert set(by_id) == {f"s{i}" for i in range(6)}
        assert {by_id[f"s{i}"]["state"] for i in (1, 3, 5)} == {"alarm"}
        assert {by_id[f"s{i}"]["state"] for i in (0, 2, 4)} == {"ok"}
        members = {e["member_id"] for e in doc["evaluators"]}
        assert all(a["owner"] in members for a in doc["alarms"])
        assert all(a["evaluated_by"] in members for a in doc["alarms"])
        table = subprocess.run(status[:-2], capture_output=True, text=True,
                               timeout=60, check=False)
        assert table.returncode == 0, table.stderr
        assert "OWNER NOW" in table.stdout and "s5" in table.stdout
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


# --- every coordination backend ---------------------------------------------------------------


def test_two_evaluators_share_alarms_exactly_once_on_every_backend(
        tmp_path: Path, backend_url: str, managed_prometheus) -> None:
    """Two evaluators on ZooKeeper, Redis or Memcached: every alarm written once per
    cycle once both are in the ring, states as the query says, each transition
    delivered once."""
    prometheus = managed_prometheus()
    count = 20
    with WebhookReceiver() as receiver:
        alarms = tmp_path / "alarms"
        alarms.mkdir()
        (alarms / "a.yaml").write_text("alarms:\n" + "".join(
            flip_alarm(f"b{i:02d}", receiver.url_for("/b"), query=f"vector({i % 2})")
            for i in range(count)))
        procs = []
        for name in ("e1", "e2"):
            conf = write_conf(tmp_path / f"{name}.conf", alarms,
                              coordination={"backend_url": f"{backend_url}?timeout=3",
                                            "member_name": name, "heartbeat_interval": 0.2,
                                            "settle_time": 1.0},
                              alarm={"prometheus_url": f"http://{prometheus.address}",
                                     "spool_dir": tmp_path / f"{name}-spool",
                                     "evaluation_log": tmp_path / f"{name}.jsonl"})
            procs.append(subprocess.Popen([*evaluator_command(), "--config-file", str(conf)],
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(tmp_path / f"{name}.log", "wb")))  # noqa: SIM115

        def written() -> list[dict[str, Any]]:
            out = []
            for name in ("e1", "e2"):
                path = tmp_path / f"{name}.jsonl"
                if path.exists():
                    out += [dict(json.loads(x), agent=name)
                            for x in path.read_text().splitlines() if x.endswith("}")]
            return out

        def shared_cycles() -> list[int]:
            by_cycle: dict[int, set[str]] = {}
            for e in written():
                by_cycle.setdefault(e["cycle"], set()).add(e["agent"])
            return sorted(c for c, who in by_cycle.items() if who == {"e1", "e2"})

        try:
            wait_for(lambda: len(shared_cycles()) >= 4, 60, "len(shared_cycles()) >= 4",
                     interval=0.2, diagnostics=lambda: (tmp_path / "e2.log").read_text()[-3000:])
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in procs]
        logs = "".join((tmp_path / f"{n}.log").read_text() for n in ("e1", "e2"))
        assert codes == [0, 0], logs[-3000:]
        assert "Traceback" not in logs
        evaluations = written()
        for cycle in shared_cycles()[:-1]:
            rows = [e for e in evaluations if e["cycle"] == cycle]
            per_alarm = {e["alarm"] for e in rows}
            assert len(per_alarm) == count and len(rows) == count, (cycle, rows)
            assert all(e["result"] == "written" for e in rows)
        for e in evaluations:
            assert e["state"] == ("alarm" if int(e["alarm"][1:]) % 2 else "ok"), e
        wait_for(lambda: len(set(receiver.keys())) >= count, 30,
                 "len(set(receiver.keys())) >= count", interval=0.2)
        keys = receiver.keys()
        assert sorted(keys) == sorted({f"b{i:02d}:1" for i in range(count)}), keys


def test_prometheus_query_against_a_real_server(managed_prometheus) -> None:
    """Values at the cycle start; a fractional query_timeout is accepted (Prometheus
    refuses "2.5s" as a duration: the bench found every query failing with it)."""
    from zkpoll.alarm.definitions import AlarmDefinition
    from zkpoll.alarm.queries import PrometheusQuery

    prometheus = managed_prometheus()
    query = PrometheusQuery(f"http://{prometheus.address}", timeout=2.5)

    def point(expr: str, at: float = 1_700_000_000.0):  # type: ignore[no-untyped-def]
        return query(AlarmDefinition(id="q", type="prometheus", query=expr, threshold=1), at)

    assert point("vector(time())").values == (1_700_000_000.0,)
    assert point("scalar(vector(3))").values == (3.0,)
    assert point("vector(1) * 0 > 1").values is None
    refused = point("rate(")
    assert refused.values is None and "bad_data" in refused.error
    assert "instant vector" in point("up[5m]").error
