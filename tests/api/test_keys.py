"""API keys and token buckets, without HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from longlink.api.errors import ApiError
from longlink.api.keys import ApiKeys, TokenBucket
from longlink.api.schemas import PushRequest
from longlink.model import Priority, Target
from longlink.settings import ApiKeyConfig, ConfigError, Settings, load_settings


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


def test_names_and_len() -> None:
    settings = Settings(api_key="all", api_keys=(ApiKeyConfig(name="a", key="alpha"),))
    keys = ApiKeys(settings)
    assert keys.names == ["default", "a"] and len(keys) == 2
    assert len(ApiKeys(Settings())) == 0


def test_previous_buckets_are_kept_by_name_and_rate() -> None:
    now = [0.0]
    a = ApiKeyConfig(name="a", key="alpha", rate=1, burst=1)
    old = ApiKeys(Settings(api_keys=(a,)), clock=lambda: now[0])
    old.take(old.authenticate("Bearer alpha"), 1)
    renamed_secret = ApiKeyConfig(name="a", key="alpha-2", rate=1, burst=1)
    new = ApiKeys(Settings(api_keys=(renamed_secret,)), clock=lambda: now[0], previous=old)
    with pytest.raises(ApiError):
        new.take(new.authenticate("Bearer alpha-2"), 1)  # same name and rate: same bucket
    other = ApiKeys(Settings(api_keys=(a,)), clock=lambda: now[0])  # no previous: full
    other.take(other.authenticate("Bearer alpha"), 1)


def test_max_ttl_s_scope() -> None:
    keys = ApiKeys(Settings(api_keys=(ApiKeyConfig(name="a", key="alpha", max_ttl_s=30),)))
    key = keys.authenticate("Bearer alpha")
    asked = PushRequest(Target(users=["u"]), b"", Priority.LOW, False, 31)
    with pytest.raises(ApiError) as info:
        key.check_scope(asked, "messages[2].")
    assert info.value.status == 403
    assert info.value.message.startswith("messages[2].ttl_s: key 'a' may keep messages at most 30")
    default = PushRequest(Target(users=["u"]), b"", Priority.LOW, False, 60, ttl_default=True)
    assert key.check_scope(default).ttl_s == 30
    fits = PushRequest(Target(users=["u"]), b"", Priority.LOW, False, 30)
    assert key.check_scope(fits) is fits


API_KEYS_TOML = """
[[api_keys]]
name = "chat-backend"
key = "secret-value"
targets = ["users", "rooms"]
room_prefixes = ["chat-"]
high_priority = false
guaranteed = true
rate = 1000
burst = 2000
max_ttl_s = 300
"""


def test_max_ttl_s_from_toml_beside_the_contract_fields(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(API_KEYS_TOML)
    (key,) = load_settings(path, environ={}).api_keys
    assert key.max_ttl_s == 300 and key.room_prefixes == ("chat-",) and key.rate == 1000
    path.write_text(API_KEYS_TOML.replace("max_ttl_s = 300\n", ""))
    assert load_settings(path, environ={}).api_keys[0].max_ttl_s == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (API_KEYS_TOML.replace("max_ttl_s = 300", "max_ttl_s = -1"), "max_ttl_s"),
        (API_KEYS_TOML.replace("max_ttl_s = 300", 'max_ttl_s = "300"'), "max_ttl_s"),
        (API_KEYS_TOML.replace("max_ttl_s = 300", "max_ttl_s = 1.5"), "max_ttl_s"),
        (API_KEYS_TOML + API_KEYS_TOML.replace("secret-value", "other"), "unique"),
    ],
)
def test_bad_key_entries(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(path, environ={})
