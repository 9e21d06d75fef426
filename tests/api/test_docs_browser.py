"""``/docs`` renders in headless Chromium, with nothing fetched from outside the server.

The same approach as the browser tests (tests/browser/): Playwright for
Python drives Debian's ``/usr/bin/chromium`` (or ``LONGLINK_CHROMIUM``), no
browser download. Without Chromium or Playwright the test skips, except under
``CI=true`` where that is a failure (``.ci/run`` installs Chromium). The
screenshot is ``tests/artifacts/api-docs.png`` (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from longlink.node import Node
from tests.conftest import WAIT, node_settings

CHROMIUM = os.environ.get("LONGLINK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _need_a_browser() -> None:
    missing = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the /docs browser test needs Chromium and Playwright: {missing}")
        pytest.skip(missing)


async def test_docs_render_in_chromium(tmp_path: Path) -> None:
    _need_a_browser()
    from playwright.async_api import Route, async_playwright

    outside: list[str] = []
    errors: list[str] = []

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:  # a CDN, fonts, anything: the page must not need it
            outside.append(route.request.url)
            await route.abort()

    async with Node(node_settings(tmp_path)) as node, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT * 2000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.route("**/*", only_local)
            await page.goto(f"{node.http_url}/docs")
            title = page.locator(".swagger-ui .info .title")
            await title.wait_for()
            assert (await title.inner_text()).startswith("longlink HTTP API")
            push = page.locator(".opblock-summary-path", has_text="/v1/push").first
            await push.wait_for()
            servers = page.locator(".servers select option")
            assert await servers.first.inner_text() == "/ - the server that serves this document"
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
        finally:
            await browser.close()
    assert not outside, outside
    assert not errors, errors
