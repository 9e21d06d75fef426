"""API keys and token buckets, without HTTP."""

from __future__ import annotations

import hashlib

import pytest

from longlink.api.errors import ApiError
from longlink.api.keys import ApiKeys, TokenBucket
from longlink.settings import ApiKeyConfig, Settings


def test_bucket_starts_full_and_refills() -> None:
    bucket = TokenBucket(rate=2, burst=4)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [0.0] * 4
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.take(1, 0.5) == 0.0
    assert bucket.take(2, 10.0) == 0.0  # refilled to the burst, not beyond
    assert bucket.take(3, 10.0) == pytest.approx(0.5)


def test_bucket_default_burst_is_one_second() -> None:
    bucket = TokenBucket(rate=3, burst=0)
    assert bucket.burst == 3
    assert TokenBucket(rate=0.1, burst=0).burst == 1


def test_bucket_lets_a_big_batch_through_into_debt() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    assert bucket.take(5, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(4.0)
    assert bucket.take(1, 4.0) == 0.0


def test_bucket_give_back() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    bucket.take(2, 0.0)
    bucket.give_back(1)
    assert bucket.take(1, 0.0) == 0.0


def test_rate_limit_retry_after_uses_the_clock() -> None:
    now = [100.0]
    settings = Settings(api_keys=(ApiKeyConfig(name="k", key="secret", rate=0.25, burst=1),))
    keys = ApiKeys(settings, clock=lambda: now[0])
    key = keys.authenticate("Bearer secret")
    keys.take(key, 1)
    with pytest.raises(ApiError) as info:
        keys.take(key, 1)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "4"
    now[0] += 3.5
    with pytest.raises(ApiError) as info:
        keys.take(key, 1)
    assert info.value.headers["Retry-After"] == "1"
    now[0] += 0.5
    keys.take(key, 1)


def test_authenticate() -> None:
    settings = Settings(
        api_key="all",
        api_keys=(
            ApiKeyConfig(name="a", key="alpha", targets=("users",)),
            ApiKeyConfig(name="b", key_sha256=hashlib.sha256(b"beta").hexdigest().upper()),
        ),
    )
    keys = ApiKeys(settings)
    assert keys.authenticate("Bearer all").name == "default"
    assert keys.authenticate("bearer alpha").name == "a"
    assert keys.authenticate("Bearer  beta ").name == "b"
    for header in (None, "", "Bearer", "Bearer gamma", "Token alpha", "alpha"):
        with pytest.raises(ApiError) as info:
            keys.authenticate(header)
        assert info.value.status == 401
        assert info.value.headers == {"WWW-Authenticate": "Bearer"}
