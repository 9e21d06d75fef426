"""Settings from TOML and ``LONGLINK_*`` variables (PROTOCOL.md §3)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from longlink.settings import ApiKeyConfig, ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "longlink.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ defaults


def test_defaults_are_those_of_the_contract() -> None:
    s = load_settings(environ={})
    assert s.host == "127.0.0.1"
    assert (s.http_port, s.ws_port, s.tcp_port) == (8080, 7000, 7001)
    assert s.node_id == "g1"
    assert s.region == "local"
    assert s.api_key is None
    assert s.ticket_secret is None
    assert s.demo is False
    assert s.auth_timeout_s == 5
    assert s.heartbeat_s == 30
    assert s.retry_interval_s == 2
    assert s.max_retries == 2
    assert s.aggregate_ms == 50
    assert s.data_dir == "./data"
    assert s.bus == "memory"
    assert s.webhook_url is None
    assert s.max_frame == 64 * 1024  # §1.1 limit
    assert s.max_rooms == 8  # §1.3 rule 4
    assert s.roles == ("gateway", "api", "control", "dispatch")
    assert s.api_keys == ()


def test_token_secret_is_random_per_start() -> None:
    a, b = load_settings(environ={}), load_settings(environ={})
    assert a.token_secret != b.token_secret
    assert len(a.token_secret) >= 32


def test_settings_are_frozen() -> None:
    s = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.http_port = 1  # type: ignore[misc]
    assert s.replace(http_port=0).http_port == 0
    assert s.http_port == 8080


@pytest.mark.parametrize(
    ("host", "public", "advertised"),
    [("127.0.0.1", None, "127.0.0.1"), ("0.0.0.0", None, "127.0.0.1"), ("0.0.0.0", "a.b", "a.b")],
)
def test_advertised_host(host: str, public: str | None, advertised: str) -> None:
    assert Settings(host=host, public_host=public).advertised_host == advertised


# ------------------------------------------------------------------ environment


@pytest.mark.parametrize(
    ("var", "raw", "field", "value"),
    [
        ("LONGLINK_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("LONGLINK_HTTP_PORT", "0", "http_port", 0),
        ("LONGLINK_WS_PORT", "7100", "ws_port", 7100),
        ("LONGLINK_TCP_PORT", "7101", "tcp_port", 7101),
        ("LONGLINK_NODE_ID", "g7", "node_id", "g7"),
        ("LONGLINK_ID_NODE", "1023", "id_node", 1023),
        ("LONGLINK_ID_NODE", "", "id_node", None),
        ("LONGLINK_REGION", "eu", "region", "eu"),
        ("LONGLINK_API_KEY", "k", "api_key", "k"),
        ("LONGLINK_TICKET_SECRET", "ts", "ticket_secret", "ts"),
        ("LONGLINK_TOKEN_SECRET", "shared", "token_secret", "shared"),
        ("LONGLINK_DEMO", "1", "demo", True),
        ("LONGLINK_DEMO", "0", "demo", False),
        ("LONGLINK_AUTH_TIMEOUT_S", "2.5", "auth_timeout_s", 2.5),
        ("LONGLINK_HEARTBEAT_S", "10", "heartbeat_s", 10),
        ("LONGLINK_RETRY_INTERVAL_S", "0.5", "retry_interval_s", 0.5),
        ("LONGLINK_MAX_RETRIES", "0", "max_retries", 0),
        ("LONGLINK_AGGREGATE_MS", "0", "aggregate_ms", 0),
        ("LONGLINK_DATA_DIR", "/var/lib/ll", "data_dir", "/var/lib/ll"),
        ("LONGLINK_BUS", "redis://127.0.0.1:6379/0", "bus", "redis://127.0.0.1:6379/0"),
        ("LONGLINK_WEBHOOK_URL", "http://h/e", "webhook_url", "http://h/e"),
        ("LONGLINK_ROLES", "gateway,api", "roles", ("gateway", "api")),
    ],
)
def test_every_contract_variable_works(var: str, raw: str, field: str, value: Any) -> None:
    assert getattr(load_settings(environ={var: raw}), field) == value


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONGLINK_NODE_ID", "from-env")
    assert load_settings().node_id == "from-env"


def test_env_overrides_file_and_keyword_overrides_env(tmp_path: Path) -> None:
    path = write(tmp_path, 'http_port = 9000\nnode_id = "file-node"\nregion = "eu"\n')
    s = load_settings(path, environ={"LONGLINK_HTTP_PORT": "9100", "LONGLINK_REGION": "us"})
    assert s.http_port == 9100
    assert s.region == "us"
    assert s.node_id == "file-node"
    s = load_settings(path, environ={"LONGLINK_HTTP_PORT": "9100"}, http_port=9200)
    assert s.http_port == 9200


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'demo = true\nauth_timeout_s = 3\nroles = ["api", "control"]\nbus = "memory"\n',
    )
    s = load_settings(path, environ={})
    assert s.demo is True
    assert s.auth_timeout_s == 3.0
    assert s.roles == ("api", "control")


# ------------------------------------------------------------------ roles


@pytest.mark.parametrize(
    ("raw", "roles"),
    [
        ("gateway,api", ("gateway", "api")),
        (" gateway , dispatch ", ("gateway", "dispatch")),
        ("control", ("control",)),
        ("gateway,api,control,dispatch", ("gateway", "api", "control", "dispatch")),
    ],
)
def test_roles_parsing(raw: str, roles: tuple[str, ...]) -> None:
    assert load_settings(environ={"LONGLINK_ROLES": raw}).roles == roles


def test_unknown_role_is_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_settings(environ={"LONGLINK_ROLES": "gateway,bogus"})


# ------------------------------------------------------------------ errors


def test_unknown_setting_in_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="htp_port"):
        load_settings(write(tmp_path, "htp_port = 1\n"), environ={})


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("LONGLINK_HTTP_PORT", "eighty"),
        ("LONGLINK_HEARTBEAT_S", "3.5"),
        ("LONGLINK_MAX_RETRIES", ""),
        ("LONGLINK_AUTH_TIMEOUT_S", "soon"),
        ("LONGLINK_DEMO", "maybe"),
    ],
)
def test_bad_value_names_the_variable(var: str, raw: str) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_settings(environ={var: raw})
    assert var in str(exc_info.value)


def test_bad_value_in_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ws_port"):
        load_settings(write(tmp_path, 'ws_port = "seven thousand"\n'), environ={})


def test_unreadable_or_malformed_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, "http_port = = 1\n"), environ={})


# ------------------------------------------------------------------ [[api_keys]]

API_KEYS = """
[[api_keys]]
name = "chat-backend"
key = "secret-value"
targets = ["users", "rooms"]
room_prefixes = ["chat-"]
high_priority = false
guaranteed = true
rate = 1000
burst = 2000

