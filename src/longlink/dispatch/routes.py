"""Dispatch's batched I/O: many targets resolved at once, many nodes written at once.

A distributed backend pays per command and per round trip (redis-py spends
about 50 µs of CPU on a command sent on its own), so dispatch asks for a
whole step at once where the backend can:

* :func:`nodes_for_many`: the nodes of every target of a list, through the
  registry's ``nodes_for_many`` when it has one (the Redis registry: one
  script call for all the users), else ``nodes_for`` per target (the
  embedded one, where a call costs nothing).
* :func:`send_per_node`: every node's envelopes, through the channel's
  ``send_many`` when it has one (the Redis channel: one pipelined round trip,
  one stream entry per node), else ``send`` per node.

Both give what the one-at-a-time calls would give: same nodes, same order
per node, nothing cached between calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from longlink.bus.base import NodeChannel
from longlink.logic.base import SessionRegistry
from longlink.model import Envelope, Target


@runtime_checkable
class ManyTargets(Protocol):
    """A registry that resolves a list of targets in one go."""

    async def nodes_for_many(self, targets: Sequence[Target]) -> list[set[str]]:
        """``nodes_for`` of each target, in order."""
        ...


@runtime_checkable
class ManyNodes(Protocol):
    """A node channel that writes to several nodes in one go."""

    async def send_many(self, batches: Mapping[str, Sequence[Envelope]]) -> None:
        """``send`` of each node's envelopes (order kept per node)."""
        ...


async def nodes_for_many(registry: SessionRegistry, targets: Sequence[Target]) -> list[set[str]]:
    """The nodes each of ``targets`` reaches, in order (one round trip where possible)."""
    if isinstance(registry, ManyTargets):
        return await registry.nodes_for_many(targets)
    return [await registry.nodes_for(target) for target in targets]


async def send_per_node(channel: NodeChannel, batches: Mapping[str, Sequence[Envelope]]) -> None:
    """Hand each node its envelopes, in order (one round trip where possible)."""
    if not batches:
        return
    if isinstance(channel, ManyNodes):
        await channel.send_many(batches)
        return
    for node, envelopes in batches.items():
        await channel.send(node, envelopes)
