"""Logic layer: sessions, room directory and nodes (the registry seams), presence."""

from longlink.logic.base import (
    NodeDirectory,
    NodeInfo,
    NodeSweep,
    Online,
    Registry,
    RoomDirectory,
    SessionInfo,
    Sessions,
)

__all__ = [
    "NodeDirectory",
    "NodeInfo",
    "NodeSweep",
    "Online",
    "Registry",
    "RoomDirectory",
    "SessionInfo",
    "Sessions",
]
