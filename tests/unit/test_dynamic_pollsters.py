"""Dynamic (YAML-defined) pollsters: the format, the safe operations, real HTTP and commands."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from oslo_config import cfg

from zkpoll.discovery.local import host_id
from zkpoll.exceptions import ConfigError, PluginError
from zkpoll.polling import dynamic
from zkpoll.polling.dynamic.defs import parse_definition
from zkpoll.polling.dynamic.expr import Expression, ExpressionError, lookup
from zkpoll.polling.plugins import load_plugins
from zkpoll.testing.plugins import make_context, poll

USAGE = {"summary": [
    {"user": "alice$proj1", "categories": [{"category": "get_obj", "ops": 46},
                                           {"category": "put_obj", "ops": 4}]},
    {"user": "bob$proj2", "categories": [{"category": "get_obj", "ops": 1}]},
]}
ITEMS = [{"id": "a", "status": "ACTIVE", "size": 10, "name": "A", "tags": ["x", "y"],
          "owner": {"user_id": "u1"}},
         {"id": "b", "status": "ERROR", "size": "20", "name": "B", "tags": []},
         {"id": "c", "status": "DELETED", "size": 3, "name": "C", "tags": []}]
ROUTES: dict[str, Any] = {
    "/stats": {"stats": {"requests": {"total": 42}}, "id": "svc-1", "version": "1.2"},
    "/items": ITEMS,
    "/wrapped": {"data": {"items": ITEMS[:2]}},
    "/usage": USAGE,
    "/page1": {"links": [{"rel": "prev", "href": "/page0"}, {"rel": "next", "href": "/page2"}],
               "servers": [{"id": "s1", "v": 1}]},
    "/page2": {"links": [], "servers": [{"id": "s2", "v": 2}]},
    "/api/v1/stats": {"load": 0.5},
}


class _Handler(BaseHTTPRequestHandler):
    counts: Counter[str]

    def log_message(self, *args: Any) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        self.counts[self.path] += 1
        if self.path == "/secure" and self.headers.get("X-Token") != "t0k":
            return self._send(401, b'{"error": "no token"}')
        if self.path == "/slow":
            time.sleep(3)
        if self.path == "/fail":
            return self._send(500, b"oops")
        if self.path == "/text":
            return self._send(200, b"not json", "text/plain")
        body = ROUTES.get(self.path, {"ok": 1} if self.path in ("/secure", "/slow") else None)
        if body is None:
            return self._send(404, b"{}")
        return self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class JSONServer:
    """A real HTTP server on 127.0.0.1 serving :data:`ROUTES`, counting requests."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        handler = type("Handler", (_Handler,), {"counts": self.counts})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[JSONServer]:
    srv = JSONServer()
    yield srv
    srv.close()


def pollster(**definition: Any) -> dynamic.DynamicPollster:
    raw = {"name": "dyn.test", "sample_type": "gauge", "unit": "x", **definition}
    return dynamic.DynamicPollster(parse_definition(raw, "/etc/zkpoll/pollsters.d/t.yaml"))


def volumes(samples: list[Any]) -> dict[str, Any]:
    return {s.resource_id: s.volume for s in samples}


