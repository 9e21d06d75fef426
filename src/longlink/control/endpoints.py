"""Which gateway nodes a client is sent to (PROTOCOL.md §2.1).

Pure policy, no I/O: the caller passes the registry's node reports and the
current time. A node is healthy when it reported within ``stale_ms`` (so a
node that stops reporting is left out within 5 s by default), is not
draining, and offers a transport the client asked for. Healthy nodes are
ordered best first (PROTOCOL.md §1.6 rule 3):

1. same region as the client;
2. measured quality: a node whose clients' round trips (p90 over the last
   minute, from REPORTs, else the kernel's TCP_INFO samples) exceed
   ``bad_rtt_ms`` goes after the others — within a minute of its clients
   suffering, and back as soon as the minute's figures recover;
3. price: nodes below their full mark (``NodeInfo.full``, a CPU load) by
   ``cost``, cheapest first; full nodes after them;
4. fewest connections, then lowest load (the node id breaks ties, so the
   order is stable).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from longlink.logic.base import NodeInfo
from longlink.logic.quality import QualitySnapshot

__all__ = [
    "DEFAULT_BAD_RTT_MS",
    "DEFAULT_STALE_MS",
    "PREFERENCE",
    "TRANSPORTS",
    "advise_transports",
    "choose_endpoints",
    "node_healthy",
    "node_quality",
]

#: A node whose last report is older than this is not offered (PROTOCOL.md §2.1).
DEFAULT_STALE_MS = 5000
#: Transports a client may ask for, in the order they appear in an endpoint.
TRANSPORTS = ("ws", "tcp", "stream")
#: Control's default advice, best first (PROTOCOL.md §1.5): WebSocket, then the HTTP
#: stream (same port, any HTTP path through proxies), then raw TCP.
PREFERENCE = ("ws", "stream", "tcp")
#: Round trips (p90, ms) past which a node counts as suffering.
DEFAULT_BAD_RTT_MS = 300
#: Samples a window needs before its p90 is trusted.
MIN_SAMPLES = 5


def node_healthy(node: NodeInfo, now_ms: int, stale_ms: int = DEFAULT_STALE_MS) -> bool:
    """True when ``node`` reported within ``stale_ms`` of ``now_ms`` and is not draining."""
    return not node.draining and now_ms - node.reported_ms <= stale_ms


def node_quality(node: NodeInfo) -> QualitySnapshot:
    """The node's quality window, all transports merged."""
    total = QualitySnapshot()
    for snapshot in node.quality.values():
        total = total.merge(snapshot)
    return total


def _suffering(node: NodeInfo, bad_rtt_ms: int) -> bool:
    quality = node_quality(node)
    if sum(quality.rtt) + sum(quality.kernel_rtt) < MIN_SAMPLES:
        return False  # too little measured to judge
    p90 = quality.rtt_ms(0.9)
    return p90 is not None and p90 > bad_rtt_ms


def _offered(node: NodeInfo, wanted: Iterable[str]) -> dict[str, str]:
    addresses = {"ws": node.ws, "tcp": node.tcp, "stream": node.stream}
    return {t: address for t in wanted if (address := addresses.get(t))}


def choose_endpoints(
    nodes: list[NodeInfo],
    *,
    region: str | None,
    now_ms: int,
    transports: list[str] | None,
    limit: int = 3,
    stale_ms: int = DEFAULT_STALE_MS,
    bad_rtt_ms: int = DEFAULT_BAD_RTT_MS,
) -> list[dict[str, Any]]:
    """Up to ``limit`` endpoints, best first, for a client in ``region``.

    ``transports`` is the client's wish (a subset of :data:`TRANSPORTS`; None
    means all). Each endpoint is ``{"node", "region", "ws", "tcp", "stream"}`` where a
    transport the client did not ask for, or the node does not offer, is left
    out. A node whose listeners speak TLS (its ``ws`` URL is ``wss://``) gets
    ``"tls": True``: its TCP port is TLS too (PROTOCOL.md §1.5). An empty list
    means no healthy node can take the client.
    """
    wanted = TRANSPORTS if transports is None else tuple(t for t in TRANSPORTS if t in transports)
    candidates: list[tuple[tuple[object, ...], tuple[str, str], dict[str, Any]]] = []
    for node in nodes:
        if not node_healthy(node, now_ms, stale_ms):
            continue
        offered = _offered(node, wanted)
        if not offered:
            continue
        full = node.load >= node.full
        key = (
            region is not None and node.region != region,
            _suffering(node, bad_rtt_ms),
            full,
            0.0 if full else node.cost,
            node.connections,
            node.load,
            node.node,
        )
        endpoint: dict[str, Any] = {"node": node.node, "region": node.region, **offered}
        if (node.ws or "").startswith("wss://"):
            endpoint["tls"] = True
        candidates.append((key, (node.ws or "", node.tcp or ""), endpoint))
    candidates.sort(key=lambda item: item[0])
    chosen: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _, addresses, endpoint in candidates:
        # Gateways sharing their ports (reuse_port) are one address: list it once, the best.
        if addresses not in seen:
            seen.add(addresses)
            chosen.append(endpoint)
    return chosen[: max(limit, 0)]


def advise_transports(
    endpoints: list[dict[str, Any]], wanted: list[str] | None, failed: Iterable[str] = ()
) -> list[str]:
    """The transports a client should try, best first (PROTOCOL.md §1.5).

    The client's own order (``wanted``; None: :data:`PREFERENCE`), limited to
    what the chosen ``endpoints`` offer, with the transports that ``failed``
    the client moved last: a client that reports WebSocket failures is told
    to use the HTTP stream first.
    """
    order = [t for t in (wanted if wanted is not None else PREFERENCE) if t in TRANSPORTS]
    offered = [t for t in dict.fromkeys(order) if any(t in e for e in endpoints)]
    bad = set(failed)
    return [t for t in offered if t not in bad] + [t for t in offered if t in bad]
