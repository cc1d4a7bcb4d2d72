"""Handoff inboxes, the pure parts: the stored form, the delivery bookkeeping,
and the refusal of backends without inboxes (the transport itself is tested
against real servers in tests/functional/test_handoff_inbox.py)."""

from __future__ import annotations

import json

import pytest

from zkpoll.coordination._inbox import InboxDelivery
from zkpoll.coordination.handoff import (
    MAX_HANDOFF_BYTES,
    Handoff,
    decode_handoff,
    encode_handoff,
)
from zkpoll.coordination.standalone import StandaloneCoordinator
from zkpoll.exceptions import CoordinationError


def test_the_stored_form_round_trips() -> None:
    payload = {"source": "cpu", "cycle": 12, "keys": ["a", "b"], "tried": ["m1"]}
    raw = encode_handoff("m1", payload)
    assert json.loads(raw) == {"sender": "m1", "payload": payload}
    assert decode_handoff("m2/h-1", raw) == Handoff("m2/h-1", "m1", payload)


def test_payloads_that_cannot_be_sent_are_refused_before_any_io() -> None:
    with pytest.raises(TypeError):
        encode_handoff("m1", ["keys"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_handoff("m1", {"keys": {1, 2}})  # not JSON
    big = {"keys": ["k" * 98] * (MAX_HANDOFF_BYTES // 100)}
    with pytest.raises(CoordinationError, match="at most"):
        encode_handoff("m1", big)
    encode_handoff("m1", {"keys": big["keys"][: len(big["keys"]) // 2]})  # half fits


@pytest.mark.parametrize("raw", [None, b"", b"\xff", b"[]", b'{"sender": 1, "payload": {}}',
                                 b'{"sender": "m1", "payload": []}', b'{"payload": {}}'])
def test_what_is_not_a_handoff_decodes_to_none(raw: bytes | None) -> None:
    assert decode_handoff("m2/h-1", raw) is None


def handoffs(*ids: str) -> dict[str, Handoff]:
    return {i: Handoff(i, "s", {"id": i}) for i in ids}


def test_each_watcher_gets_each_handoff_once_in_order_and_a_late_one_gets_the_rest() -> None:
    delivery = InboxDelivery()
    first: list[list[Handoff]] = []
    delivery.add("g", first.append)
    listed = ["m/h-1", "m/h-2"]
    assert delivery.unread("g", listed) == listed
    read = handoffs(*listed)
    for callback, batch in delivery.deliveries("g", listed, read):
        callback(batch)
    assert first == [[read["m/h-1"], read["m/h-2"]]]
    # listed again (a reconnect, another fire): nothing read, nothing delivered again
    assert delivery.unread("g", listed) == []
    assert delivery.deliveries("g", listed, {}) == []
    second: list[list[Handoff]] = []
    delivery.add("g", second.append)
    delivery.ack("g", ["m/h-1"])
    listed.append("m/h-3")
    assert delivery.unread("g", listed) == ["m/h-3"]
    read.update(handoffs("m/h-3"))
    batches = delivery.deliveries("g", listed, {"m/h-3": read["m/h-3"]})
    assert [(cb, [h.handoff_id for h in b]) for cb, b in batches] == [
        (first.append, ["m/h-3"]), (second.append, ["m/h-2", "m/h-3"])]  # never the acked


def test_what_is_gone_is_forgotten_and_what_could_not_be_read_is_read_again() -> None:
    delivery = InboxDelivery()
    got: list[list[Handoff]] = []
    cancel = delivery.add("g", got.append)
    assert delivery.deliveries("g", ["m/h-1", "m/h-2"], {"m/h-1": None,
                                                         **handoffs("m/h-2")})[0][1] \
        == [handoffs("m/h-2")["m/h-2"]]
    assert delivery.unread("g", ["m/h-1", "m/h-2"]) == ["m/h-1"]  # read failed: again
    delivery.ack("g", ["m/h-2"])
    delivery.deliveries("g", [], {})  # the inbox is empty now: nothing is kept
    assert delivery.unread("g", ["m/h-2"]) == ["m/h-2"]  # a new inbox may reuse a name
    assert delivery.groups() == ["g"]
    cancel()
    assert delivery.groups() == []
    assert delivery.deliveries("g", ["m/h-3"], handoffs("m/h-3")) == []  # nobody watches


def test_a_backend_without_inboxes_says_so() -> None:
    coordinator = StandaloneCoordinator("solo")
    assert coordinator.supports_handoffs is False
    for call in (lambda: coordinator.send_handoff("g", "m", {}, 1.0),
                 lambda: coordinator.watch_inbox("g", print),
                 lambda: coordinator.ack_handoffs("g", ["m/h-1"])):
        with pytest.raises(CoordinationError, match="has no handoff inbox"):
            call()


def test_inbox_notices_on_the_change_channel_are_told_from_group_names() -> None:
    from zkpoll.coordination.kv._store import inbox_notice, parse_inbox_notice

    assert parse_inbox_notice(inbox_notice("polling-g", "m.1.x")) == ("polling-g", "m.1.x")
    for change in (None, "", "polling-g", "inbox", "inbox\ng", "inbox\ng\nm\nx"):
        assert parse_inbox_notice(change) is None