[[api_keys]]
name = "ops"
key_sha256 = "{digest}"
"""


def test_api_keys_from_toml(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"ops-key").hexdigest()
    s = load_settings(write(tmp_path, API_KEYS.format(digest=digest)), environ={})
    chat, ops = s.api_keys
    assert chat == ApiKeyConfig(
        name="chat-backend",
        key="secret-value",
        targets=("users", "rooms"),
        room_prefixes=("chat-",),
        high_priority=False,
        guaranteed=True,
        rate=1000.0,
        burst=2000.0,
    )
    assert ops.name == "ops"
    assert ops.key is None
    assert ops.key_sha256 == digest
    # An unrestricted key: every target, every prefix, every priority.
    assert ops.targets == ("users", "devices", "rooms", "areas", "all")
    assert ops.room_prefixes == ()
    assert ops.high_priority is True
    assert ops.guaranteed is True


def test_key_sha256_is_normalised_to_lowercase_hex(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    text = f'[[api_keys]]\nname = "n"\nkey_sha256 = " {digest.upper()} "\n'
    (key,) = load_settings(write(tmp_path, text), environ={}).api_keys
    assert key.key_sha256 == digest


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ('name = "n"', "key or key_sha256"),
        ('key = "k"', "name"),
        ('name = "n"\nkey = "k"\nscopes = ["all"]', "scopes"),
        ('name = "n"\nkey = "k"\ntargets = ["users", "groups"]', "groups"),
        ('name = "n"\nkey = "k"\ntargets = "users"', "targets"),
        ('name = "n"\nkey = "k"\nroom_prefixes = [1]', "room_prefixes"),
        ('name = "n"\nkey = "k"\nhigh_priority = "false"', "high_priority"),
        ('name = "n"\nkey = "k"\nguaranteed = 1', "guaranteed"),
        ('name = "n"\nkey = "k"\nrate = "fast"', "rate"),
        ('name = "n"\nkey = "k"\nburst = -1', "burst"),
        ('name = "n"\nkey = 5', "key"),
        ('name = "n"\nkey_sha256 = "abc"', "key_sha256"),
        ('name = "n"\nkey_sha256 = "' + "z" * 64 + '"', "key_sha256"),
    ],
)
def test_bad_api_key_is_config_error(tmp_path: Path, entry: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_settings(write(tmp_path, f"[[api_keys]]\n{entry}\n"), environ={})


def test_api_keys_must_be_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="api_keys"):
        load_settings(write(tmp_path, 'api_keys = "k"\n'), environ={})
    with pytest.raises(ConfigError, match="api_keys"):
        load_settings(write(tmp_path, 'api_keys = ["k"]\n'), environ={})


@pytest.mark.parametrize("raw", ["0", "1025"])
def test_write_join_out_of_range_is_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="LONGLINK_WRITE_JOIN"):
        load_settings(environ={"LONGLINK_WRITE_JOIN": raw})
