"""Message-id node numbers leased to the processes that mint ids (docs/message-ids.md).

:class:`~longlink.idlease.base.NodeNumbers` is the seam (embedded:
:class:`~longlink.idlease.memory.MemoryNumbers`; shared:
:class:`~longlink.idlease.redis.RedisNumbers`);
:class:`~longlink.idlease.keeper.IdLease` keeps one number for a
:class:`~longlink.model.MsgIdGenerator` while the process lives.
"""

from longlink.idlease.base import Grant, NodeNumbers
from longlink.idlease.keeper import IdLease

__all__ = ["Grant", "IdLease", "NodeNumbers"]
