"""The admin dashboard at ``/admin`` in Chromium against a real node (and its quality panel)."""

from __future__ import annotations

from pathlib import Path

import httpx
import msgspec

from longlink.client import Client
from longlink.logic.quality import RTT_BUCKETS_MS
from longlink.node import Node
from longlink.protocol import Op
from tests.conftest import API_KEY, WAIT, node_settings
from tests.e2e.raw_sessions import open_session

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


async def test_the_quality_panel_after_clients_reported(browser: Browser, tmp_path: Path) -> None:
    """The quality panel (docs/quality.md): per node and transport, from GET /v1/quality."""
    from playwright.async_api import expect

    async with (
        Node(node_settings(tmp_path / "data", demo=True, node_id="edge-7")) as node,
        Client(node.http_url, user="tcp-viewer", transport="tcp"),
    ):
        # A browser client: the demo page's JS SDK reports right after connecting (over ws).
        demo = await browser.open(f"{node.http_url}/?user=browser-viewer")
        await expect(demo.locator("body")).to_have_attribute("data-state", "connected")
        # Clients on a poor network: their REPORTs carry slow heartbeat round trips.
        slow = [await open_session(node, f"mobile{i}") for i in range(2)]
        for i, (raw, _) in enumerate(slow):
            report = {"rtt_ms": [40, 80, 120, 180, 260, 450 + 100 * i], "transport": "tcp"}
            await raw.send_frame(Op.REPORT, msgspec.json.encode({**report, "reconnects": 3}))

        page = await browser.open(f"{node.http_url}/admin")
        await page.fill("#key", API_KEY)
        await page.press("#key", "Enter")
        panel = page.locator("#quality-panel")
        ws_row = panel.locator('#quality tbody tr[data-node="edge-7"][data-transport="ws"]')
        tcp_row = panel.locator('#quality tbody tr[data-node="edge-7"][data-transport="tcp"]')
        await expect(ws_row).to_be_visible()
        await expect(tcp_row.locator("td").nth(3)).to_have_text("3")  # connections
        # The injected round trips: p90 above 300 ms is marked (control ranks such a node down).
        await expect(tcp_row.locator("td").nth(4)).to_have_text("150 · 500 · 750")
        await expect(tcp_row.locator("td.bad")).to_have_count(1)
        buckets = len(RTT_BUCKETS_MS) + 1
        await expect(tcp_row.locator("td").nth(5).locator(".hist i")).to_have_count(buckets)
        await expect(ws_row.locator("td").nth(7)).not_to_have_text("– · –")  # connect time
        await expect(panel.locator("#q-reports")).to_have_text("4 · 0")  # 2 SDKs + 2 injected
        await expect(panel.locator("#q-reconnects")).not_to_have_text("–")
        await expect(panel.locator("#q-rtt")).to_have_text("150 · 500")
        ARTIFACTS.mkdir(exist_ok=True)
        await panel.screenshot(path=str(ARTIFACTS / "admin-quality.png"))
        for raw, _ in slow:
            await raw.close()
