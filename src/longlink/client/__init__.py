"""The asyncio Python SDK for longlink end-user clients.

::

    from longlink.client import Client

    async with Client("http://127.0.0.1:8080", user="u1", rooms=["lobby"]) as client:
        online = await client.join("chat-1")
        async for message in client:          # deduplicated, guaranteed ones auto-acked
            print(message.msg_id, message.json())

:class:`Client` owns the connection (``/v1/connect``, AUTH, heartbeats,
reconnects); :class:`RawConnection` is a rule-free connection for tests. All
framing is :mod:`longlink.protocol`'s, shared with the server.
"""

from longlink.client.backoff import Backoff
from longlink.client.connection import Client
from longlink.client.control import Endpoint, Grant
from longlink.client.errors import (
    AuthError,
    ClientError,
    ConnectFailed,
    ConnectionClosed,
    ControlError,
    ServerError,
)
from longlink.client.messages import (
    ClientEvent,
    Disconnected,
    ErrorEvent,
    Kicked,
    Message,
    Reconnected,
    Recovery,
    ServerEvent,
    unpack_pushes,
)
from longlink.client.raw import RawConnection
from longlink.protocol.client import RecentIds
from longlink.protocol.messages import AuthOk

__all__ = [
    "AuthError",
    "AuthOk",
    "Backoff",
    "Client",
    "ClientError",
    "ClientEvent",
    "ConnectFailed",
    "ConnectionClosed",
    "ControlError",
    "Disconnected",
    "Endpoint",
    "ErrorEvent",
    "Grant",
    "Kicked",
    "Message",
    "RawConnection",
    "RecentIds",
    "Reconnected",
    "Recovery",
    "ServerError",
    "ServerEvent",
    "unpack_pushes",
]
