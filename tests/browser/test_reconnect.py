"""The demo page forgives a dropped connection and a blocked WebSocket (PROTOCOL.md §1.4, §1.5).

* The page loses its connection (the test cuts it at the server) while its
  reconnects cannot get through (``/v1/connect`` refused by a route); room
  messages are pushed meanwhile; once the page gets through, it shows each
  of them once: the SDK recovered them with ``since`` (§1.4 rule 3).
* A page whose WebSocket is broken (an init script makes every upgrade fail,
  as a proxy that refuses it would) works over the HTTP stream: the SDK falls
  back, reports the failure to ``/v1/connect``, and pushes, danmaku (UPSTREAM
  by POST) and the online count all work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from longlink.node import Node
from tests.conftest import eventually, node_settings

from .conftest import WAIT_MS, Browser
from .test_demo import LOBBY, open_demo, push, send

if TYPE_CHECKING:
    from playwright.async_api import Request, Route

#: Every WebSocket the page opens fails as a refused upgrade does (error, then close 1006).
BREAK_WEBSOCKET = """
window.WebSocket = class BlockedWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.(new Event("error"));
      this.onclose?.({ code: 1006, reason: "" });
    }, 0);
  }
  send() { throw new Error("not open"); }
  close() {}
};
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(node_settings(tmp_path / "data", demo=True)) as running:
        yield running


async def test_the_page_shows_what_was_pushed_while_it_was_cut_off(
    browser: Browser, node: Node
) -> None:
    from playwright.async_api import expect

    assert node.gateway is not None
    page = await open_demo(browser, node, "erin")
    before = await push(node, LOBBY, {"text": "before the cut"})
    await expect(page.locator(f'#log .message[data-msg-id="{before}"]')).to_have_count(1)

    connects: list[Request] = []

    async def refuse(route: Route, request: Request) -> None:
        connects.append(request)
        await route.abort("connectionrefused")

    await page.route("**/v1/connect", refuse)
    (conn,) = [c for c in node.gateway.hub.conns.values() if c.user == "erin"]
    assert conn.transport is not None
    conn.transport.abort()  # the network drops the connection
    await expect(page.locator("body")).not_to_have_attribute("data-state", "connected")
    missed = [await push(node, LOBBY, {"text": f"missed {i}"}) for i in range(3)]
    await eventually(lambda: len(connects) > 0, what="a reconnect refused")
    await page.unroute("**/v1/connect", refuse)

    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=3 * WAIT_MS
    )
    for i, msg_id in enumerate(missed):
        shown = page.locator(f'#log .message[data-msg-id="{msg_id}"]')
        await expect(shown).to_have_count(1)  # recovered once, not twice
        await expect(shown).to_contain_text(f"missed {i}")
    await expect(page.locator(f'#log .message[data-msg-id="{before}"]')).to_have_count(1)
    after = await push(node, LOBBY, {"text": "live again"})
    await expect(page.locator(f'#log .message[data-msg-id="{after}"]')).to_have_count(1)


async def test_with_websocket_blocked_the_page_works_over_the_http_stream(
    browser: Browser, node: Node
) -> None:
    from playwright.async_api import expect

    assert node.gateway is not None
    bodies: list[str] = []
    await browser.context.add_init_script(BREAK_WEBSOCKET)
    browser.context.on(
        "request",
        lambda request: (
            bodies.append(request.post_data or "")
            if request.url.endswith("/v1/connect") and request.method == "POST"
            else None
        ),
    )
    page = await open_demo(browser, node, "frank")
    (conn,) = [c for c in node.gateway.hub.conns.values() if c.user == "frank"]
    assert type(conn).__name__ == "StreamConnection"

    msg_id = await push(node, LOBBY, {"text": "pushed over the stream"})
    await expect(page.locator(f'#log .message[data-msg-id="{msg_id}"]')).to_have_count(1)
    # A danmaku goes up as a POST (UPSTREAM) and comes back down the stream (the echo).
    await send(page, "hello through the stream")
    await expect(page.locator("#stage .danmaku.mine", has_text="through the stream")).to_have_count(
        1
    )
    await expect(page.locator("#online")).to_have_text("1")

    # Cut: the reconnect tells control WebSocket failed, and is back on the stream.
    assert conn.transport is not None
    conn.transport.abort()
    await eventually(lambda: any('"failed":["ws"]' in body for body in bodies), what="failed")
    await expect(page.locator("body")).to_have_attribute(
        "data-state", "connected", timeout=3 * WAIT_MS
    )
    (again,) = [c for c in node.gateway.hub.conns.values() if c.user == "frank"]
    assert again is not conn and type(again).__name__ == "StreamConnection"
