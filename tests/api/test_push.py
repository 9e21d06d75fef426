"""POST /v1/push and /v1/push/batch over HTTP: every status of PROTOCOL.md §2.2."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from longlink.bus.memory import MemoryQueue
from longlink.model import Message, MsgIdGenerator, Priority, Target
from longlink.settings import ApiKeyConfig

from .conftest import KEY, Harness, bearer, error_of, make_settings, open_harness

TO_U1: dict[str, Any] = {"users": ["u1"]}


async def queued(h: Harness, priority: Priority = Priority.LOW) -> list[Message]:
    return await h.queue.fetch(priority, 10_000) if h.queue.depth(priority) else []


# ------------------------------------------------------------------ 202


async def test_push_is_queued_with_compact_json_payload(h: Harness) -> None:
    response = await h.push({"to": TO_U1, "data": {"text": "hi", "n": [1, 2]}})
    assert response.status_code == 202
    msg_id = response.json()["msg_id"]
    assert isinstance(msg_id, str) and msg_id.isdigit()
    [message] = await queued(h)
    assert message.msg_id == int(msg_id)
    assert message.target == Target(users=["u1"])
    assert message.payload == b'{"text":"hi","n":[1,2]}'
    assert message.priority is Priority.LOW
    assert message.guaranteed is False
    assert message.ttl_s == 60
    assert abs(message.accepted_ms - MsgIdGenerator.timestamp_ms(message.msg_id)) < 1000


@pytest.mark.parametrize(
    ("data", "payload"),
    [(None, b"null"), ("é", '"é"'.encode()), (1.5, b"1.5"), ([], b"[]"), (True, b"true")],
)
async def test_any_json_value_is_a_payload(h: Harness, data: Any, payload: bytes) -> None:
    assert (await h.push({"to": TO_U1, "data": data})).status_code == 202
    assert (await queued(h))[0].payload == payload


async def test_data_b64_is_decoded(h: Harness) -> None:
    raw = bytes(range(256))
    body = {"to": TO_U1, "data_b64": base64.b64encode(raw).decode()}
    assert (await h.push(body)).status_code == 202
    assert (await queued(h))[0].payload == raw


@pytest.mark.parametrize(
    ("to", "target"),
    [
        ({"users": ["a", "b"]}, Target(users=["a", "b"])),
        ({"devices": ["d"]}, Target(devices=["d"])),
        ({"rooms": ["r"]}, Target(rooms=["r"])),
        ({"areas": ["x"]}, Target(areas=["x"])),
        ({"all": True}, Target(all=True)),
    ],
)
async def test_every_target_kind(h: Harness, to: dict[str, Any], target: Target) -> None:
    assert (await h.push({"to": to, "data": 1})).status_code == 202
    assert (await queued(h))[0].target == target


async def test_priority_guaranteed_ttl(h: Harness) -> None:
    body = {"to": TO_U1, "data": 1, "priority": "high", "guaranteed": True, "ttl_s": 5}
    assert (await h.push(body)).status_code == 202
    [message] = await queued(h, Priority.HIGH)
    assert (message.priority, message.guaranteed, message.ttl_s) == (Priority.HIGH, True, 5)
    assert h.queue.depth(Priority.LOW) == 0


async def test_ids_increase(h: Harness) -> None:
    ids = [int((await h.push({"to": TO_U1, "data": i})).json()["msg_id"]) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    response = await h.batch([{"to": TO_U1, "data": i} for i in range(5)])
    assert response.status_code == 202
    batch_ids = [int(i) for i in response.json()["msg_ids"]]
    assert batch_ids == sorted(batch_ids) and batch_ids[0] > ids[-1]
    assert [m.msg_id for m in await queued(h)] == ids + batch_ids


async def test_batch_keeps_order_and_fields(h: Harness) -> None:
    messages = [
        {"to": {"rooms": ["r1"]}, "data": "a"},
        {"to": TO_U1, "data_b64": "AAE=", "priority": "high"},
        {"to": {"all": True}, "data": None, "ttl_s": 9},
    ]
    response = await h.batch(messages)
    assert response.status_code == 202
    ids = response.json()["msg_ids"]
    assert len(ids) == 3
    low = await queued(h)
    [high] = await queued(h, Priority.HIGH)
    assert [m.payload for m in low] == [b'"a"', b"null"]
    assert low[1].ttl_s == 9
    assert high.payload == b"\x00\x01" and str(high.msg_id) == ids[1]


# ------------------------------------------------------------------ 400

BAD_BODIES: list[tuple[Any, str]] = [
    ({"data": 1}, "to"),
    ({"to": {}, "data": 1}, "to: give exactly one"),
    ({"to": {"users": ["a"], "rooms": ["r"]}, "data": 1}, "to: give exactly one"),
    ({"to": {"all": False}, "data": 1}, "to.all"),
    ({"to": {"users": []}, "data": 1}, "to.users"),
    ({"to": {"users": [""]}, "data": 1}, "to.users[0]"),
    ({"to": {"users": ["ok", "a\x01b"]}, "data": 1}, "to.users[1]"),
    ({"to": {"rooms": ["r" * 129]}, "data": 1}, "to.rooms[0]"),
    ({"to": {"devices": [7]}, "data": 1}, "to.devices[0]"),
    ({"to": {"groups": ["g"]}, "data": 1}, "to"),
    ({"to": TO_U1, "data": 1, "extra": 1}, "extra"),
    ({"to": TO_U1}, "data, data_b64"),
    ({"to": TO_U1, "data": 1, "data_b64": "AA=="}, "data, data_b64"),
    ({"to": TO_U1, "data_b64": "not base64!"}, "data_b64"),
    ({"to": TO_U1, "data_b64": "AAE"}, "data_b64"),
    ({"to": TO_U1, "data": 1, "priority": "urgent"}, "priority"),
    ({"to": TO_U1, "data": 1, "guaranteed": "yes"}, "guaranteed"),
    ({"to": TO_U1, "data": 1, "ttl_s": 0}, "ttl_s"),
    ({"to": TO_U1, "data": 1, "ttl_s": 7 * 24 * 3600 + 1}, "ttl_s"),
    ({"to": TO_U1, "data": 1, "ttl_s": 1.5}, "ttl_s"),
    ([], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
async def test_invalid_push_names_the_field(h: Harness, body: Any, field: str) -> None:
    response = await h.push(body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "bad_request"
    assert field in error["message"], error["message"]
    assert h.queue.depth(Priority.LOW) == 0


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"to": {"users": ["a"]}, }'])
async def test_bad_json(h: Harness, body: bytes) -> None:
    response = await h.client.post("/v1/push", content=body, headers=bearer())
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


@pytest.mark.parametrize(("body", "field"), BAD_BODIES[:-1])
async def test_invalid_batch_message_names_its_index(h: Harness, body: Any, field: str) -> None:
    good = {"to": TO_U1, "data": 1}
    response = await h.batch([good, good, good, body])
    assert response.status_code == 400, response.text
    message = error_of(response)["message"]
    assert message.startswith("messages[3]"), message
    assert field in message
    assert h.queue.depth(Priority.LOW) == 0  # all or nothing


@pytest.mark.parametrize(
    ("body", "prefix"),
    [
        ({"to": {"users": [""]}, "data": 1}, "messages[3].to.users[0]: "),
        ({"to": TO_U1}, "messages[3]: give exactly one of data, data_b64"),
        ({"to": TO_U1, "data": 1, "q": 1}, "messages[3]: "),
        ({"to": {}, "data": 1}, "messages[3].to: "),
    ],
)
async def test_batch_field_path_is_exact(h: Harness, body: Any, prefix: str) -> None:
    good = {"to": TO_U1, "data": 1}
    response = await h.batch([good, good, good, body])
    assert error_of(response)["message"].startswith(prefix)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"to": TO_U1, "data": 1}] * 1001}, "messages"),
        ({}, "messages"),
        ({"messages": [], "x": 1}, "x"),
    ],
)
async def test_invalid_batch(h: Harness, body: Any, field: str) -> None:
    response = await h.client.post("/v1/push/batch", json=body, headers=bearer())
    assert response.status_code == 400
    assert field in error_of(response)["message"]


async def test_batch_of_1000_is_accepted(h: Harness) -> None:
    response = await h.batch([{"to": TO_U1, "data": i} for i in range(1000)])
    assert response.status_code == 202
    assert len(response.json()["msg_ids"]) == 1000


# ------------------------------------------------------------------ 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}, bearer("")],
)
async def test_unauthorized(h: Harness, headers: dict[str, str]) -> None:
    for path in ("/v1/push", "/v1/push/batch"):
        response = await h.client.post(path, json={"to": TO_U1, "data": 1}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert error_of(response)["code"] == "unauthorized"


async def test_no_key_configured_refuses_everyone() -> None:
    async with open_harness(make_settings(api_key=None)) as h:
        response = await h.push({"to": TO_U1, "data": 1})
        assert response.status_code == 401
        assert "no API key" in error_of(response)["message"]


async def test_unauthorized_before_body_is_read(h: Harness) -> None:
    response = await h.client.post("/v1/push", content=b"x" * (2 << 20))
    assert response.status_code == 401


async def test_configured_keys_plain_and_sha256() -> None:
    settings = make_settings(
        api_key=None,
        api_keys=(
            ApiKeyConfig(name="plain", key="plain-secret"),
            ApiKeyConfig(name="hashed", key_sha256=hashlib.sha256(b"hashed-secret").hexdigest()),
        ),
    )
    async with open_harness(settings) as h:
        assert (await h.push({"to": TO_U1, "data": 1}, key="plain-secret")).status_code == 202
        assert (await h.push({"to": TO_U1, "data": 1}, key="hashed-secret")).status_code == 202
        digest = hashlib.sha256(b"hashed-secret").hexdigest()
        assert (await h.push({"to": TO_U1, "data": 1}, key=digest)).status_code == 401
        assert (await h.push({"to": TO_U1, "data": 1}, key=KEY)).status_code == 401


# ------------------------------------------------------------------ 403


def scoped(**scope: Any) -> ApiKeyConfig:
    return ApiKeyConfig(name="scoped", key="scoped-key", **scope)


@pytest.mark.parametrize(
    ("scope", "body", "words"),
    [
        ({"targets": ("users",)}, {"to": {"rooms": ["r"]}, "data": 1}, ["targets", "to.rooms"]),
        ({"targets": ("users",)}, {"to": {"all": True}, "data": 1}, ["targets", "to.all"]),
        (
            {"targets": ("users", "rooms")},
            {"to": {"devices": ["d"]}, "data": 1},
            ["targets: users, rooms"],
        ),
        (
            {"room_prefixes": ("chat-",)},
            {"to": {"rooms": ["chat-1", "game-1"]}, "data": 1},
            ["room_prefixes", "to.rooms[1]", "game-1"],
        ),
        (
            {"room_prefixes": ("chat-",)},
            {"to": {"areas": ["eu"]}, "data": 1},
            ["room_prefixes", "to.areas[0]"],
        ),
        (
            {"high_priority": False},
            {"to": TO_U1, "data": 1, "priority": "high"},
            ["high_priority", "priority"],
        ),
        ({"guaranteed": False}, {"to": TO_U1, "data": 1, "guaranteed": True}, ["guaranteed"]),
        ({"max_ttl_s": 30}, {"to": TO_U1, "data": 1, "ttl_s": 31}, ["max_ttl_s", "ttl_s", "30"]),
    ],
)
async def test_forbidden_names_the_scope(
    scope: dict[str, Any], body: dict[str, Any], words: list[str]
) -> None:
    async with open_harness(make_settings(api_keys=(scoped(**scope),))) as h:
        response = await h.push(body, key="scoped-key")
        assert response.status_code == 403
        error = error_of(response)
        assert error["code"] == "forbidden"
        for word in words:
            assert word in error["message"], error["message"]
        response = await h.batch([{"to": TO_U1, "data": 1}, body], key="scoped-key")
        assert response.status_code == 403
        assert error_of(response)["message"].startswith("messages[1].")
        assert h.queue.depth(Priority.LOW) == h.queue.depth(Priority.HIGH) == 0
        assert (await h.push(body)).status_code == 202  # the all-scope key may


async def test_max_ttl_s_caps_the_default_ttl() -> None:
    async with open_harness(make_settings(api_keys=(scoped(max_ttl_s=30),))) as h:
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 202
        body = {"to": TO_U1, "data": 2, "ttl_s": 30}
        assert (await h.push(body, key="scoped-key")).status_code == 202
        assert (await h.push({"to": TO_U1, "data": 3})).status_code == 202  # all-scope key
        assert [m.ttl_s for m in await queued(h)] == [30, 30, 60]


async def test_within_scope_is_accepted() -> None:
    key = scoped(targets=("rooms", "users"), room_prefixes=("chat-", "live-"))
    async with open_harness(make_settings(api_keys=(key,))) as h:
        body = {"to": {"rooms": ["chat-1", "live-2"]}, "data": 1}
        assert (await h.push(body, key="scoped-key")).status_code == 202
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 202


# ------------------------------------------------------------------ 413


async def test_payload_over_max_payload() -> None:
    async with open_harness(make_settings(max_payload=100)) as h:
        assert (await h.push({"to": TO_U1, "data": "x" * 98})).status_code == 202
        response = await h.push({"to": TO_U1, "data": "x" * 99})
        assert response.status_code == 413
        error = error_of(response)
        assert error["code"] == "too_large" and "data" in error["message"]
        response = await h.push({"to": TO_U1, "data_b64": base64.b64encode(b"x" * 101).decode()})
        assert response.status_code == 413
        assert "data_b64" in error_of(response)["message"]
        response = await h.batch([{"to": TO_U1, "data": 1}, {"to": TO_U1, "data": "y" * 200}])
        assert response.status_code == 413
        assert error_of(response)["message"].startswith("messages[1].data")


async def test_body_over_limit_by_content_length(h: Harness) -> None:
    body = b'{"to": {"users": ["u1"]}, "data": "' + b"x" * (1 << 20) + b'"}'
    response = await h.client.post("/v1/push", content=body, headers=bearer())
    assert response.status_code == 413
    assert error_of(response)["code"] == "too_large"


async def test_body_over_limit_when_streamed(h: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * (64 << 10)

    response = await h.client.post("/v1/push", content=chunks(), headers=bearer())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


# ------------------------------------------------------------------ 429


async def test_rate_limited_with_retry_after() -> None:
    now = [1000.0]
    settings = make_settings(api_keys=(scoped(rate=0.5, burst=1),))
    async with open_harness(settings, clock=lambda: now[0]) as h:
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 202
        response = await h.push({"to": TO_U1, "data": 1}, key="scoped-key")
        assert response.status_code == 429
        error = error_of(response)
        assert error["code"] == "rate_limited" and "'scoped'" in error["message"]
        assert response.headers["Retry-After"] == "2"
        assert (await h.push({"to": TO_U1, "data": 1})).status_code == 202  # other key
        now[0] += 1.5
        response = await h.push({"to": TO_U1, "data": 1}, key="scoped-key")
        assert response.headers["Retry-After"] == "1"  # rounded up, never 0
        now[0] += 0.5
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 202


async def test_rate_limited_metrics_count_messages_per_key() -> None:
    now = [0.0]
    settings = make_settings(api_keys=(scoped(rate=1, burst=2),))
    async with open_harness(settings, clock=lambda: now[0]) as h:
        assert (await h.batch([{"to": TO_U1, "data": 1}] * 2, key="scoped-key")).status_code == 202
        assert (await h.batch([{"to": TO_U1, "data": 1}] * 3, key="scoped-key")).status_code == 429
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 429
        text = (await h.client.get("/metrics")).text
        assert 'longlink_push_rate_limited_total{key="scoped"} 4.0' in text
        accepted = 'longlink_push_accepted_total{key="scoped",priority="low",target="users"} 2.0'
        assert accepted in text
        refused = 'longlink_push_refused_total{code="rate_limited",key="scoped",status="429"} 2.0'
        assert refused in text
        assert "scoped-key" not in text  # names label the metrics, never secrets


async def test_batch_counts_each_message() -> None:
    async with open_harness(
        make_settings(api_keys=(scoped(rate=1, burst=3),)), clock=lambda: 0.0
    ) as h:
        response = await h.batch([{"to": TO_U1, "data": 1}] * 2, key="scoped-key")
        assert response.status_code == 202
        response = await h.batch([{"to": TO_U1, "data": 1}] * 2, key="scoped-key")
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert h.queue.depth(Priority.LOW) == 2


async def test_batch_larger_than_burst_passes_when_bucket_is_full() -> None:
    async with open_harness(
        make_settings(api_keys=(scoped(rate=1, burst=2),)), clock=lambda: 0.0
    ) as h:
        response = await h.batch([{"to": TO_U1, "data": 1}] * 5, key="scoped-key")
        assert response.status_code == 202
        response = await h.push({"to": TO_U1, "data": 1}, key="scoped-key")
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 4  # the debt is paid first


async def test_refused_pushes_do_not_spend_the_rate() -> None:
    async with open_harness(
        make_settings(api_keys=(scoped(rate=1, burst=1),)), clock=lambda: 0.0
    ) as h:
        assert (await h.push({"to": TO_U1}, key="scoped-key")).status_code == 400
        assert (await h.push({"to": TO_U1, "data": 1}, key="scoped-key")).status_code == 202


# ------------------------------------------------------------------ 503


async def test_full_queue_is_overloaded() -> None:
    async with open_harness(queue=MemoryQueue(maxsize=1)) as h:
        assert (await h.push({"to": TO_U1, "data": 1})).status_code == 202
        response = await h.push({"to": TO_U1, "data": 2})
        assert response.status_code == 503
        assert error_of(response)["code"] == "overloaded"
        assert int(response.headers["Retry-After"]) >= 1
        # The high priority queue is separate and still has room.
        body = {"to": TO_U1, "data": 3, "priority": "high"}
        assert (await h.push(body)).status_code == 202


async def test_full_queue_mid_batch_tells_what_was_queued() -> None:
    async with open_harness(queue=MemoryQueue(maxsize=1)) as h:
        response = await h.batch([{"to": TO_U1, "data": 1}, {"to": TO_U1, "data": 2}])
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "overloaded"
        [queued_message] = await queued(h)
        assert error["msg_ids"] == [str(queued_message.msg_id)]


async def test_no_id_number_held_is_unavailable_and_queues_nothing(h: Harness) -> None:
    h.services.ids.drop()  # as when the process's id lease has lapsed
    for response in (
        await h.push({"to": TO_U1, "data": 1}),
        await h.batch([{"to": TO_U1, "data": 1}, {"to": TO_U1, "data": 2}]),
    ):
        assert response.status_code == 503
        assert error_of(response)["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert h.queue.depth(Priority.LOW) == 0


# ------------------------------------------------------------------ metrics


async def test_metrics_count_accepted_and_refused(h: Harness) -> None:
    await h.push({"to": TO_U1, "data": 1})
    await h.push({"to": {"rooms": ["r"]}, "data": 1, "priority": "high"})
    await h.push({"to": TO_U1})
    await h.client.post("/v1/push", json={})
    text = (await h.client.get("/metrics")).text
    assert 'longlink_push_accepted_total{key="default",priority="low",target="users"} 1.0' in text
    assert 'longlink_push_accepted_total{key="default",priority="high",target="rooms"} 1.0' in text
    assert 'longlink_push_refused_total{code="bad_request",key="default",status="400"} 1.0' in text
    assert 'longlink_push_refused_total{code="unauthorized",key="",status="401"} 1.0' in text


async def test_content_type_is_json(h: Harness) -> None:
    response = await h.push({"to": TO_U1, "data": 1})
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response, httpx.Response)
