"""Logic layer: session registry, presence (online counts) and node registry."""

from longlink.logic.base import NodeInfo, Online, SessionInfo, SessionRegistry

__all__ = ["NodeInfo", "Online", "SessionInfo", "SessionRegistry"]