# --- operations: the safe subset ------------------------------------------------
@pytest.mark.parametrize(("text", "entry", "expected"), [
    ("user | value.split('$')[0].strip()", {"user": " alice $p"}, "alice"),
    ("user | value.split ('$') | value[0] | value.strip()", {"user": "bob$p"}, "bob"),
    (". | value['f'] if 'f' in value else ''", {"g": 1}, ""),
    ("image | value or { 'id': '' } | value['id']", {"image": None}, ""),
    ("tags | ','.join(value)", {"tags": ["a", "b"]}, "a,b"),
    (("links | filter(lambda v: v.get('rel') == 'next', value) | list(value) | value[0] "
      "| value.get('href')"), {"links": [{"rel": "prev", "href": "p"},
                                       {"rel": "next", "href": "n"}]}, "n"),
    ("a.b.1", {"a": {"b": [5, 6]}}, 6),
    ("mem | int(value) // 1024 * 2", {"mem": "4096"}, 8),
    ("x | -value + 1 if value > 1 and not value == 3 else 0", {"x": 5}, -4),
    ("xs | sorted(value, key=len, reverse=True)[:1]", {"xs": ["a", "abc"]}, ["abc"]),
    ("x | value.replace('http:', 'https:')", {"x": "http://h"}, "https://h"),
    ("d | dict(value).get('k', 7)", {"d": {}}, 7),
    ("xs | len([v for v in value]) if False else len(value)", None, None),
])
def test_operations_in_the_subset(text: str, entry: Any, expected: Any) -> None:
    if entry is None:
        with pytest.raises(ExpressionError, match="ListComp is not allowed"):
            Expression(text)
        return
    assert Expression(text)(entry) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("x | __import__('os').system('id')", r"\.system\(\) is not allowed"),
    ("x | __import__('os')", "'__import__' cannot be called"),
    ("x | value.__class__", "only allowed as a method call"),
    ("x | value.__class__.__mro__[1].__subclasses__()", "not allowed"),
    ("x | open('/etc/passwd')", "'open' cannot be called"),
    ("x | eval('1')", "'eval' cannot be called"),
    ("x | value ** 99999", "Pow is not allowed"),
    ("x | f'{value}'", "JoinedStr is not allowed"),
    ("x | '{0.__class__}'.format(value)", r"\.format\(\) is not allowed"),
    ("x | (lambda f: f)(value)", "'Lambda' cannot be called"),
    ("x | {**value}", "unpacking"),
    ("x | globals()", "'globals' cannot be called"),
    ("x | import os", "not a valid expression"),
    ("x | y", "unknown name 'y'"),
    ("x | value(1)", "'value' cannot be called"),
    ("x | (v := 1)", "NamedExpr is not allowed"),
    (" | value", "names no attribute"),
])
def test_operations_outside_the_subset_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        Expression(text)


@pytest.mark.parametrize(("text", "entry", "reason"), [
    ("x | value.get('k')", {"x": "str"}, r"str.get\(\) is not allowed"),
    ("x | '%s' % value", {"x": 1}, "only allowed on numbers"),
    ("x | value['missing']", {"x": {}}, "failed on {}"),
    ("x | int(value)", {"x": "abc"}, "invalid literal"),
])
def test_operations_fail_cleanly_at_run_time(text: str, entry: Any, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        Expression(text)(entry)


def test_lookup() -> None:
    assert lookup({"a": [{"b": 1}]}, "a.0.b") == 1
    assert lookup(5, ".") == 5
    with pytest.raises(KeyError, match="no 'c'"):
        lookup({"a": {}}, "a.c")


# --- definitions ------------------------------------------------------------------
BASE = {"name": "dyn.x", "sample_type": "gauge", "unit": "u", "value_attribute": "v",
        "url_path": "http://h/x"}


@pytest.mark.parametrize(("change", "reason"), [
    ({"name": None}, "name must look like"),
    ({"name": "bad name"}, "name must look like"),
    ({"sample_type": "rate"}, "sample_type must be one of cumulative, delta, gauge"),
    ({"unit": None}, "unit is required"),
    ({"value_attribute": None}, "value_attribute is required"),
    ({"url_path": None}, "url_path .* or host_command .* is required"),
    ({"host_command": "true"}, "not both"),
    ({"url_path": "ftp://h/x"}, "must be an http"),
    ({"response_handlers": ["yaml"]}, "response_handlers"),
    ({"timeout": 0}, "timeout must be a number"),
    ({"headers": ["a"]}, "headers must be a mapping"),
    ({"valu_attribute": "x"}, "unknown key.*valu_attribute"),
    ({"name": "dyn.x.{category}"}, "needs value_attribute like"),
    ({"metadata_fields": ["a | value.__dict__"]}, "metadata_fields: .*method call"),
    ({"url_path": None, "host_command": "ls", "next_sample_url_attribute": "n"},
     "not supported with host_command"),
])
def test_invalid_definitions_name_file_pollster_and_reason(change: dict[str, Any],
                                                           reason: str) -> None:
    raw = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=f"^/d/p.yaml: pollster ('[^']+'|#1): .*{reason}"):
        parse_definition(raw, "/d/p.yaml")


