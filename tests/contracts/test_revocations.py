"""Contract of :class:`~longlink.logic.base.Revocations`, on every registry backend."""

from __future__ import annotations

from longlink.logic.base import Registry
from tests.conftest import eventually


async def test_nothing_is_revoked_at_first(registry: Registry) -> None:
    assert await registry.revoked_before("u1") == 0


async def test_a_revocation_holds_for_its_user_only(registry: Registry) -> None:
    await registry.revoke_user("u1", 1_000, ttl_s=60)
    assert await registry.revoked_before("u1") == 1_000
    assert await registry.revoked_before("u2") == 0


async def test_the_later_moment_wins(registry: Registry) -> None:
    await registry.revoke_user("u1", 2_000, ttl_s=60)
    await registry.revoke_user("u1", 1_000, ttl_s=60)
    assert await registry.revoked_before("u1") == 2_000
    await registry.revoke_user("u1", 3_000, ttl_s=60)
    assert await registry.revoked_before("u1") == 3_000


async def test_a_revocation_ends_with_its_ttl(registry: Registry) -> None:
    await registry.revoke_user("u1", 1_000, ttl_s=1)

    async def gone() -> bool:
        return await registry.revoked_before("u1") == 0

    await eventually(gone, within=3.0, what="the revocation to expire", interval=0.1)
