"""What the registry suites share: reporting nodes, making sessions."""

from __future__ import annotations

from longlink.logic.base import NodeDirectory, NodeInfo, SessionInfo


async def report(nodes: NodeDirectory, *names: str) -> None:
    """Report ``names`` as live gateway nodes (a shared registry counts live nodes only)."""
    for name in names:
        await nodes.report_node(
            NodeInfo(node=name, region="r", ws=f"ws://{name}/ws", tcp=f"{name}:1")
        )


def session(conn: str, node: str, user: str, device: str, rooms: list[str]) -> SessionInfo:
    return SessionInfo(conn_id=conn, node=node, user=user, device=device, rooms=list(rooms))
