"""Validation limits from the settings: each refusal names the field and the setting."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from longlink.api.app import build_app
from longlink.api.schemas import Limits
from longlink.api.services import Services
from longlink.bus.memory import MemoryQueue
from longlink.control.tokens import TokenIssuer
from longlink.logic.memory import MemoryRegistry
from longlink.model import MsgIdGenerator, Priority
from longlink.settings import ConfigError, load_settings

from .conftest import bearer, error_of, make_settings, open_harness

TO_U1: dict[str, Any] = {"users": ["u1"]}


def test_defaults_match_the_settings_defaults() -> None:
    limits = Limits.from_settings(load_settings(environ={}))
    assert limits == Limits()
    assert (limits.max_targets, limits.max_batch, limits.max_payload) == (1000, 1000, 32768)
    assert (limits.min_ttl_s, limits.default_ttl_s, limits.max_ttl_s) == (1, 60, 604800)
    assert (limits.max_id_length, limits.id_pattern) == (128, "")
    assert (limits.push_body, limits.batch_body) == (1 << 20, 16 << 20)
    # Room for a full payload, JSON-escaped, whatever the body settings say.
    assert Limits(max_payload=1 << 20, max_push_body=1).push_body == 8 << 20


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"max_targets": 0}, "max_targets"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_payload": 0}, "max_payload"),
        ({"min_ttl_s": 0}, "min_ttl_s"),
        ({"default_ttl_s": 5, "min_ttl_s": 10}, "default_ttl_s"),
        ({"default_ttl_s": 100, "max_ttl_s": 50}, "default_ttl_s"),
        ({"max_id_length": 129}, "max_id_length"),
        ({"id_pattern": "[a-"}, "id_pattern"),
        ({"overload_depth": 0}, "overload_depth"),
    ],
)
def test_impossible_limits_are_config_errors(changes: dict[str, Any], setting: str) -> None:
    if "overload_depth" not in changes:
        with pytest.raises(ConfigError, match=setting):
            Limits(**changes)
    # The app refuses them too, so `longlink serve` stops with the message.
    settings = make_settings(**changes)
    services = Services(
        settings=settings,
        queue=MemoryQueue(),
        registry=MemoryRegistry(),
        ids=MsgIdGenerator(1),
        tokens=TokenIssuer(settings.token_secret, 60),
    )
    with pytest.raises(ConfigError, match=setting):
        build_app(services)


def test_limits_come_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "longlink.toml"
    path.write_text('max_targets = 7\nid_pattern = "[a-z0-9-]+"\noverload_depth = 40\n')
    settings = load_settings(path, environ={"LONGLINK_MAX_BATCH": "20", "LONGLINK_MIN_TTL_S": "2"})
    limits = Limits.from_settings(settings)
    assert (limits.max_targets, limits.max_batch, limits.min_ttl_s) == (7, 20, 2)
    assert limits.id_pattern == "[a-z0-9-]+"
    assert settings.overload_mark == 40
    assert load_settings(environ={"LONGLINK_OVERLOAD_DEPTH": ""}).overload_depth is None
    assert load_settings(environ={"LONGLINK_QUEUE_SIZE": "10"}).overload_mark == 8


async def test_targets_per_push() -> None:
    async with open_harness(make_settings(max_targets=2)) as h:
        assert (await h.push({"to": {"users": ["a", "b"]}, "data": 1})).status_code == 202
        response = await h.push({"to": {"rooms": ["a", "b", "c"]}, "data": 1})
        assert response.status_code == 400
        message = error_of(response)["message"]
        assert message.startswith("to.rooms: at most 2 ids") and "max_targets" in message
        response = await h.batch(
            [{"to": TO_U1, "data": 1}, {"to": {"areas": list("xyz")}, "data": 1}]
        )
        assert error_of(response)["message"].startswith("messages[1].to.areas: at most 2")
        assert (await h.push({"to": {"all": True}, "data": 1})).status_code == 202


async def test_messages_per_batch() -> None:
    async with open_harness(make_settings(max_batch=3)) as h:
        assert (await h.batch([{"to": TO_U1, "data": 1}] * 3)).status_code == 202
        response = await h.batch([{"to": TO_U1, "data": 1}] * 4)
        assert response.status_code == 400
        message = error_of(response)["message"]
        assert message.startswith("messages: at most 3") and "max_batch" in message
        assert h.queue.depth(Priority.LOW) == 3


@pytest.mark.parametrize(
    ("ttl_s", "words"),
    [(4, ["ttl_s", "at least 5", "min_ttl_s"]), (601, ["ttl_s", "at most 600", "max_ttl_s"])],
)
async def test_ttl_bounds(ttl_s: int, words: list[str]) -> None:
    async with open_harness(make_settings(min_ttl_s=5, default_ttl_s=10, max_ttl_s=600)) as h:
        response = await h.push({"to": TO_U1, "data": 1, "ttl_s": ttl_s})
        assert response.status_code == 400
        for word in words:
            assert word in error_of(response)["message"]
        assert (await h.push({"to": TO_U1, "data": 1, "ttl_s": 5})).status_code == 202
        assert (await h.push({"to": TO_U1, "data": 1})).status_code == 202
        assert [m.ttl_s for m in await h.queue.fetch(Priority.LOW, 10)] == [5, 10]


@pytest.mark.parametrize(
    ("to", "words"),
    [
        ({"users": ["ok", "x" * 17]}, ["to.users[1]", "at most 16 characters", "max_id_length"]),
        ({"devices": ["Dev"]}, ["to.devices[0]", "id_pattern", "[a-z0-9-]+"]),
        ({"rooms": ["a/b"]}, ["to.rooms[0]", "id_pattern"]),
        ({"areas": ["tab\there"]}, ["to.areas[0]", "control characters"]),
        ({"users": [""]}, ["to.users[0]", "empty"]),
    ],
)
async def test_id_length_and_charset(to: dict[str, Any], words: list[str]) -> None:
    settings = make_settings(max_id_length=16, id_pattern="[a-z0-9-]+")
    async with open_harness(settings) as h:
        response = await h.push({"to": to, "data": 1})
        assert response.status_code == 400, response.text
        message = error_of(response)["message"]
        for word in words:
            assert word in message, message
        assert (await h.push({"to": {"users": ["x" * 16, "a-1"]}, "data": 1})).status_code == 202


async def test_id_rules_apply_to_paths_and_areas() -> None:
    async with open_harness(make_settings(id_pattern="[a-z0-9-]+")) as h:
        response = await h.client.get("/v1/rooms/Lobby", headers=bearer())
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("room: must match")
        response = await h.client.get("/v1/users/Alice", headers=bearer())
        assert error_of(response)["message"].startswith("user: must match")
        response = await h.client.put("/v1/rooms/lobby", json={"area": "EU"}, headers=bearer())
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("area: must match")
        response = await h.client.put("/v1/rooms/lobby", json={"area": "eu"}, headers=bearer())
        assert response.json() == {"room": "lobby", "area": "eu", "online": 0}


async def test_payload_size_names_the_setting() -> None:
    async with open_harness(make_settings(max_payload=10)) as h:
        raw = base64.b64encode(b"x" * 11).decode()
        response = await h.push({"to": TO_U1, "data_b64": raw})
        assert response.status_code == 413
        message = error_of(response)["message"]
        assert message.startswith("data_b64: payload is 11 bytes") and "max_payload" in message


async def test_body_limits_are_settings() -> None:
    settings = make_settings(max_payload=64, max_push_body=1000, max_batch_body=3000)
    async with open_harness(settings) as h:
        padded = b'{"to": {"users": ["u1"]}, "data": 1' + b" " * 1000 + b"}"
        response = await h.client.post("/v1/push", content=padded, headers=bearer())
        assert response.status_code == 413
        assert error_of(response)["code"] == "too_large"
        assert (await h.batch([{"to": TO_U1, "data": "x" * 50}] * 30)).status_code == 202
        response = await h.batch([{"to": TO_U1, "data": "x" * 50}] * 60)
        assert response.status_code == 413
