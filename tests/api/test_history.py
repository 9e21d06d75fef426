"""``GET /v1/rooms/{room}/history`` (PROTOCOL.md §1.4 rule 4): answers, scopes, paths."""

from __future__ import annotations

import base64
import time

import pytest

from longlink.history.base import HistoryEntry
from longlink.model import Priority
from longlink.settings import ApiKeyConfig

from .conftest import Harness, bearer, error_of, make_settings, open_harness
from .test_openapi_schemas import SCHEMAS, answer_schema

NOW_MS = int(time.time() * 1000)


def keep(h: Harness, room: str, *entries: HistoryEntry) -> None:
    h.history.keep([(room, entry) for entry in entries])


JSON = HistoryEntry(11, NOW_MS, b'{"text":"hi"}', json=True)
BYTES = HistoryEntry(12, NOW_MS + 1, b"\x00\xff", json=False)
NULL = HistoryEntry(13, NOW_MS + 2, b"null", json=True)


async def get(h: Harness, path: str, key: str | None = None) -> dict[str, object]:
    response = await h.client.get(path, headers=bearer(key) if key else bearer())
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert SCHEMAS.problem(body, answer_schema("/v1/rooms/{room}/history", "get", 200)) is None
    return body


async def test_every_kept_message_without_since(h: Harness) -> None:
    keep(h, "lobby", JSON, BYTES, NULL)
    body = await get(h, "/v1/rooms/lobby/history")
    assert body == {
        "messages": [
            {"msg_id": "11", "at": NOW_MS, "data": {"text": "hi"}},
            {"msg_id": "12", "at": NOW_MS + 1, "data_b64": base64.b64encode(b"\x00\xff").decode()},
            {"msg_id": "13", "at": NOW_MS + 2, "data": None},
        ],
        "recovered": False,
    }


async def test_since_and_limit(h: Harness) -> None:
    keep(h, "lobby", JSON, BYTES, NULL)
    body = await get(h, "/v1/rooms/lobby/history?since=11")
    assert [m["msg_id"] for m in body["messages"]] == ["12", "13"]  # type: ignore[attr-defined]
    assert body["recovered"] is True
    body = await get(h, "/v1/rooms/lobby/history?since=11&limit=1")
    assert [m["msg_id"] for m in body["messages"]] == ["12"]  # type: ignore[attr-defined]
    body = await get(h, "/v1/rooms/lobby/history?since=13")
    assert body == {"messages": [], "recovered": True}
    body = await get(h, "/v1/rooms/lobby/history?since=999")  # no longer kept
    assert len(body["messages"]) == 3 and body["recovered"] is False  # type: ignore[arg-type]
    assert await get(h, "/v1/rooms/empty/history") == {"messages": [], "recovered": False}


@pytest.mark.parametrize(
    "query", ["since=abc", "since=-1", "since=18446744073709551616", "limit=0", "limit=x"]
)
async def test_bad_queries_are_refused(h: Harness, query: str) -> None:
    response = await h.client.get(f"/v1/rooms/lobby/history?{query}", headers=bearer())
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(query.split("=")[0])


async def test_room_ids_with_slashes(h: Harness) -> None:
    keep(h, "chat/1", JSON)
    keep(h, "chat/1/history", BYTES)
    body = await get(h, "/v1/rooms/chat%2F1/history")
    assert [m["msg_id"] for m in body["messages"]] == ["11"]  # type: ignore[attr-defined]
    body = await get(h, "/v1/rooms/chat/1/history")  # a slash written as is works too
    assert [m["msg_id"] for m in body["messages"]] == ["11"]  # type: ignore[attr-defined]
    body = await get(h, "/v1/rooms/chat%2F1%2Fhistory/history")
    assert [m["msg_id"] for m in body["messages"]] == ["12"]  # type: ignore[attr-defined]
    # The room named "chat/1/history" itself, not a history.
    response = await h.client.get("/v1/rooms/chat%2F1%2Fhistory", headers=bearer())
    assert response.status_code == 200 and response.json()["room"] == "chat/1/history"


async def test_scoped_by_the_key() -> None:
    keys = (
        ApiKeyConfig(name="chat", key="chat-key", targets=("rooms",), room_prefixes=("chat-",)),
        ApiKeyConfig(name="users", key="users-key", targets=("users",)),
    )
    async with open_harness(make_settings(api_keys=keys)) as h:
        keep(h, "chat-1", JSON)
        assert (await get(h, "/v1/rooms/chat-1/history", key="chat-key"))["messages"]
        for key, path in [
            ("chat-key", "/v1/rooms/news/history"),
            ("users-key", "/v1/rooms/chat-1/history"),
        ]:
            response = await h.client.get(path, headers=bearer(key))
            assert response.status_code == 403, response.text
            assert error_of(response)["code"] == "forbidden"
        response = await h.client.get("/v1/rooms/chat-1/history")
        assert response.status_code == 401


async def test_history_off_answers_nothing_kept() -> None:
    async with open_harness(make_settings(history_size=0)) as h:
        keep(h, "lobby", JSON)
        assert await get(h, "/v1/rooms/lobby/history?since=11") == {
            "messages": [],
            "recovered": False,
        }


async def test_a_push_with_history_false_is_accepted(h: Harness) -> None:
    response = await h.push({"to": {"rooms": ["lobby"]}, "data": 1, "history": False})
    assert response.status_code == 202
    [message] = await h.queue.fetch(Priority.LOW, 10)
    assert message.history is False and message.data_json is True
