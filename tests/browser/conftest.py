"""Browser tests: the pages in headless Chromium (Debian's ``chromium``) driven by Playwright.

No browser is downloaded: Playwright launches ``/usr/bin/chromium`` (or
``LONGLINK_CHROMIUM``) with a fresh profile in the test's temporary directory.
Without Chromium or Playwright the tests skip, except under ``CI=true``
where that is a failure (``.ci/run`` installs Chromium).

Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import WAIT

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

CHROMIUM = os.environ.get("LONGLINK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
#: Playwright's waits, in milliseconds.
WAIT_MS = WAIT * 1000


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


class Browser:
    """One Chromium with a fresh profile; pages opened in it, their uncaught errors kept."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.errors: list[str] = []

    async def open(self, url: str) -> Page:
        page = await self.context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.errors.append(f"{url}: {error}"))
        await page.goto(url)
        return page


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need Chromium and Playwright under CI: {missing}")
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    options: dict[str, Any] = {
        "executable_path": CHROMIUM,
        "args": CHROMIUM_ARGS,
        "headless": True,
        "viewport": {"width": 1280, "height": 760},
    }
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), **options
        )
        try:
            chromium = Browser(context)
            yield chromium
            assert not chromium.errors, chromium.errors  # no uncaught error in any page
        finally:
            await context.close()
