"""Event bodies (PROTOCOL.md §2.3); their signature is tested in tests/webhook."""

from __future__ import annotations

import msgspec

from longlink.logic.events import WebhookEvent, decode_event, encode_event


def event(**changes: object) -> WebhookEvent:
    values: dict[str, object] = {
        "id": "g1-abcd-1",
        "type": "enter",
        "user": "alice",
        "device": "d1",
        "room": "lobby",
        "conn_id": "g1-x-1",
        "node": "g1",
        "at": 1_790_000_000_123,
    }
    values.update(changes)
    return WebhookEvent(**values)  # type: ignore[arg-type]


def test_enter_body_has_the_contract_fields_and_no_extras() -> None:
    body = msgspec.json.decode(encode_event(event()))
    assert body == {
        "id": "g1-abcd-1",
        "type": "enter",
        "user": "alice",
        "device": "d1",
        "room": "lobby",
        "conn_id": "g1-x-1",
        "node": "g1",
        "at": 1_790_000_000_123,
    }


def test_upstream_keeps_a_null_room_and_carries_data() -> None:
    e = event(type="upstream", room=None, rooms=[], data_b64="aGk=")
    body = msgspec.json.decode(encode_event(e))
    assert body["room"] is None and body["data_b64"] == "aGk=" and body["rooms"] == []
    assert decode_event(encode_event(e)) == e
