"""Who the client is, by address: trusted proxies and per-address rates (docs/security.md).

Behind a load balancer every connection comes from the balancer; the
client's own address is in ``X-Forwarded-For``, which only a *trusted*
proxy may be believed on (anyone can send the header).
:meth:`ProxyRule.client_ip` walks the header from the right, skipping
trusted proxies, and stops at the first address that is not one: that is
the client (RFC 7239 §7.4, the usual rule).

:class:`AddressRate` is a per-address GCRA limit (one float per address,
as :class:`~longlink.protocol.limits.RateLimit`), with a bounded table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from longlink.protocol.limits import RateLimit, Verdict

__all__ = ["AddressRate", "ProxyRule"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyRule:
    """The trusted proxies (addresses or CIDRs); raises ValueError on a bad entry."""

    __slots__ = ("_networks",)

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        networks: list[Network] = []
        for entry in trusted:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: {entry!r} is not an address or CIDR") from exc
        self._networks = tuple(networks)

    def trusted(self, ip: str) -> bool:
        """Whether ``ip`` is a trusted proxy."""
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: ``peer``, or from ``X-Forwarded-For`` when ``peer`` is trusted."""
        if peer is None or forwarded_for is None or not self.trusted(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not hop:
                continue
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage: stop at the last address we could believe
            client = hop
            if not self.trusted(hop):
                break
        return client


class AddressRate:
    """``rate`` calls per second per address, bursts of ``burst``; at most ``max_addresses``
    tracked (when full, addresses whose debt is paid are forgotten first)."""

    __slots__ = ("_limit", "_max", "_tats")

    def __init__(self, rate: float, burst: int, max_addresses: int = 100_000) -> None:
        self._limit = RateLimit(rate, burst)
        self._max = max_addresses
        self._tats: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self._limit.rate > 0

    def allow(self, ip: str, now: float) -> bool:
        """Charge one call of ``ip`` at ``now`` (monotonic seconds): allowed or not."""
        if not self.enabled:
            return True
        tats = self._tats
        if len(tats) >= self._max and ip not in tats:
            for key in [k for k, tat in tats.items() if tat <= now]:
                del tats[key]
            if len(tats) >= self._max:
                return False  # a flood from more addresses than the table holds
        tat, verdict = self._limit.take(tats.get(ip, 0.0), now)
        if verdict == Verdict.ALLOW:
            tats[ip] = tat
            return True
        return False
