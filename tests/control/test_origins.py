"""The allowed-origins policy (PROTOCOL.md §1.5)."""

from __future__ import annotations

from longlink.control.origins import Origins


def test_default_is_any_in_demo_mode_and_none_otherwise() -> None:
    assert Origins.parse(None, demo=True).allows("https://x.example")
    assert not Origins.parse(None).allows("https://x.example")
    assert Origins.parse(None).allows(None)  # no Origin header: not a cross-site request


def test_a_list_allows_exactly_its_origins() -> None:
    origins = Origins.parse(" https://a.example/ ,https://B.example")
    assert origins.allows("https://a.example") and origins.allows("https://b.example")
    assert not origins.allows("https://c.example")
    assert origins.cors_origin("https://a.example") == "https://a.example"
    assert origins.cors_origin("https://c.example") is None


def test_star_allows_every_origin() -> None:
    origins = Origins.parse("*")
    assert origins.allows("http://anything:1234") and origins.cors_origin("http://x") == "*"
