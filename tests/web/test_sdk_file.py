"""``GET /sdk/longlink.js``: the JavaScript SDK served by the HTTP app (PROTOCOL.md §1.5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from longlink.web.sdk_file import SDK_PATH, sdk_source
from tests.api.conftest import Harness, open_harness

SOURCE = Path(__file__).parents[2] / "src" / "longlink" / "web" / "sdk" / "longlink.js"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


def test_the_packaged_file_is_the_module() -> None:
    assert sdk_source() == SOURCE.read_bytes()
    assert b"export class Client" in sdk_source()


async def test_served_as_javascript_without_a_key(h: Harness) -> None:
    response = await h.client.get(SDK_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == SOURCE.read_bytes()


async def test_revalidation_with_the_etag_gets_304(h: Harness) -> None:
    first = await h.client.get(SDK_PATH)
    etag = first.headers["etag"]
    again = await h.client.get(SDK_PATH, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = await h.client.get(SDK_PATH, headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200


async def test_head_and_wrong_method(h: Harness) -> None:
    head = await h.client.head(SDK_PATH)
    assert head.status_code == 200
    assert head.content == b""
    post = await h.client.post(SDK_PATH)
    assert post.status_code == 405
    assert post.json()["error"]["code"] == "method_not_allowed"
