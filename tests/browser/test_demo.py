"""The live-room demo at ``/`` in two Chromium pages against a real node (demo mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from longlink.node import Node
from longlink.web.echo import DEMO_ROOMS
from tests.conftest import API_KEY, WAIT, node_settings

from .conftest import ARTIFACTS, WAIT_MS, Browser

if TYPE_CHECKING:
    from playwright.async_api import Page

LOBBY, MUSIC = DEMO_ROOMS


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(node_settings(tmp_path / "data", demo=True)) as running:
        yield running


async def push(node: Node, room: str, data: object) -> str:
    async with httpx.AsyncClient(
        base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
    ) as api:
        response = await api.post("/v1/push", json={"to": {"rooms": [room]}, "data": data})
    assert response.status_code == 202, response.text
    return str(response.json()["msg_id"])


async def open_demo(browser: Browser, node: Node, user: str) -> Page:
    from playwright.async_api import expect

    page = await browser.open(f"{node.http_url}/?user={user}")
    await expect(page.locator("body")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#online")).not_to_have_text("–")  # joined: JOIN_OK's count
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_two_viewers_see_each_other(browser: Browser, node: Node) -> None:
    from playwright.async_api import expect

    alice = await open_demo(browser, node, "alice")
    await expect(alice.locator("#online")).to_have_text("1")
    bob = await open_demo(browser, node, "bob")
    await alice.bring_to_front()  # a page in the background has its animations paused

    # The enter notice (an EVENT frame), then the online count (with the next heartbeat).
    await expect(alice.locator("#log .notice.enter", has_text="bob entered")).to_have_count(1)
    await expect(alice.locator("#online")).to_have_text("2", timeout=WAIT_MS)

    # A danmaku sent from one page (UPSTREAM, echoed to the room) flies across the other.
    await send(alice, "hello from alice")
    await expect(bob.locator("#stage .danmaku", has_text="hello from alice")).to_have_count(1)
    await expect(bob.locator("#log .message", has_text="hello from alice")).to_have_count(1)
    await expect(alice.locator("#stage .danmaku.mine", has_text="hello from alice")).to_have_count(
        1
    )
    await send(bob, "hi alice, bob here")
    await expect(alice.locator("#stage .danmaku", has_text="hi alice, bob here")).to_have_count(1)
    for page, text in ((alice, "the stage is live"), (bob, "danmaku over one WebSocket")):
        await send(page, text)
        await expect(alice.locator("#log .message", has_text=text)).to_have_count(1)

    # A push from the HTTP API appears on both, under its msg id.
    msg_id = await push(node, LOBBY, {"text": "pushed from the HTTP API"})
    for page in (alice, bob):
        logged = page.locator(f'#log .message[data-msg-id="{msg_id}"]')
        await expect(logged).to_have_text("serverpushed from the HTTP API")
    await expect(alice.locator("#rate")).not_to_have_text("0.0")

    # The danmaku fly: each starts right of the stage and moves into view (CSS animation).
    pushed = alice.locator(f'#stage .danmaku[data-msg-id="{msg_id}"]')
    await expect(pushed).to_be_in_viewport(ratio=1)
    ARTIFACTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(ARTIFACTS / "demo.png"))

    # Bob moves to the other room: alice sees him leave; the other room's pushes reach him.
    await bob.click(f'#rooms button[data-room="{MUSIC}"]')
    await expect(bob.locator(f'#rooms button[data-room="{MUSIC}"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(alice.locator("#log .notice.exit", has_text="bob left")).to_have_count(1)
    await expect(bob.locator("#online")).to_have_text("1")
    await push(node, MUSIC, "music only")
    await expect(bob.locator("#log .message", has_text="music only")).to_have_count(1)
    await expect(alice.locator("#online")).to_have_text("1", timeout=WAIT_MS)


async def test_the_page_reconnects_after_the_server_restarts(
    browser: Browser, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    settings = node_settings(tmp_path / "data", demo=True)
    async with Node(settings) as first:
        page = await open_demo(browser, first, "carol")
        ports = first.ports
        url = first.http_url
    # Down: the page saw the drain and tries again (the SDK's backoff).
    await expect(page.locator("body")).not_to_have_attribute("data-state", "connected")
    same_ports = settings.replace(
        http_port=ports["http"], ws_port=ports["ws"], tcp_port=ports["tcp"]
    )
    async with Node(same_ports) as second:
        assert second.http_url == url
        await expect(page.locator("body")).to_have_attribute(
            "data-state", "connected", timeout=3 * WAIT_MS
        )
        # Back in its room (re-joined at AUTH): a room push arrives.
        msg_id = await push(second, LOBBY, {"text": "after the restart"})
        await expect(page.locator(f'#log .message[data-msg-id="{msg_id}"]')).to_have_count(1)
        await expect(page.locator("#log .notice.error", has_text="reconnecting")).not_to_have_count(
            0
        )
