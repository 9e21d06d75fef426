"""The API docs at ``/docs`` in Chromium: Swagger UI renders, with nothing fetched from outside."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from longlink.node import Node
from tests.conftest import node_settings

from .conftest import ARTIFACTS, Browser


async def test_api_docs_render_from_the_server_alone(browser: Browser, tmp_path: Path) -> None:
    from playwright.async_api import Route, expect

    outside: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:  # a CDN, a font, anything: the page must not need it
            outside.append(route.request.url)
            await route.abort()

    await browser.context.route("**/*", only_local)
    async with Node(node_settings(tmp_path / "data")) as node:
        page = await browser.open(f"{node.http_url}/docs")
        await expect(page.locator(".swagger-ui .info .title")).to_contain_text("longlink HTTP API")
        await expect(
            page.locator(".opblock-summary-path", has_text="/v1/push").first
        ).to_be_visible()
        await expect(page.locator(".opblock-summary-path", has_text="/readyz")).to_be_visible()
        server = page.locator(".servers select option").first
        await expect(server).to_have_text("/ - the server that serves this document")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    assert not outside, outside