@pytest.mark.parametrize("key", ["endpoint_type", "module", "authentication_object",
                                 "authentication_parameters", "barbican_secret_id",
                                 "extra_metadata_fields"])
def test_openstack_only_keys_are_not_supported(key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_definition({**BASE, key: "x"}, "/d/p.yaml")
    assert str(info.value).startswith(f"/d/p.yaml: pollster 'dyn.x': key {key!r} is not "
                                      "supported: ")


def test_ceilometer_defaults() -> None:
    d = parse_definition(BASE, "/d/p.yaml")
    assert (d.timeout, d.default_value, d.response_handlers, d.namespaces) == \
        (30.0, -1, ("json",), ("central",))
    assert parse_definition({**BASE, "url_path": None, "host_command": "ls"},
                            "/d/p.yaml").namespaces == ("compute",)


# --- HTTP, against a real server ---------------------------------------------------
def test_absolute_url_nested_value_metadata_and_mapping(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/stats", response_entries_key=".",
                 value_attribute="stats.requests.total",
                 metadata_fields=["version", "stats.requests.total | value * 2"],
                 metadata_mapping={"version": "svc_version"}, preserve_mapped_metadata=False)
    assert p.default_discovery == f"dynamic_url://{server.url}/stats"
    [sample] = poll(p, [f"{server.url}/stats"])
    assert (sample.name, sample.volume, sample.resource_id) == ("dyn.test", 42, "svc-1")
    assert sample.resource_metadata == {"svc_version": "1.2", "stats.requests.total | value * 2": 84}
    assert poll(p, ["http://elsewhere/"]) == []  # not its URL: not polled


def test_a_list_of_entries_skip_and_value_mapping(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/items", value_attribute="status",
                 skip_sample_values=["DELETED"], value_mapping={"ACTIVE": "1"},
                 default_value=0, user_id_attribute="owner.user_id")
    samples = poll(p, [f"{server.url}/items"])
    assert volumes(samples) == {"a": 1, "b": 0}
    assert samples[0].resource_metadata == {"user_id": "u1"}


def test_nested_entries_key_and_number_coercion(server: JSONServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    p = pollster(url_path=f"{server.url}/wrapped", response_entries_key="data.items",
                 value_attribute="size")
    assert volumes(poll(p, [f"{server.url}/wrapped"])) == {"a": 10, "b": 20}
    bad = pollster(url_path=f"{server.url}/items", value_attribute="name")
    with caplog.at_level(logging.WARNING):
        assert poll(bad, [f"{server.url}/items"]) == []
    assert "3 of 3 entries" in caplog.text and "'A' is not a number" in caplog.text


def test_multi_metric_with_operations(server: JSONServer) -> None:
    p = dynamic.DynamicPollster(parse_definition({
        "name": "dyn.rgw.request.{category}", "sample_type": "gauge", "unit": "request",
        "value_attribute": "[categories].ops", "url_path": f"{server.url}/usage",
        "response_entries_key": "summary", "skip_sample_values": ["put_obj"],
        "resource_id_attribute": "user | value.split('$') | value[0]",
        "project_id_attribute": "user | value.split('$')[1]"}, "/d/rgw.yaml"))
    samples = poll(p, [f"{server.url}/usage"])
    assert sorted((s.name, s.resource_id, s.volume) for s in samples) == [
        ("dyn.rgw.request.get_obj", "alice", 46), ("dyn.rgw.request.get_obj", "bob", 1)]
    assert {s.resource_metadata["project_id"] for s in samples} == {"proj1", "proj2"}


def test_relative_url_path_is_joined_to_each_resource(server: JSONServer) -> None:
    p = pollster(url_path="api/v1/stats", value_attribute="load", response_entries_key=".")
    assert p.default_discovery is None
    base = f"{server.url}/"
    assert volumes(poll(p, [base, "not-a-url"])) == {base: 0.5}


def test_headers_are_sent(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/secure", value_attribute="ok",
                 response_entries_key=".", headers={"X-Token": "t0k"})
    assert volumes(poll(p, [f"{server.url}/secure"])) == {f"{server.url}/secure": 1}
    nope = pollster(url_path=f"{server.url}/secure", value_attribute="ok")
    with pytest.raises(PluginError, match=r"GET http://.*/secure: HTTP 401"):
        poll(nope, [f"{server.url}/secure"])


def test_pages_are_followed(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/page1", value_attribute="v",
                 response_entries_key="servers",
                 next_sample_url_attribute="links | filter(lambda v: v.get('rel') == 'next', "
                                           "value) | list(value) | value[0] | value.get('href')")
    assert volumes(poll(p, [f"{server.url}/page1"])) == {"s1": 1, "s2": 2}


def test_one_request_per_url_per_cycle(server: JSONServer) -> None:
    url = f"{server.url}/items"
    before = server.counts["/items"]
    context = make_context()
    first = pollster(url_path=url, value_attribute="size", skip_sample_values=["20"])
    second = dynamic.DynamicPollster(parse_definition(
        {**BASE, "name": "dyn.other", "url_path": url, "value_attribute": "status",
         "value_mapping": {"ACTIVE": 1}, "default_value": 0}, "/d/o.yaml"))
    assert poll(first, [url], context=context) and poll(second, [url], context=context)
    assert server.counts["/items"] == before + 1


def test_the_timeout_bounds_a_slow_api(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/slow", value_attribute="ok")
    started = time.monotonic()
    with pytest.raises(PluginError, match="every resource failed"):
        poll(p, [f"{server.url}/slow"], context=make_context(timeout=0.5))
    assert time.monotonic() - started < 1.5
    short = pollster(url_path=f"{server.url}/slow", value_attribute="ok", timeout=0.3)
    with pytest.raises(PluginError):
        poll(short, [f"{server.url}/slow"], context=make_context(timeout=10))


@pytest.mark.parametrize(("path", "reason"), [("/fail", "HTTP 500"),
                                              ("/text", "cannot parse the answer"),
                                              ("/nowhere", "HTTP 404")])
def test_http_failures_say_what_and_why(server: JSONServer, path: str, reason: str) -> None:
    p = pollster(url_path=f"{server.url}{path}", value_attribute="x")
    with pytest.raises(PluginError, match=reason):
        poll(p, [f"{server.url}{path}"])


def test_text_handler_as_a_fallback(server: JSONServer) -> None:
    p = pollster(url_path=f"{server.url}/text", response_handlers=["json", "text"],
                 value_attribute="out | len(value)")
    assert volumes(poll(p, [f"{server.url}/text"])) == {f"{server.url}/text": 8}


# --- local commands --------------------------------------------------------------
def command(**definition: Any) -> tuple[dynamic.DynamicPollster, str]:
    return pollster(**definition), host_id(None)


def test_host_command_json() -> None:
    p, host = command(host_command="""printf '%s' '[{"id": "disk0", "free": "12"}]'""",
                      value_attribute="free | int(value) * 1024")
    assert p.default_discovery == "local_host"
    assert volumes(poll(p, [host])) == {"disk0": 12288}
    assert poll(p, ["another-host"]) == []  # a command only measures this host


def test_host_command_text_and_xml() -> None:
    p, host = command(host_command="echo 3", response_handlers=["text"],
                      value_attribute="out | value.strip() | int(value)")
    assert volumes(poll(p, [host])) == {host: 3}
    xml = ("echo '<test><user_id>id1_u</user_id><project_id>id1_p</project_id><id>id1</id>"
           "<meta>meta-data-to-store</meta><value>1</value></test>'")
    p, host = command(host_command=xml, value_attribute="value", response_entries_key="test",
                      metadata_fields=["meta"], response_handlers=["xml"])
    [sample] = poll(p, [host])
    assert (sample.resource_id, sample.volume) == ("id1", 1)
    assert sample.resource_metadata == {"meta": "meta-data-to-store", "user_id": "id1_u",
                                        "project_id": "id1_p"}


def test_host_command_failures() -> None:
    p, host = command(host_command="echo broken >&2; exit 3", value_attribute="x")
    with pytest.raises(PluginError, match="exited with status 3: broken"):
        poll(p, [host])


def test_host_command_is_killed_at_the_timeout(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    p, host = command(host_command=f"sleep 3 && touch {marker}", value_attribute="x")
    started = time.monotonic()
    with pytest.raises(PluginError, match="did not finish within 0.5s|no answer within"):
        poll(p, [host], context=make_context(timeout=0.5))
    assert time.monotonic() - started < 1.5
    time.sleep(3.2)
    assert not marker.exists(), "the command's process group was not killed"


# --- loading from directories into the agent's plugins -------------------------------
def write(path: Path, definitions: Any) -> Path:
    path.write_text(yaml.safe_dump(definitions) if not isinstance(definitions, str)
                    else definitions)
    return path


@pytest.fixture
def conf(tmp_path: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([])
    conf.register_opts(dynamic.OPTS, group="polling")
    conf.set_override("pollsters_definitions_dirs", [str(tmp_path / "a"), str(tmp_path / "b"),
                                                     str(tmp_path / "missing")], "polling")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return conf


def test_valid_definitions_load_next_to_invalid_ones(tmp_path: Path, conf: cfg.ConfigOpts,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    a = write(tmp_path / "a" / "mixed.yaml", [
        {**BASE, "name": "dyn.http"},
        {**BASE, "name": "dyn.keystone", "endpoint_type": "compute"},
        {**BASE, "name": "dyn.cmd", "url_path": None, "host_command": "echo 1"},
        {**BASE, "name": "dyn.evil", "value_attribute": "v | __import__('os')"}])
    bad = write(tmp_path / "b" / "broken.yaml", "- name: [unclosed\n")
    write(tmp_path / "b" / "dup.yml", [{**BASE, "name": "dyn.http"}])
    write(tmp_path / "b" / "ignored.txt", "not yaml")
    write(tmp_path / "b" / "single.yaml", {**BASE, "name": "dyn.single"})
    with caplog.at_level(logging.ERROR):
        plugins = load_plugins(conf, ["central"])
    assert {"dyn.http", "dyn.single"} <= set(plugins.pollsters)
    assert "dyn.cmd" not in plugins.pollsters  # compute is not loaded
    assert plugins.pollsters["dyn.http"].namespace == "central"
    assert set(plugins.failures) >= {f"dynamic:{a}:dyn.keystone", f"dynamic:{a}:dyn.evil",
                                     f"dynamic:{bad}", f"dynamic:{tmp_path}/b/dup.yml:dyn.http"}
    assert f"{a}: pollster 'dyn.keystone': key 'endpoint_type' is not supported" in caplog.text
    assert f"{bad}:2: invalid YAML" in caplog.text
    assert "already defined in" in plugins.failures[f"dynamic:{tmp_path}/b/dup.yml:dyn.http"]
    assert plugins.discoveries["dynamic_url"].discover(make_context(), "http://h/x,y") == \
        ["http://h/x,y"]


def test_namespaces_host_commands_and_conflicts(tmp_path: Path, conf: cfg.ConfigOpts) -> None:
    write(tmp_path / "a" / "p.yaml", [
        {**BASE, "name": "dyn.cmd", "url_path": None, "host_command": "echo 1"},
        {**BASE, "name": "dyn.forced", "namespaces": ["compute"]},
        {**BASE, "name": "http.status"}])
    plugins = load_plugins(conf, ["compute", "central"])
    assert plugins.pollsters["dyn.cmd"].namespace == "compute"
    assert plugins.pollsters["dyn.forced"].namespace == "compute"
    assert plugins.pollsters["http.status"].namespace == "central"  # the built-in one
    assert "already provided" in plugins.failures[f"dynamic:{tmp_path}/a/p.yaml:http.status"]
    assert "local_host" in plugins.discoveries
    assert not load_plugins(conf, ["synthetic"]).pollsters.keys() & {"dyn.cmd", "dyn.forced"}


def test_the_option_is_registered_by_the_loader(tmp_path: Path) -> None:
    conf = cfg.ConfigOpts()
    conf([])
    assert "dyn.x" not in load_plugins(conf, ["central"]).pollsters
    assert conf.polling.pollsters_definitions_dirs == ["/etc/zkpoll/pollsters.d"]
