"""The admin dashboard at ``/admin`` in Chromium against a real node."""

from __future__ import annotations

from pathlib import Path

import httpx

from longlink.client import Client
from longlink.node import Node
from tests.conftest import API_KEY, WAIT, node_settings

from .conftest import ARTIFACTS, Browser


async def test_the_dashboard_with_the_key(browser: Browser, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with (
        Node(node_settings(tmp_path / "data", demo=True, node_id="edge-7")) as node,
        Client(node.http_url, user="viewer", rooms=["hall"]) as viewer,
    ):
        page = await browser.open(f"{node.http_url}/admin")
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.locator("#dashboard")).to_be_hidden()

        # A wrong key is refused and the dashboard stays closed.
        await page.fill("#key", "not-the-key")
        await page.press("#key", "Enter")
        await expect(page.locator("#login-error")).to_have_text("That key is not accepted.")
        await expect(page.locator("#dashboard")).to_be_hidden()

        await page.fill("#key", API_KEY)
        await page.press("#key", "Enter")
        await expect(page.locator("#dashboard")).to_be_visible()
        assert await page.input_value("#key") == ""  # not left in the field
        node_row = page.locator("#nodes tbody tr", has_text="edge-7")
        await expect(node_row).to_contain_text("healthy")
        await expect(page.locator("#rooms tbody tr", has_text="hall")).to_contain_text("1")
        await expect(page.locator("#connections")).to_have_text("1")
        polls = int(await page.get_attribute("body", "data-polls") or "0")
        await expect(page.locator("body")).not_to_have_attribute("data-polls", str(polls))  # live

        # The push form queues a message; its trace is looked up by id.
        await page.select_option("#push-kind", "rooms")
        await page.fill("#push-ids", "hall")
        await page.fill("#push-data", '{"text": "from the dashboard"}')
        await page.click("#push-form button[type=submit]")
        await expect(page.locator("#push-result")).to_contain_text("Queued as")
        got = await viewer.next_message(timeout=WAIT)
        assert got.room == "hall" and got.json() == {"text": "from the dashboard"}
        await page.click("#push-result button")
        await expect(page.locator("#trace-id")).to_have_value(str(got.msg_id))
        await expect(page.locator("#trace-events tbody")).to_contain_text("accepted")
        await expect(page.locator("#trace-events tbody")).to_contain_text("written")

        # A trace looked up by hand; an unknown id says so.
        await page.fill("#trace-id", "12345")
        await page.press("#trace-id", "Enter")
        await expect(page.locator("#trace-result")).to_contain_text("No trace of 12345")

        # The traffic figures move with the traffic.
        async with httpx.AsyncClient(
            base_url=node.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
        ) as api:
            for n in range(5):
                await api.post("/v1/push", json={"to": {"rooms": ["hall"]}, "data": n})
        await expect(page.locator("#aggregation")).not_to_have_text("–")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "admin.png"), full_page=True)

        # Forgetting the key closes the dashboard.
        await page.click("#signout")
        await expect(page.locator("#login")).to_be_visible()
        await expect(page.locator("#dashboard")).to_be_hidden()
