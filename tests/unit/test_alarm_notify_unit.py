"""Alarm notifications, the pure parts: action URL options, spool naming, rows,
log lines, backoff, retry classification, settings (no network)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from oslo_config import cfg

from zkpoll.alarm import notify_options
from zkpoll.alarm.action_url import WebhookOptions, parse_action_url
from zkpoll.alarm.notify import Notification, Notifiers, NotifyError
from zkpoll.alarm.notify_codec import (
    decode_row,
    encode_body,
    encode_row,
    json_safe,
    log_line,
)
from zkpoll.alarm.webhook import RETRIED_STATUSES
from zkpoll.delivery import backoff_delay
from zkpoll.exceptions import ConfigError, PublishError, ZkpollError

# --- action URLs ---------------------------------------------------------------------


def test_log_url_takes_no_options() -> None:
    action = parse_action_url("log://")
    assert (action.scheme, action.spool) == ("log", None)
    with pytest.raises(ConfigError, match=r"alarm action URL 'log://\?level=x': log:// takes "
                                          r"no options"):
        parse_action_url("log://?level=x")


def test_http_defaults() -> None:
    action = parse_action_url("http://hooks.example:8080/alarm")
    assert (action.host, action.port, action.path) == ("hooks.example", 8080, "/alarm")
    assert action.options == WebhookOptions()
    assert action.authorization is None
    https = parse_action_url("https://hooks.example")
    assert (https.port, https.path) == (443, "/")


def test_every_option_is_parsed() -> None:
    action = parse_action_url(
        "https://h/x?timeout=2.5&retry_backoff=0.1&max_backoff=3&verify=false"
        "&ca_file=/ca.pem&cert_file=/c.pem&key_file=/k.pem")
    assert action.options == WebhookOptions(2.5, 0.1, 3.0, False, "/ca.pem", "/c.pem",
                                            "/k.pem")
    assert parse_action_url("https://h/?verify_ssl=no").options.verify is False


@pytest.mark.parametrize(("url", "match"), [
    ("ftp://h/", r"unsupported scheme 'ftp' \(accepted: log://, http://, https://\)"),
    ("mailto:ops@example.com", "unsupported scheme 'mailto'"),
    ("http:///path", "names no host"),
    ("http://h:99999/", "bad port"),
    ("http://h/?timeout=soon", r"bad value 'soon' for parameter 'timeout'"),
    ("http://h/?timeout=0", r"parameter 'timeout': must be at least 0.01"),
    ("http://h/?timeout=1&timeout=2", "given more than once"),
    ("http://h/?max_retries=3", r"unknown parameter 'max_retries' \(accepted: ca_file, "),
    ("http://h/?verify=false", "verify apply to https:// only"),
    ("http://h/?ca_file=/x&cert_file=/y", "ca_file, cert_file apply to https:// only"),
    ("https://h/?verify=1&verify_ssl=1", "verify or verify_ssl, not both"),
    ("https://h/?key_file=/k.pem", "key_file needs cert_file"),
    ("https://h/?verify=maybe", "must be true or false"),
])
def test_bad_urls_are_refused_naming_the_url(url: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_action_url(url)
    assert str(info.value).startswith("alarm action URL '")


def test_password_never_in_messages() -> None:
    with pytest.raises(ConfigError) as info:
        parse_action_url("https://ops:s3cret@h/x?bogus=1")
    assert "s3cret" not in str(info.value)
    assert "https://***@h/x" in str(info.value)
    action = parse_action_url("https://ops:s3cret@h/x")
    assert "s3cret" not in action.redacted and "s3cret" not in action.label
    assert action.authorization == "Basic b3BzOnMzY3JldA=="  # base64("ops:s3cret")


def test_label_drops_the_query() -> None:
    assert parse_action_url("http://u:p@h:1/x?timeout=3").label == "http://***@h:1/x"


# --- spool naming ----------------------------------------------------------------------


def test_spool_name_is_stable_per_destination() -> None:
    plain = parse_action_url("https://hooks.example/alarm").spool
    assert plain is not None and plain.startswith("https-") and len(plain) == 6 + 32
    assert parse_action_url("https://hooks.example/alarm?timeout=3").spool == plain
    with_user = parse_action_url("https://u:p@hooks.example/alarm").spool
    assert parse_action_url("https://v:q@hooks.example/alarm").spool == with_user  # redacted
    assert parse_action_url("https://hooks.example/other").spool != plain
    assert parse_action_url("http://hooks.example/alarm").spool != plain
    assert parse_action_url("https://hooks.example:8443/alarm").spool != plain


def test_spool_name_value_is_pinned() -> None:
    # a change (hash, seed, what is hashed) would orphan every existing spool
    assert parse_action_url("http://127.0.0.1:8080/alarm").spool == \
        "http-05f7678dc26d8cc13ec3bc09646bca73"


def test_same_delivery() -> None:
    first = parse_action_url("https://h/x?timeout=5")
    assert first.same_delivery(parse_action_url("https://h/x?timeout=5.0"))
    assert not first.same_delivery(parse_action_url("https://h/x?timeout=6"))
    assert not first.same_delivery(parse_action_url("https://u:p@h/x?timeout=5"))


# --- rows, bodies, log lines ----------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=30),
                          st.dictionaries(st.text(max_size=10), _JSON, max_size=5)),
                min_size=1, max_size=5))
def test_rows_round_trip(items: list[tuple[str, dict]]) -> None:
    notifications = [Notification(key, "http://h/", body) for key, body in items]
    assert decode_row(encode_row(notifications)) == items


def test_non_finite_values_become_strings() -> None:
    body = {"reason_data": {"most_recent": float("nan"), "values": [float("inf"),
                                                                    -math.inf, 1.5]},
            "when": Path("/x")}
    assert json_safe(body) == {"reason_data": {"most_recent": "NaN",
                                               "values": ["+Inf", "-Inf", 1.5]}, "when": "/x"}
    assert encode_body(body) == (b'{"reason_data":{"most_recent":"NaN","values":["+Inf",'
                                 b'"-Inf",1.5]},"when":"/x"}')
    row = encode_row([Notification("k", "http://h/", body)])
    assert decode_row(row)[0][1]["reason_data"]["most_recent"] == "NaN"


@pytest.mark.parametrize("row", [b"", b"[]", b'{"v": 2, "n": []}', b'{"v": 1}',
                                 b'{"v": 1, "n": [{"k": 3, "b": {}}]}',
                                 b'{"v": 1, "n": [{"k": "a", "b": []}]}', b"\xff"])
def test_foreign_rows_are_refused(row: bytes) -> None:
    with pytest.raises(ValueError):  # any ValueError: the row is dropped
        decode_row(row)


def test_log_line_names_everything() -> None:
    line = log_line(Notification("web-cpu:3", "log://", {
        "alarm_id": "web-cpu", "alarm_name": "Web CPU", "previous": "ok", "current": "alarm",
        "severity": "critical", "reason": "Transition to alarm due to 3 samples outside "
                                          "threshold, most recent: 0.93"}))
    assert line == ("alarm web-cpu (Web CPU): ok -> alarm, severity critical: Transition to "
                    "alarm due to 3 samples outside threshold, most recent: 0.93 "
                    "[key web-cpu:3]")
    assert log_line(Notification("k", "log://", {})) == "alarm ? (?): ? -> ?, severity ?: ? " \
                                                        "[key k]"


# --- retry policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retried_statuses(status: int) -> None:
    assert status in RETRIED_STATUSES


@pytest.mark.parametrize("status", [300, 301, 400, 401, 403, 404, 409, 410, 422])
def test_rejected_statuses(status: int) -> None:
    assert status not in RETRIED_STATUSES


@given(st.integers(1, 200), st.floats(0.5, 1.0))
def test_backoff_doubles_up_to_the_cap(attempt: int, jitter: float) -> None:
    options = WebhookOptions()
    delay = backoff_delay(attempt, options.retry_backoff, options.max_backoff, jitter)
    full = min(options.max_backoff, options.retry_backoff * 2.0 ** (attempt - 1))
    assert delay == pytest.approx(full * jitter)
    assert 0.5 * options.retry_backoff <= delay <= options.max_backoff
    assert backoff_delay(attempt + 1, options.retry_backoff, options.max_backoff,
                         jitter) >= delay


# --- settings ---------------------------------------------------------------------------------


def test_settings_default_without_conf() -> None:
    settings = notify_options.notify_settings(None)
    assert settings == notify_options.NotifySettings()
    assert settings == notify_options.notify_settings(cfg.ConfigOpts())  # unregistered


def test_settings_from_conf() -> None:
    conf = cfg.ConfigOpts()
    notify_options.register_opts(conf)
    notify_options.register_opts(conf)  # idempotent
    conf([])
    conf.set_override("notify_spool_max_bytes", 1000, group="alarm")
    conf.set_override("notify_spool_max_age", 60.0, group="alarm")
    conf.set_override("notify_spool_fsync", "os", group="alarm")
    assert notify_options.notify_settings(conf) == notify_options.NotifySettings(1000, 60.0,
                                                                                 "os")


def test_options_have_help() -> None:
    [(group, opts)] = notify_options.list_opts()
    assert group == "alarm"
    assert {o.name for o in opts} == {"notify_spool_max_bytes", "notify_spool_max_age",
                                      "notify_spool_fsync"}
    for opt in opts:
        assert opt.help and opt.help.strip().endswith("."), opt.name


# --- Notifiers refusals (local files only) ----------------------------------------------------


def test_notify_error_is_a_zkpoll_error() -> None:
    assert issubclass(NotifyError, PublishError) and issubclass(NotifyError, ZkpollError)


def test_conflicting_spellings_are_refused(tmp_path: Path) -> None:
    with Notifiers(None, tmp_path, ["http://127.0.0.1:9/x?timeout=5"]) as notifiers:
        notifiers.ensure(["http://127.0.0.1:9/x?timeout=5.0"])  # the same delivery: shared
        with pytest.raises(ConfigError, match=r"'http://127.0.0.1:9/x\?timeout=6': same "
                                              r"destination as 'http://127.0.0.1:9/x\?"
                                              r"timeout=5' but different"):
            notifiers.ensure(["http://127.0.0.1:9/x?timeout=6"])
        assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_bad_url_at_start_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alarm action URL 'gopher://h/'"):
        Notifiers(None, tmp_path, ["log://", "gopher://h/"])


def test_missing_certificate_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot load cert_file/key_file '/nonexistent/c.pem"):
        Notifiers(None, tmp_path, ["https://127.0.0.1:9/?cert_file=/nonexistent/c.pem"])
    with pytest.raises(ConfigError, match=r"alarm action URL .*cannot load ca_file"):
        Notifiers(None, tmp_path, ["https://127.0.0.1:9/?ca_file=/nonexistent/ca.pem"])


def test_invalid_url_at_notify_time_is_dropped_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Notifiers(None, tmp_path) as notifiers, caplog.at_level(logging.WARNING):
        notifiers.notify([Notification("a:1", "gopher://h/", {}),
                          Notification("a:1", "log://", {"alarm_id": "a"})])
        stats = notifiers.stats()
    assert stats["invalid"] == {"dropped": 1}
    assert stats["log://"] == {"delivered": 1}
    assert any(r.levelno == logging.ERROR and "a:1 DROPPED" in r.getMessage()
               and "gopher" in r.getMessage() for r in caplog.records)


def test_notify_after_close_raises(tmp_path: Path) -> None:
    notifiers = Notifiers(None, tmp_path, ["log://"])
    notifiers.close()
    with pytest.raises(NotifyError, match="closed"):
        notifiers.notify([Notification("a:1", "log://", {})])


def test_spool_in_use_is_a_config_error(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/x"
    with Notifiers(None, tmp_path, [url]), pytest.raises(
            ConfigError, match=r"alarm action URL 'http://127.0.0.1:9/x': .*in use"):
        Notifiers(None, tmp_path, [url])
