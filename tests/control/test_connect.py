"""The connect flow without HTTP: identity, endpoints, token; each refusal with its code."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from longlink.control.connect import (
    ConnectDenied,
    ConnectInvalid,
    Connector,
    ConnectRequest,
    Endpoint,
    NoNodes,
)
from longlink.control.tickets import TicketVerifier
from longlink.control.tokens import TokenIssuer
from longlink.logic.base import NodeInfo
from longlink.logic.memory import MemoryRegistry

TICKETS = "ticket-secret-" + "t" * 32
TOKENS = "token-secret-" + "k" * 32
NOW = 1_790_000_000.0


def node(name: str, *, region: str = "eu", reported: float = NOW, **changes: Any) -> NodeInfo:
    values: dict[str, Any] = {"ws": f"ws://{name}:7000/ws", "tcp": f"{name}:7001"}
    values.update(changes)
    return NodeInfo(name, region, reported_ms=int(reported * 1000), **values)


async def connector(
    *nodes: NodeInfo, demo: bool = True, tickets: bool = True, heartbeat_s: int = 30
) -> Connector:
    registry = MemoryRegistry()
    for info in nodes:
        await registry.report_node(info)
    return Connector(
        nodes=registry,
        tokens=TokenIssuer(TOKENS, 600),
        tickets=TicketVerifier(TICKETS) if tickets else None,
        demo=demo,
        heartbeat_s=heartbeat_s,
        clock=lambda: NOW,
    )


def ticket(**claims: Any) -> str:
    claims.setdefault("exp", int(time.time()) + 60)
    return jwt.encode(claims, TICKETS, algorithm="HS256")


async def test_demo_user_gets_a_token_and_the_best_endpoints_first() -> None:
    c = await connector(node("g1", connections=5), node("g2", connections=1), heartbeat_s=7)
    connected = await c.connect(ConnectRequest(user="alice", device="phone"))
    assert connected.heartbeat_s == 7
    assert [e.node for e in connected.endpoints] == ["g2", "g1"]
    claims = c.tokens.verify(connected.token)
    assert (claims.user, claims.device) == ("alice", "phone")
    assert claims.expires_at == connected.expires_at


async def test_a_ticket_names_the_user_and_wins_over_a_demo_user() -> None:
    c = await connector(node("g1"))
    connected = await c.connect(ConnectRequest(ticket=ticket(sub="bob"), user="mallory"))
    claims = c.tokens.verify(connected.token)
    assert claims.user == "bob" and claims.device.startswith("dev-")


async def test_transports_and_region_shape_the_endpoints() -> None:
    c = await connector(node("g1", region="us"), node("g2", region="eu", ws=None))
    connected = await c.connect(ConnectRequest(user="a", region="eu", transports=("tcp",)))
    assert connected.endpoints == [
        Endpoint(node="g2", region="eu", tcp="g2:7001"),
        Endpoint(node="g1", region="us", tcp="g1:7001"),
    ]
    connected = await c.connect(ConnectRequest(user="a", transports=("ws",)))
    assert [e.node for e in connected.endpoints] == ["g1"]


@pytest.mark.parametrize(
    ("request_", "demo", "tickets", "error", "code", "words"),
    [
        (ConnectRequest(), True, True, ConnectInvalid, "bad_request", "or, in demo mode, a user"),
        (ConnectRequest(), False, True, ConnectInvalid, "bad_request", "give a ticket"),
        (ConnectRequest(user="a"), False, True, ConnectInvalid, "bad_request", "demo mode is off"),
        (ConnectRequest(ticket="x.y.z"), True, True, ConnectDenied, "bad_ticket", "invalid"),
        (ConnectRequest(ticket="x"), True, False, ConnectDenied, "bad_ticket", "no ticket secret"),
    ],
)
async def test_refusals_carry_their_code(
    request_: ConnectRequest, demo: bool, tickets: bool, error: type, code: str, words: str
) -> None:
    c = await connector(node("g1"), demo=demo, tickets=tickets)
    with pytest.raises(error) as caught:
        await c.connect(request_)
    assert caught.value.code == code and words in caught.value.message


async def test_an_expired_ticket() -> None:
    c = await connector(node("g1"))
    with pytest.raises(ConnectDenied) as caught:
        await c.connect(ConnectRequest(ticket=ticket(sub="a", exp=int(time.time()) - 60)))
    assert caught.value.code == "ticket_expired"


async def test_no_healthy_node() -> None:
    stale = node("g1", reported=NOW - 60)
    draining = node("g2", draining=True)
    for nodes in ([], [stale, draining], [node("g3", ws=None, tcp=None)]):
        c = await connector(*nodes)
        with pytest.raises(NoNodes) as caught:
            await c.connect(ConnectRequest(user="a"))
        assert caught.value.code == "no_nodes"
