"""One frozen, typed settings object, read from a TOML file and ``LONGLINK_*`` variables.

Environment variables override the file (PROTOCOL.md §3). Only the CLI calls
:func:`load_settings`; everything else receives the :class:`Settings` object.
See docs/configuration.md for every field.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longlink.protocol.errors import LonglinkError
from longlink.protocol.ids import MAX_ID_LENGTH


class ConfigError(LonglinkError):
    """The configuration file or an environment variable is invalid."""


TARGET_KINDS = ("users", "devices", "rooms", "areas", "all")


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    """One API key of the push API (PROTOCOL.md §3, ``[[api_keys]]``)."""

    name: str
    key: str | None = None
    key_sha256: str | None = None
    targets: tuple[str, ...] = TARGET_KINDS
    room_prefixes: tuple[str, ...] = ()
    high_priority: bool = True
    guaranteed: bool = True
    rate: float = 0.0  # messages per second; 0 means unlimited
    burst: float = 0.0
    max_ttl_s: int = 0  # longest ttl_s this key may ask for; 0: settings.max_ttl_s


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a longlink process needs to know; see docs/configuration.md."""

    host: str = "127.0.0.1"
    public_host: str | None = None
    http_port: int = 8080
    ws_port: int = 7000
    tcp_port: int = 7001
    reuse_port: bool = False  # SO_REUSEPORT: gateway processes on one machine share the ports
    # HTTP stream POSTs that land on another gateway process of this machine go to the owner
    # through a unix socket in this directory (on with reuse_port or when set; "" with
    # reuse_port: {tmp}/longlink-relay-{uid}; gateway/relay.py).
    stream_relay_dir: str = ""
    # The addresses clients are given, when they differ from the listeners' (a TLS-terminating
    # proxy in front): e.g. wss://push.example.com/ws, https://push.example.com/v1/stream,
    # push.example.com:7443. None: built from public_host and the ports.
    advertise_ws: str | None = None
    advertise_stream: str | None = None
    advertise_tcp: str | None = None
    node_id: str = "g1"
    id_node: int | None = None  # message-id node number (0..1023); None: lease a free one
    region: str = "local"
    node_cost: float = 1.0  # this node's price: control prefers cheaper nodes until they are full
    node_full: float = 0.8  # the load (CPU share of a core) from which this node counts as full
    quality_samples_per_s: int = 50  # TCP_INFO samples per second (a rotating pass, no timers)
    quality_bad_rtt_ms: int = 300  # a node whose clients' RTT p90 exceeds this ranks after others
    api_key: str | None = None
    ticket_secret: str | None = None
    token_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    token_ttl_s: int = 600
    # Secrets by key id, "kid:secret,kid:secret": the first signs, all verify (rotation;
    # docs/security.md). Empty: token_secret / ticket_secret alone.
    token_secrets: str = ""
    ticket_secrets: str = ""
    max_ticket_ttl_s: int = 24 * 3600  # a ticket whose exp is further ahead is refused
    demo: bool = False
    demo_echo: bool = True  # demo mode: UPSTREAM re-broadcast to the sender's room (web/echo.py)
    # Browser origins allowed (CORS, WebSocket Origin; PROTOCOL.md §1.5): comma-separated or
    # "*"; None: "*" in demo mode, none otherwise (control/origins.py).
    allowed_origins: str | None = None
    auth_timeout_s: float = 5.0
    heartbeat_s: int = 30
    min_heartbeat_s: int = 1
    max_heartbeat_s: int = 300
    retry_interval_s: float = 2.0
    max_retries: int = 2
    aggregate_ms: int = 50
    # Dispatch and write path (docs/dispatch.md).
    aggregate_max_messages: int = 200  # a room's window is flushed early at this many messages
    aggregate_max_bytes: int = 64 * 1024  # ... or at this many bytes of inner frames
    compress_min_bytes: int = 256  # smaller batches go out uncompressed
    brotli_quality: int = 5
    high_copies: int = 2  # independent dispatch paths per high-priority message (1 or 2)
    dedup_window_s: float = 60.0  # how long a gateway remembers a high-priority msg id
    dedup_size: int = 100_000  # ... and how many ids at most
    outbox_soft_kib: int = 256  # client write buffer past which low-priority batches drop
    outbox_hard_kib: int = 1024  # ... past which a high-priority push closes with server_busy
    write_join: int = 64  # room messages waiting back to back joined into one write (1: none)
    # Room history and recovery (PROTOCOL.md §1.4 rules 2-4; docs/rooms.md).
    history_size: int = 100  # messages kept per room; 0: history off
    history_ttl_s: int = 300  # seconds a room message is kept after its acceptance
    history_max_bytes: int = 64 << 20  # embedded history: all rooms together, oldest dropped first
    data_dir: str = "./data"
    store_sync: str = "full"  # offline store fsync: full (power-loss safe) or normal
    trace_scope: str = "all"  # messages traced: all, guaranteed, off
    trace_ttl_s: float = 600.0  # how long a message's trace is kept
    trace_max_messages: int = 50_000  # traces kept at most (~0.5 KiB each; oldest go first)
    reach_window_s: int = 300  # sliding window of GET /v1/stats/reach
    bus: str = "memory"
    # Redis bus: streams per queue priority (0: 8 on a Redis Cluster, else 1; docs/deployment.md).
    queue_shards: int = 0
    # Redis store: replicas that must hold a guaranteed message before its 202 (WAIT);
    # -1: 1 under Sentinel, else 0. And how long to wait for them (ms).
    store_wait_replicas: int = -1
    store_wait_ms: int = 1_000
    claim_idle_ms: int = 10_000  # Redis bus: a dispatch worker's unacked messages move after this
    consumer_ttl_ms: int = 1_000  # Redis bus: ... or once its liveness key is this old (0: off)
    node_ttl_ms: int = 5_000  # Redis registry: a node silent this long is gone from counts
    sweep_after_s: float = 30.0  # Redis registry: a node gone this long has its sessions removed
    webhook_url: str | None = None
    webhook_secret: str | None = None  # HMAC-SHA256 key of X-Longlink-Signature
    webhook_queue_size: int = 10_000  # events waiting for the webhook; more are dropped
    webhook_concurrency: int = 4  # lanes POSTing at once (one connection's events: one lane)
    webhook_max_attempts: int = 6
    webhook_retry_s: float = 0.5  # first retry delay; doubles up to 30 s
    webhook_timeout_s: float = 5.0
    upstream_rate: float = 10.0  # UPSTREAM frames per second per connection
    upstream_burst: int = 20
    control_rate: float = 20.0  # other frames that earn a reply, per second per connection
    control_burst: int = 60  # ... at once (past 3 bursts of debt: rate_limited, then close)
    kick_same_device: bool = True  # a new AUTH of a user's device KICKs its older connection
    max_conns_per_ip: int = 500  # gateway connections per client address, each listener (0: any)
    # The HTTP port (docs/security.md): limits uvicorn does not enforce (api/guard.py).
    http_max_header_bytes: int = 32 * 1024  # request line and headers; past it 431
    http_header_timeout_s: float = 10.0  # to receive a request's head (408, or closed idle)
    http_body_timeout_s: float = 30.0  # to receive a request's body (408)
    http_keepalive_s: float = 5.0  # an idle keep-alive connection is closed after this
    http_max_connections: int = 1024  # open HTTP connections; more get 503 and close
    http_max_conns_per_ip: int = 128  # per client address (0: any); more get 429 and close
    connect_rate: float = 50.0  # POST /v1/connect per client address per second (0: any)
    connect_burst: int = 200
    # Load balancers whose X-Forwarded-For names the client (addresses or CIDRs).
    trusted_proxies: tuple[str, ...] = ()
    json_max_depth: int = 64  # nesting of a request body's JSON (400 naming the field)
    # TLS on every listener (PROTOCOL.md §1.5): PEM files, re-read on SIGHUP.
    tls_cert: str | None = None
    tls_key: str | None = None
    max_frame: int = 64 * 1024
    max_rooms: int = 8
    max_payload: int = 32 * 1024
    default_ttl_s: int = 60
    max_ttl_s: int = 7 * 24 * 3600
    min_ttl_s: int = 1
    max_targets: int = 1000  # ids in one push's "to"
    max_batch: int = 1000  # messages in one /v1/push/batch
    max_push_body: int = 1 << 20  # bytes; raised to 8 x max_payload when that is larger
    max_batch_body: int = 16 << 20  # bytes; raised to 2 x max_push_body when that is larger
    max_id_length: int = MAX_ID_LENGTH  # ids in the push API (protocol.ids: at most 128)
    id_pattern: str = ""  # a regex every such id must match in full ("": any, no control chars)
    queue_size: int = 100_000
    overload_depth: int | None = None  # low-priority 503 from here; None: 80% of queue_size
    drain_timeout_s: float = 10.0
    roles: tuple[str, ...] = ("gateway", "api", "control", "dispatch")
    # Logging (longlink.logs; docs/operations.md): level, "text" or "json" lines, and the
    # share of connection and push records (logger longlink.access) logged at info.
    log_level: str = "info"
    log_format: str = "text"
    access_log_sample: float = 0.0
    api_keys: tuple[ApiKeyConfig, ...] = ()

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (tests use this)."""
        return dataclasses.replace(self, **changes)

    @property
    def overload_mark(self) -> int:
        """Queue depth from which low-priority pushes get 503 ``overloaded`` (docs/api-keys.md)."""
        if self.overload_depth is not None:
            return self.overload_depth
        return max(1, self.queue_size * 8 // 10)

    @property
    def advertised_host(self) -> str:
        """The host clients are told to connect to."""
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host


ROLES = ("gateway", "api", "control", "dispatch")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")

# field name -> environment variable (PROTOCOL.md §3 and extensions).
ENV_NAMES: dict[str, str] = {
    f.name: "LONGLINK_" + f.name.upper()
    for f in dataclasses.fields(Settings)
    if f.name not in ("api_keys",)
}


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    try:
        if kind in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind in ("int", int):
            return int(raw)
        if kind == "int | None":
            return None if raw is None or str(raw).strip() == "" else int(raw)
        if kind in ("float", float):
            return float(raw)
        if "tuple" in str(kind):
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(part) for part in raw)
        if raw is None or raw == "":
            return None if "None" in str(kind) else ""
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind}") from exc


def _api_key(entry: Any) -> ApiKeyConfig:
    if not isinstance(entry, Mapping):
        raise ConfigError("api_keys: each entry must be a [[api_keys]] table")
    known = {f.name for f in dataclasses.fields(ApiKeyConfig)}
    unknown = set(entry) - known
    if unknown:
        raise ConfigError(f"api_keys: unknown fields {sorted(unknown)}")
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError("api_keys: every key needs a name")
    where = f"api_keys.{entry['name']}"
    if not entry.get("key") and not entry.get("key_sha256"):
        raise ConfigError(f"{where}: give key or key_sha256")
    values = dict(entry)
    # Types are checked strictly: a quoted "false" must not grant a scope.
    for name in ("key", "key_sha256"):
        if name in values and not isinstance(values[name], str):
            raise ConfigError(f"{where}.{name}: expected a string")
    if "key_sha256" in values:
        digest = values["key_sha256"].strip().lower()
        if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise ConfigError(f"{where}.key_sha256: expected 64 hex digits")
        values["key_sha256"] = digest
    for name in ("targets", "room_prefixes"):
        if name in values:
            raw = values[name]
            if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
                raise ConfigError(f"{where}.{name}: expected a list of strings")
            values[name] = tuple(raw)
    for name in ("high_priority", "guaranteed"):
        if name in values and not isinstance(values[name], bool):
            raise ConfigError(f"{where}.{name}: expected true or false")
    for name in ("rate", "burst"):
        if name in values:
            raw = values[name]
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                raise ConfigError(f"{where}.{name}: expected a number >= 0")
            values[name] = float(raw)
    if "max_ttl_s" in values:
        raw = values["max_ttl_s"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ConfigError(f"{where}.max_ttl_s: expected a whole number of seconds >= 0")
    bad = set(values.get("targets", ())) - set(TARGET_KINDS)
    if bad:
        raise ConfigError(f"{where}.targets: unknown {sorted(bad)}")
    return ApiKeyConfig(**values)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read ``config_file`` (TOML), then ``LONGLINK_*`` from ``environ``, then ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    if config_file:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{config_file}: {exc}") from exc
        for key, raw in data.items():
            if key == "api_keys":
                if not isinstance(raw, list):
                    raise ConfigError(f"{config_file}: api_keys must be [[api_keys]] tables")
                values["api_keys"] = keys = tuple(_api_key(entry) for entry in raw)
                names = [k.name for k in keys]
                twice = sorted({n for n in names if names.count(n) > 1})
                if twice:
                    # Names label the metrics and carry rate buckets across a reload.
                    raise ConfigError(f"api_keys: names must be unique; repeated {twice}")
            elif key in fields:
                values[key] = _coerce(key, raw, fields[key].type)
            else:
                raise ConfigError(f"{config_file}: unknown setting {key!r}")
    for name, var in ENV_NAMES.items():
        if var in env:
            values[name] = _coerce(var, env[var], fields[name].type)
    values.update(overrides)
    settings = Settings(**values)
    for name in ("history_size", "history_ttl_s", "history_max_bytes"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{ENV_NAMES[name]}: must be >= 0 (0 turns room history off)")
    if not 1 <= settings.write_join <= 1024:
        raise ConfigError(f"{ENV_NAMES['write_join']}: must be 1..1024 (1: one write per message)")
    if not 0 <= settings.queue_shards <= 256:
        raise ConfigError(f"{ENV_NAMES['queue_shards']}: give 0 (automatic) to 256")
    if settings.store_wait_replicas < -1:
        raise ConfigError(f"{ENV_NAMES['store_wait_replicas']}: give -1 (automatic) or more")
    bad_roles = set(settings.roles) - set(ROLES)
    if bad_roles:
        raise ConfigError(f"unknown roles {sorted(bad_roles)}; choose from {', '.join(ROLES)}")
    _check_logging(settings)
    return settings


def _check_logging(settings: Settings) -> None:
    if settings.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level {settings.log_level!r}: choose from {', '.join(LOG_LEVELS)}")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(
            f"log_format {settings.log_format!r}: choose from {', '.join(LOG_FORMATS)}"
        )
    if not 0.0 <= settings.access_log_sample <= 1.0:
        raise ConfigError(f"access_log_sample {settings.access_log_sample}: give 0 to 1")
