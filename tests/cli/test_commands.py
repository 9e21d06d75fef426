"""Each command of the CLI against a real node: its output, its --json and its exit codes."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import jwt

from longlink.client import Client
from longlink.control.tickets import TicketVerifier
from longlink.node import Node
from longlink.settings import ApiKeyConfig
from tests.cli.conftest import (
    TICKET_SECRET,
    connected,
    run_cli,
    start_cli,
    stopped,
)
from tests.conftest import WAIT, eventually, node_settings

DOWN = "http://127.0.0.1:9"  # the discard port: nothing listens there


# ---------------------------------------------------------------- push


async def test_push_prints_the_message_id(node: Node) -> None:
    async with Client(node.http_url, user="alice", rooms=["lobby"]) as alice:
        run = await run_cli("push", "--room", "lobby", '{"text": "hi"}', url=node.http_url)
        assert run.code == 0, run.err
        message = await alice.next_message(timeout=WAIT)
        assert (str(message.msg_id), message.json()) == (run.out.strip(), {"text": "hi"})
        run = await run_cli(
            "push", "--user", "alice", "--raw", "bytes", "--json", url=node.http_url
        )
        assert run.code == 0 and int(run.json()["msg_id"]) > 0
        assert (await alice.next_message(timeout=WAIT)).data == b"bytes"


async def test_push_failures_have_exit_codes(node: Node, tmp_path: Path) -> None:
    url = node.http_url
    down = await run_cli("push", "--all", "1", url=DOWN)
    assert down.code == 3 and down.err.startswith("longlink: cannot reach http://127.0.0.1:9")
    assert down.err.count("\n") == 1  # one line, no traceback
    wrong = await run_cli("push", "--all", "1", "--key", "wrong", "--json", url=url)
    assert wrong.code == 4 and wrong.error()["code"] == "unauthorized"
    nokey = await run_cli("push", "--all", "1", url=url, LONGLINK_API_KEY="")
    assert nokey.code == 4 and "LONGLINK_API_KEY" in nokey.err
    invalid = await run_cli("push", "--user", "u" * 200, "1", url=url)
    assert invalid.code == 6 and "bad_request" in invalid.err
    usage = await run_cli("push", "1", url=url)
    assert usage.code == 2

    scoped = node_settings(
        tmp_path / "scoped",
        api_key=None,
        api_keys=(ApiKeyConfig("users-only", key="users-only-key", targets=("users",)),),
        roles=("api", "control"),
        queue_size=1,
        overload_depth=1,
    )
    async with Node(scoped) as other:
        key = ("--key", "users-only-key")
        forbidden = await run_cli("push", "--room", "r", "1", *key, url=other.http_url)
        assert forbidden.code == 5 and "scopes" in forbidden.err
        first = await run_cli("push", "--user", "u", "1", *key, url=other.http_url)
        assert first.code == 0, first.err
        busy = await run_cli("push", "--user", "u", "2", *key, "--json", url=other.http_url)
        assert busy.code == 8 and busy.error()["code"] == "overloaded"


# ---------------------------------------------------------------- listen


async def test_listen_prints_messages_and_stops_after_count(node: Node) -> None:
    proc = await start_cli(
        "listen", "--user", "bob", "--room", "lobby", "--count", "2", "--json", url=node.http_url
    )
    line = await connected(proc)
    assert '"status": "connected"' in line and '"user": "bob"' in line
    room = await run_cli("push", "--room", "lobby", '{"n": 1}', url=node.http_url)
    user = await run_cli("push", "--user", "bob", "plain text", url=node.http_url)
    run = await stopped(proc)
    assert run.code == 0, run.err
    first, second = (line for line in run.out.splitlines())
    assert first == f'{{"msg_id": "{room.out.strip()}", "room": "lobby", "data": {{"n": 1}}}}'
    assert second == f'{{"msg_id": "{user.out.strip()}", "room": null, "data": "plain text"}}'


async def test_listen_text_output_tags_the_room(node: Node) -> None:
    proc = await start_cli(
        "listen", "--user", "carol", "--room", "news", "--count", "1", url=node.http_url
    )
    await connected(proc)
    pushed = await run_cli("push", "--room", "news", '{"x": 1}', url=node.http_url)
    run = await stopped(proc)
    assert run.out == f'{pushed.out.strip()} [news] {{"x": 1}}\n'


async def test_listen_with_a_signed_ticket(node: Node) -> None:
    ticket = await run_cli("ticket", "dave", "--device", "d1", LONGLINK_TICKET_SECRET=TICKET_SECRET)
    assert ticket.code == 0
    proc = await start_cli(
        "listen", "--ticket", ticket.out.strip(), "--count", "1", url=node.http_url
    )
    line = await connected(proc)
    assert "user=dave" in line
    await run_cli("push", "--device", "d1", "1", url=node.http_url)
    assert (await stopped(proc)).code == 0


async def test_listen_failures_have_exit_codes(node: Node) -> None:
    url = node.http_url
    down = await run_cli("listen", "--user", "x", "--no-reconnect", url=DOWN)
    assert down.code == 3 and down.err.count("\n") == 1, down.err
    assert "cannot reach http://127.0.0.1:9 (connection refused)" in down.err
    bad = await run_cli("listen", "--ticket", "not-a-ticket", url=url)
    assert bad.code == 4 and "longlink ticket USER" in bad.err
    rooms = [arg for i in range(9) for arg in ("--room", f"r{i}")]
    limit = await run_cli("listen", "--user", "x", *rooms, "--json", url=url)
    assert limit.code == 9 and limit.error()["code"] == "room_limit"
    usage = await run_cli("listen", url=url)
    assert usage.code == 2


async def test_listen_retries_a_server_that_is_down(node: Node) -> None:
    proc = await start_cli("listen", "--user", "x", url=DOWN)
    assert proc.stderr is not None
    for _ in range(2):  # one line per attempt, then it goes on trying
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT * 3)
        assert re.search(rb"cannot reach .*; retrying in \d+\.\d s$", line.strip()), line
    proc.terminate()
    await stopped(proc)


async def test_listen_exits_when_kicked(node: Node) -> None:
    proc = await start_cli("listen", "--user", "erin", url=node.http_url)
    await connected(proc)
    kicked = await run_cli("kick", "erin", "--reason", "banned", url=node.http_url)
    assert kicked.out == "kicked 1 connection of erin\n"
    run = await stopped(proc)
    assert run.code == 10 and run.err.endswith("longlink: kicked by the server: banned\n")


async def test_listen_no_reconnect_exits_when_the_server_goes(tmp_path: Path) -> None:
    async with Node(node_settings(tmp_path, drain_timeout_s=0.5)) as going:
        proc = await start_cli("listen", "--user", "frank", "--no-reconnect", url=going.http_url)
        await connected(proc)
    run = await stopped(proc)
    assert run.code == 11, run.err
    assert run.err.splitlines()[-1].startswith("longlink: ")


# ---------------------------------------------------------------- online, trace, kick


async def test_online_in_total_and_in_a_room(node: Node) -> None:
    async with Client(node.http_url, user="gina", rooms=["lobby", "news"]):
        await eventually(lambda: _counted(node), what="the online count")
        total = await run_cli("online", url=node.http_url)
        assert total.code == 0, total.err
        assert total.out.splitlines()[0] == "1 online"
        assert re.search(r"^lobby\s+1\s*$", total.out, re.MULTILINE), total.out
        room = await run_cli("online", "lobby", url=node.http_url)
        assert room.out == "lobby: 1 online\n"
        answer = (await run_cli("online", "--json", url=node.http_url)).json()
        assert answer["total"] == 1 and answer["rooms"] == {"lobby": 1, "news": 1}
    wrong = await run_cli("online", "--key", "nope", url=node.http_url)
    assert wrong.code == 4


async def _counted(node: Node) -> bool:
    return (await node.registry.online()).total == 1


async def test_trace_is_a_timeline(node: Node) -> None:
    async with Client(node.http_url, user="hank") as hank:
        pushed = await run_cli("push", "--user", "hank", "--guaranteed", "1", url=node.http_url)
        msg_id = pushed.out.strip()
        await hank.next_message(timeout=WAIT)

        async def acked() -> bool:
            trace = await node.trace_view.trace(int(msg_id))
            return trace is not None and any(e.event == "acked" for e in trace.events)

        await eventually(acked, what="the ack in the trace")
    run = await run_cli("trace", msg_id, url=node.http_url)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"message {msg_id}"
    events = [line.split()[2] for line in lines[2:]]
    assert events[0] == "accepted" and "written" in events and events[-1] == "acked"
    assert re.search(r"\+\d+\s+accepted\s+target=users priority=low guaranteed=yes", run.out)
    as_json = (await run_cli("trace", msg_id, "--json", url=node.http_url)).json()
    assert as_json["msg_id"] == msg_id and as_json["events"][0]["event"] == "accepted"
    missing = await run_cli("trace", "12345", url=node.http_url)
    assert missing.code == 7 and "no trace of message 12345" in missing.err


async def test_kick_counts_and_json(node: Node) -> None:
    run = await run_cli("kick", "nobody", "--json", url=node.http_url)
    assert run.code == 0 and run.json() == {"user": "nobody", "kicked": 0}


# ---------------------------------------------------------------- nodes, drain


async def test_nodes_and_drain(node: Node) -> None:
    g1 = node.settings.node_id
    listed = await run_cli("nodes", url=node.http_url)
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split()[:4] == ["node", "region", "state", "connections"]
    assert row.split()[:3] == [g1, "local", "up"]
    proc = await start_cli("listen", "--user", "ivan", "--no-reconnect", url=node.http_url)
    await connected(proc)
    drained = await run_cli("drain", g1, url=node.http_url)
    assert drained.code == 0 and drained.out.startswith(f"{g1} is draining")
    run = await stopped(proc)  # its client was asked to move: without reconnects, it stops
    assert run.code == 11 and "draining" in run.err
    nodes = (await run_cli("nodes", "--json", url=node.http_url)).json()["nodes"]
    assert nodes[0]["draining"] is True
    undone = await run_cli("drain", g1, "--undo", "--json", url=node.http_url)
    assert undone.json() == {"node": g1, "draining": False}
    unknown = await run_cli("drain", "no-such-node", url=node.http_url)
    assert unknown.code == 7


# ---------------------------------------------------------------- ticket, hash-key, check-config


async def test_ticket_is_signed_with_the_secret(tmp_path: Path) -> None:
    run = await run_cli(
        "ticket", "alice", "--device", "phone", "--ttl", "60", LONGLINK_TICKET_SECRET=TICKET_SECRET
    )
    assert run.code == 0
    assert TicketVerifier(TICKET_SECRET).verify(run.out.strip()) == ("alice", "phone")
    raw = jwt.decode(run.out.strip(), TICKET_SECRET, algorithms=["HS256"])
    assert raw["exp"] - raw["iat"] == 60
    config = tmp_path / "c.toml"
    config.write_text(f'ticket_secret = "{TICKET_SECRET}"\n')
    from_file = await run_cli("ticket", "bob", "--config", str(config), "--json")
    assert from_file.json()["user"] == "bob"
    assert TicketVerifier(TICKET_SECRET).verify(from_file.json()["ticket"])[0] == "bob"
    none = await run_cli("ticket", "alice")
    assert none.code == 4 and "LONGLINK_TICKET_SECRET" in none.err


async def test_hash_key_matches_the_server(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"my-key").hexdigest()
    piped = await run_cli("hash-key", stdin=b"my-key\n")
    assert piped.out == f'key_sha256 = "{digest}"\n'
    given = await run_cli("hash-key", "my-key", "--json")
    assert given.json() == {"key_sha256": digest}
    made = await run_cli("hash-key", "--generate", "--json")
    key, made_digest = made.json()["key"], made.json()["key_sha256"]
    assert len(key) >= 40 and hashlib.sha256(key.encode()).hexdigest() == made_digest
    empty = await run_cli("hash-key", stdin=b"\n")
    assert empty.code == 2
    # The hash works as a key of a real server.
    settings = node_settings(
        tmp_path, api_key=None, api_keys=(ApiKeyConfig("hashed", key_sha256=made_digest),)
    )
    async with Node(settings) as hashed:
        run = await run_cli("online", "--key", key, url=hashed.http_url)
        assert run.code == 0, run.err


async def test_check_config_prints_settings_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "longlink.toml"
    config.write_text(
        'host = "0.0.0.0"\n'
        'ticket_secret = "ticket-secret-value-0123456789abcdef"\n'
        'webhook_url = "http://127.0.0.1:9000/hook"\n'
        "[[api_keys]]\n"
        'name = "orders"\n'
        'key = "plain-key-value-0123"\n'
        'targets = ["users"]\n'
    )
    run = await run_cli("check-config", str(config), LONGLINK_HEARTBEAT_S="20")
    assert run.code == 0, run.err
    assert run.out.startswith(f"{config}: valid\n")
    assert "ticket-secret-value" not in run.out and "plain-key-value" not in run.out
    assert re.search(r"^ticket_secret\s+\*+\s+file\s*$", run.out, re.MULTILINE)
    assert re.search(r"^heartbeat_s\s+20\s+env LONGLINK_HEARTBEAT_S\s*$", run.out, re.MULTILINE)
    assert re.search(r"^token_secret\s+\(random per start\)\s+default", run.out, re.MULTILINE)
    assert re.search(r"^orders\s+\*+\s+users", run.out, re.MULTILINE)
    assert "webhook_url without webhook_secret" in run.err
    as_json = (await run_cli("check-config", str(config), "--json", "--no-env")).json()
    assert as_json["valid"] is True and as_json["settings"]["heartbeat_s"] == 30
    assert as_json["settings"]["ticket_secret"] == "********"
    assert as_json["api_keys"][0]["key"] == "********"
    assert as_json["sources"]["host"] == "file"


async def test_check_config_refuses_a_bad_file(tmp_path: Path) -> None:
    cases: dict[str, Any] = {
        "no_such_setting = 1\n": "unknown setting 'no_such_setting'",
        "heartbeat_s = 'soon'\n": "heartbeat_s",
        "default_ttl_s = 0\n": "default_ttl_s",
        "log_format = 'xml'\n": "log_format",
        "[[api_keys]]\nname = 'k'\n": "give key or key_sha256",
        "not toml at all": "bad.toml",
    }
    for text, said in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        run = await run_cli("check-config", str(bad))
        assert run.code == 12, (text, run.err)
        assert run.err.startswith("longlink: invalid configuration: ") and said in run.err
        assert run.err.count("\n") == 1
    missing = await run_cli("check-config", str(tmp_path / "missing.toml"))
    assert missing.code == 12
