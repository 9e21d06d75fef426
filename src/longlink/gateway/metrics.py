"""Prometheus collectors of the access layer shared by its parts (names in docs/dispatch.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    """Connections, ERROR frames and the outbox policy's counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connections = Gauge(
            "longlink_connections", "Open client connections", ["transport"], registry=registry
        )
        self.accepted = Counter(
            "longlink_connections_accepted",
            "Connections accepted",
            ["transport"],
            registry=registry,
        )
        self.refused = Counter(
            "longlink_connections_refused",
            "Connections closed on arrival, by transport and reason (per_ip: over the"
            " address's share, max_conns_per_ip)",
            ["transport", "reason"],
            registry=registry,
        )
        self.errors = Counter(
            "longlink_protocol_errors", "ERROR frames sent", ["code"], registry=registry
        )
        self.pushes_written = Counter(
            "longlink_push_writes", "PUSH frames written to connections", registry=registry
        )
        self.slow_drops = Counter(
            "longlink_slow_client_drops",
            "Pushes dropped because a client's write buffer was full",
            ["priority"],
            registry=registry,
        )
        self.slow_closes = Counter(
            "longlink_slow_client_closes",
            "Connections closed with server_busy: over the hard write-buffer limit",
            registry=registry,
        )
        self.stream_posts = Counter(
            "longlink_stream_posts",
            "POST /v1/stream/{conn_id} answered, by status (204: frames handed to the session,"
            " here or on the process that owns it)",
            ["status"],
            registry=registry,
        )
        self.heartbeats = Counter(
            "longlink_heartbeats", "HEARTBEAT frames answered", registry=registry
        )
        self.reports = Counter(
            "longlink_quality_reports",
            "REPORT frames received, by outcome (accepted, dropped: malformed or too big)",
            ["outcome"],
            registry=registry,
        )
