"""The demo page at ``/`` and the dashboard at ``/admin``: served locally, nothing from elsewhere.

What the pages *do* is tested in a real browser (tests/browser/); here: the
files, their headers, and rules that can be read off the source.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import pytest

from longlink.web.echo import DEMO_ROOMS
from longlink.web.files import package_file
from longlink.web.pages import ADMIN_CSP, ASSETS, DEMO_CSP
from tests.api.conftest import Harness, open_harness


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


class Links(HTMLParser):
    """Every ``src`` and ``href`` of a page, and the ``data-room`` values."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.rooms: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)
            if name == "data-room" and value is not None:
                self.rooms.append(value)


def links_of(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("path, csp", [("/", DEMO_CSP), ("/admin", ADMIN_CSP)])
async def test_pages_are_served_without_a_key(h: Harness, path: str, csp: str) -> None:
    response = await h.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<title>longlink" in response.text


async def test_everything_a_page_loads_is_served_here(h: Harness) -> None:
    for path in ("/", "/admin"):
        page = (await h.client.get(path)).text
        urls = links_of(page).urls
        assert urls
        for url in urls:
            if url == "data:,":  # the empty favicon
                continue
            assert url.startswith("/") and not url.startswith("//"), url  # no CDN, no other site
            response = await h.client.get(url)
            assert response.status_code == 200, url
    # Scripts import only from this server, by absolute path.
    for name in ASSETS:
        if name.endswith(".js"):
            source = package_file("pages", name).decode()
            for target in re.findall(r"""^import .* from ["']([^"']+)["']""", source, re.M):
                assert target == "/sdk/longlink.js", (name, target)
            assert not re.search(r"(https?|wss?)://", source), name  # no absolute URLs


async def test_page_files_have_their_types_and_others_are_404(h: Harness) -> None:
    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
    for name in ASSETS:
        response = await h.client.get(f"/web/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"] == types[name.rsplit(".", 1)[1]]
        assert response.content == package_file("pages", name)
    for name in ("nope.js", "demo.html", "..%2Fsdk%2Flonglink.js", "echo.py"):
        response = await h.client.get(f"/web/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]["code"] == "not_found"


async def test_revalidation_gets_304(h: Harness) -> None:
    for path in ("/", "/admin", "/web/demo.js"):
        first = await h.client.get(path)
        again = await h.client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


async def test_the_dashboard_is_never_cached(h: Harness) -> None:
    response = await h.client.get("/admin")
    assert response.headers["cache-control"] == "no-store"
    assert "connect-src 'self'" in response.headers["content-security-policy"]


def test_the_demo_offers_the_demo_rooms() -> None:
    page = links_of(package_file("pages", "demo.html").decode())
    assert tuple(page.rooms) == DEMO_ROOMS
    script = package_file("pages", "demo.js").decode()
    for room in DEMO_ROOMS:
        assert f'"{room}"' in script


def test_the_dashboard_keeps_the_key_in_memory_only() -> None:
    script = package_file("pages", "admin.js").decode()
    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in script
    # Requests go to this server's own API paths only.
    assert set(re.findall(r"""api\(\s*[`"'](/[^`"'$]*)""", script)) <= {
        "/v1/nodes",
        "/v1/online",
        "/v1/stats",
        "/v1/stats/reach",
        "/v1/quality",
        "/v1/push",
        "/v1/messages/",
    }
    assert script.count("fetch(") == 1  # one place sends requests: api()
