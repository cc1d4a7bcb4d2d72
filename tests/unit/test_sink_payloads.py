"""The pure parts of the OTLP and Ceilometer senders: encoding, signatures, configuration."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import urllib.parse

import pytest
from oslo_config import cfg

from zkpoll.exceptions import ConfigError
from zkpoll.publisher._otlp_encoding import attribute_value, decode_status, unix_nanos
from zkpoll.publisher.ceilometer_sample import (
    FIELDS,
    compute_signature,
    meter_message,
    verify_signature,
)
from zkpoll.publisher.notifier import NotifierSender, register_opts
from zkpoll.publisher.otlp import OTLPSender
from zkpoll.sample import Sample

# -- OTLP -------------------------------------------------------------------


@pytest.mark.parametrize("seconds, nanos", [
    (0.0, 0), (1.5, 1_500_000_000), (1_764_300_000.25, 1_764_300_000_250_000_000),
    (1_764_300_000.000001, 1_764_300_000_000_001_000),
    (1_764_300_000.9999996, 1_764_300_001_000_000_000),  # rounds up into the next second
])
def test_unix_nanos_is_exact_to_the_microsecond(seconds, nanos):
    assert unix_nanos(seconds) == nanos


@pytest.mark.parametrize("value, kind, expected", [
    ("x", "string_value", "x"), (True, "bool_value", True), (False, "bool_value", False),
    (-3, "int_value", -3), (2**63 - 1, "int_value", 2**63 - 1),
    (2**63, "string_value", str(2**63)), (0.25, "double_value", 0.25),
    ({"b": 1, "a": [1, None]}, "string_value", '{"a":[1,null],"b":1}'),
    ((1, "x"), "string_value", '[1,"x"]'), (b"raw", "string_value", "b'raw'"),
])
def test_attribute_values_keep_simple_types_and_encode_nested_ones(value, kind, expected):
    any_value = attribute_value(value)
    assert any_value.WhichOneof("value") == kind
    assert getattr(any_value, kind) == expected


def test_none_attribute_is_left_out():
    assert attribute_value(None) is None


def test_decode_status_reads_the_message_or_gives_none():
    assert decode_status(b"\x08\x05\x12\x02no") == "no"
    assert decode_status(b"\x08\x05") is None
    assert decode_status(b"\xff\xff\xff") is None


# -- Ceilometer meter messages ------------------------------------------------

def sample(**overrides) -> Sample:
    fields = {"name": "cpu.util", "type": "gauge", "unit": "%", "volume": 3.5,
              "resource_id": "r-1", "timestamp": 1_764_300_000.5,
              "resource_metadata": {"user_id": "u", "project_id": "p", "k": (1, "two"),
                                    3: {"z": 1, "a": "ä"}},
              "source": "central", "member_id": "m", "cycle_start": 1_764_300_000.0}
    fields.update(overrides)
    return Sample(**fields)


def hmac_hex(secret: str, *parts: str) -> str:
    digest = hmac.new(secret.encode(), b"", hashlib.sha256)
    for part in parts:
        digest.update(part.encode("utf-8"))
    return digest.hexdigest()


def test_meter_message_has_every_field_ceilometer_reads():
    s = sample()
    message = meter_message(s, "secret")
    assert tuple(message) == FIELDS
    assert message["counter_name"] == "cpu.util" and message["counter_type"] == "gauge"
    assert message["counter_unit"] == "%" and message["counter_volume"] == 3.5
    assert (message["user_id"], message["project_id"]) == ("u", "p")
    assert message["timestamp"] == "2025-11-28T03:20:00.500000+00:00"
    assert message["message_id"] == s.id and message["monotonic_time"] is None
    # as the consumer will see it after JSON: lists, string keys
    assert message["resource_metadata"] == {"user_id": "u", "project_id": "p",
                                            "k": [1, "two"], "3": {"z": 1, "a": "ä"}}
    assert json.loads(json.dumps(message)) == message


def test_signature_is_ceilometers_hmac_over_sorted_flattened_pairs():
    message = {"b": "x", "a": 1, "n": {"y": 2.5, "x": None}, "l": ["s", 1],
               "message_signature": "ignored"}
    expected = hmac_hex("k", "a", "1", "b", "x", "l", "[b's', 1]", "n:x", "None", "n:y", "2.5")
    assert compute_signature(message, "k") == expected
    assert compute_signature(message, b"k") == expected


def test_signature_survives_the_json_round_trip_and_catches_changes():
    message = meter_message(sample(), "secret")
    received = json.loads(json.dumps(message, sort_keys=True))
    assert verify_signature(received, "secret")
    assert not verify_signature(received, "other")
    assert not verify_signature(dict(received, counter_volume=4.5), "secret")
    assert not verify_signature(dict(received, message_signature="é"), "secret")


def test_empty_secret_means_no_signature_as_in_ceilometer():
    message = meter_message(sample(), "")
    assert message["message_signature"] == ""
    assert verify_signature(message, "") and verify_signature(message, None)


# -- notifier:// configuration ------------------------------------------------

def conf_with(**publisher) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="zkpoll-test")
    for name, value in publisher.items():
        conf.set_override(name, value, group="publisher")
    return conf


def notifier(url: str, conf=None) -> NotifierSender:
    return NotifierSender(conf, urllib.parse.urlsplit(url))


def test_transport_url_from_the_publisher_url_with_the_driver_as_scheme():
    sender = notifier("notifier://ann:pw@127.0.0.1:5672/vhost?topic=t&exchange=e&retry=2",
                      conf_with())
    assert sender.redacted_transport_url == "rabbit://ann:***@127.0.0.1:5672/vhost"
    assert (sender.topic, sender.exchange, sender.retry) == ("t", "e", 2)
    sender.close()


def test_transport_url_from_the_option_when_the_url_names_no_host():
    conf = conf_with(notifier_transport_url="rabbit://a:s1@h1:5672,b:s2@h2:5672/",
                     telemetry_secret="abc")
    sender = notifier("notifier://", conf)
    assert sender.redacted_transport_url == "rabbit://a:***@h1:5672,b:***@h2:5672/"
    assert sender.secret == "abc"
    sender.close()


def test_notification_envelope_is_ceilometers_polling_notification():
    sender = notifier("notifier://", conf_with(notifier_transport_url="rabbit://h:5672/"))
    note = sender.notification([sample(), sample(resource_id="r-2")])
    sender.close()
    assert note["event_type"] == "telemetry.polling" and note["priority"] == "SAMPLE"
    assert note["publisher_id"] == "zkpoll.polling"
    assert [m["resource_id"] for m in note["payload"]["samples"]] == ["r-1", "r-2"]
    assert verify_signature(note["payload"]["samples"][0], "change this for valid signing")


def test_heartbeats_are_required_so_that_a_send_is_bounded(tmp_path):
    config = tmp_path / "zkpoll.conf"
    config.write_text("[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 0\n")
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(config)], project="zkpoll-test")
    with pytest.raises(ConfigError, match="heartbeat_timeout_threshold must be above 0"):
        notifier("notifier://h:5672/", conf)


@pytest.mark.parametrize("url, needle", [
    ("notifier://", "names no message bus"),
    ("notifier://h:5672/?retry=-1", "retry"),
    ("notifier://h:5672/?topic=", "topic"),
    ("notifier://h:5672/?per_meter_topic=1", "per_meter_topic"),
    ("notifier://h:5672/?driver=no-such-driver", "unusable transport URL"),
])
def test_bad_notifier_urls_are_config_errors(url, needle):
    with pytest.raises(ConfigError, match=needle):
        notifier(url, conf_with())


# -- optional dependencies ------------------------------------------------------

def test_missing_extras_are_config_errors_that_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "oslo_messaging", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'zkpoll\[notifier\]'"):
        notifier("notifier://h:5672/", conf_with())
    monkeypatch.setitem(sys.modules, "zkpoll.publisher._otlp_encoding", None)
    monkeypatch.delattr("zkpoll.publisher._otlp_encoding", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'zkpoll\[otlp\]'"):
        OTLPSender(None, urllib.parse.urlsplit("otlp+http://127.0.0.1:4318"))


def test_otlp_sends_a_scraped_series_labels_as_its_only_attributes_and_no_member():
    from zkpoll.publisher._otlp_encoding import encode_request
    from zkpoll.sample import STALE_NAN
    labels = {"job": "node", "instance": "10.0.0.1:9100", "mode": "idle"}
    request = encode_request([
        Sample("node_cpu_seconds_total", "cumulative", "", 3.0, "t1", member_id="m-1",
               cycle_start=1.7e9, labels=labels),
        Sample("node_cpu_seconds_total", "cumulative", "", STALE_NAN, "t1", member_id="m-1",
               cycle_start=1.7e9 + 15, labels=labels)], "host-a")
    resource, = request.resource_metrics
    keys = {kv.key for kv in resource.resource.attributes}
    assert "zkpoll.member_id" not in keys and "service.instance.id" not in keys
    live, stale = resource.scope_metrics[0].metrics[0].sum.data_points
    assert {kv.key: kv.value.string_value for kv in live.attributes} == labels
    assert live.as_double == 3.0 and live.flags == 0
    assert stale.flags == 1   # NO_RECORDED_VALUE: the series ended
