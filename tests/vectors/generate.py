"""Writes ``frames.json``: the frame test vectors shared by the Python and JavaScript tests.

Run ``.venv/bin/python tests/vectors/generate.py`` after changing a vector;
commit the JSON (the tests read the file, never this script). The bytes are
packed here with ``struct``, ``zlib`` and ``brotli`` straight from the table of
PROTOCOL.md §1.1, independently of ``longlink.protocol``, so the vectors check
the codecs instead of repeating them. The file format is described in its
``about`` field.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import brotli

OUT = Path(__file__).with_name("frames.json")

# ops and flags of PROTOCOL.md §1.2 / §1.1
AUTH, AUTH_OK, HEARTBEAT, HEARTBEAT_OK, PUSH, ACK, JOIN, JOIN_OK = 1, 2, 3, 4, 5, 6, 7, 8
LEAVE, LEAVE_OK, UPSTREAM, UPSTREAM_OK, EVENT, ERROR, KICK, ROOM = 9, 10, 11, 12, 13, 14, 15, 16
ACK_REQUIRED, BATCH, HIGH_PRIORITY = 1, 2, 4
NONE, ZLIB, BROTLI = 0, 1, 2

MAX_FRAME = 64 * 1024  # the client-frame limit of §1.1, used for every vector
MAX_INFLATE = 64 * 1024  # the bound on a decoded body, used for every vector

BIG_ID = 7_290_134_325_755_904_001  # > 2**53: a float would round it
MAX_U64 = 2**64 - 1
MAX_U32 = 2**32 - 1

ABOUT = (
    "Frame test vectors of the long connection (PROTOCOL.md §1.1-1.4; docs/protocol.md), read "
    "by tests/protocol/test_vectors.py and tests/js/vectors.test.mjs; written by "
    "tests/vectors/generate.py. Each 'valid' vector is one whole frame ('hex', as one "
    "WebSocket message) with its 'header' (msg_id as a decimal string), its wire 'body_hex', "
    "its 'payload_hex' (the body decoded by its codec; 'json' when that is JSON), for a BATCH "
    "its 'inner' frames, and for a PUSH the 'messages' an SDK delivers ('room': the name in "
    "the leading ROOM frame, room or area, else null; 'area': true for an area tag). "
    "'needs': 'brotli' marks bodies a client that did not ask for brotli (the JavaScript SDK) "
    "must refuse with bad_frame. Each 'invalid' vector names the 'error' code a decoder "
    "raises and the 'stage': 'frame' (decoding the header and length) or 'body' (decoding "
    "the body: codec, batch). 'limits' apply to every vector: max_frame bytes per frame, "
    "max_inflate bytes per decoded body."
)


def frame(
    op: int,
    body: bytes = b"",
    *,
    flags: int = 0,
    codec: int = NONE,
    seq: int = 0,
    msg_id: int = 0,
    version: int = 1,
    length: int | None = None,
) -> bytes:
    """Pack one frame per the header table of PROTOCOL.md §1.1 (big-endian)."""
    size = 20 + len(body) if length is None else length
    return struct.pack(">IBBBBIQ", size, version, op, flags, codec, seq, msg_id) + body


def js(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def header(
    op: int, body: bytes, *, flags: int = 0, codec: int = NONE, seq: int = 0, msg_id: int = 0
) -> dict[str, Any]:
    return {
        "length": 20 + len(body),
        "version": 1,
        "op": op,
        "flags": flags,
        "codec": codec,
        "seq": seq,
        "msg_id": str(msg_id),
    }


def plain(
    name: str,
    op: int,
    payload: bytes = b"",
    *,
    flags: int = 0,
    seq: int = 0,
    msg_id: int = 0,
    codec: int = NONE,
    doc: str = "",
) -> dict[str, Any]:
    body = encode(codec, payload)
    vector: dict[str, Any] = {
        "name": name,
        "doc": doc,
        "hex": frame(op, body, flags=flags, codec=codec, seq=seq, msg_id=msg_id).hex(),
        "header": header(op, body, flags=flags, codec=codec, seq=seq, msg_id=msg_id),
        "body_hex": body.hex(),
        "payload_hex": payload.hex(),
    }
    parsed = as_json(payload)
    if parsed is not None:
        vector["json"] = parsed
    if op == PUSH:
        vector["messages"] = [message(msg_id, payload, flags, None, area=False)]
    if codec == BROTLI:
        vector["needs"] = "brotli"
    return vector


def batch(
    name: str, inner: list[tuple[int, bytes, int, int]], *, codec: int = NONE, doc: str = ""
) -> dict[str, Any]:
    """A PUSH BATCH of ``inner`` (op, payload, flags, msg_id) frames, each codec 0."""
    payload = b"".join(frame(op, body, flags=flags, msg_id=mid) for op, body, flags, mid in inner)
    body = encode(codec, payload)
    tag: tuple[str, bool] | None = None
    if inner and inner[0][0] == ROOM:
        fields = json.loads(inner[0][1])
        tag = (fields["room"], False) if "room" in fields else (fields["area"], True)
    inner_out = []
    messages = []
    for op, body_in, flags, mid in inner:
        entry: dict[str, Any] = {
            "op": op,
            "flags": flags,
            "codec": NONE,
            "seq": 0,
            "msg_id": str(mid),
            "body_hex": body_in.hex(),
        }
        parsed = as_json(body_in)
        if parsed is not None:
            entry["json"] = parsed
        inner_out.append(entry)
        if op == PUSH:
            room = tag[0] if tag else None
            messages.append(message(mid, body_in, flags, room, area=bool(tag and tag[1])))
    vector: dict[str, Any] = {
        "name": name,
        "doc": doc,
        "hex": frame(PUSH, body, flags=BATCH, codec=codec).hex(),
        "header": header(PUSH, body, flags=BATCH, codec=codec),
        "body_hex": body.hex(),
        "payload_hex": payload.hex(),
        "inner": inner_out,
        "messages": messages,
    }
    if codec == BROTLI:
        vector["needs"] = "brotli"
    return vector


def message(msg_id: int, data: bytes, flags: int, room: str | None, *, area: bool) -> Any:
    return {
        "msg_id": str(msg_id),
        "room": room,
        "area": area,
        "data_hex": data.hex(),
        "guaranteed": bool(flags & ACK_REQUIRED),
        "high_priority": bool(flags & HIGH_PRIORITY),
    }


def encode(codec: int, payload: bytes) -> bytes:
    if codec == ZLIB:
        return zlib.compress(payload, 6)
    if codec == BROTLI:
        out: bytes = brotli.compress(payload, quality=5)
        return out
    return payload


def as_json(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


def invalid(name: str, data: bytes, error: str, stage: str, doc: str) -> dict[str, Any]:
    return {"name": name, "doc": doc, "hex": data.hex(), "error": error, "stage": stage}


def valid_vectors() -> list[dict[str, Any]]:
    chat = [js({"user": "bob", "text": f"hi {i}"}) for i in range(3)]
    long_chat = js({"text": "danmaku " * 40})  # long enough for compression to pay
    return [
        plain(
            "auth",
            AUTH,
            js({"token": "tok", "rooms": ["lobby"], "codecs": ["zlib"]}),
            seq=1,
            doc="client AUTH asking for zlib; the reply carries seq 1",
        ),
        plain(
            "auth_ok",
            AUTH_OK,
            js(
                {
                    "conn_id": "c1",
                    "user": "alice",
                    "device": "d1",
                    "node": "g1",
                    "heartbeat_s": 30,
                    "codec": "zlib",
                    "rooms": ["lobby"],
                }
            ),
            seq=1,
        ),
        plain("heartbeat", HEARTBEAT, seq=2),
        plain("heartbeat_ok", HEARTBEAT_OK, js({"online": {"lobby": 3}}), seq=2),
        plain("heartbeat_ok_empty", HEARTBEAT_OK, js({"online": {}}), seq=MAX_U32),
        plain(
            "push",
            PUSH,
            js({"text": "hello alice"}),
            msg_id=BIG_ID,
            doc="a user push: no ROOM frame, so room is null; msg_id above 2**53",
        ),
        plain(
            "push_guaranteed_high",
            PUSH,
            bytes([0, 1, 2, 255]),
            flags=ACK_REQUIRED | HIGH_PRIORITY,
            msg_id=MAX_U64,
            doc="binary payload, ACK_REQUIRED and HIGH_PRIORITY, the largest msg_id",
        ),
        plain("push_zlib", PUSH, long_chat, codec=ZLIB, msg_id=BIG_ID + 1),
        plain("push_brotli", PUSH, long_chat, codec=BROTLI, msg_id=BIG_ID + 2),
        plain("ack_header", ACK, msg_id=BIG_ID, doc="ACK of the header's msg_id, empty body"),
        plain(
            "ack_body",
            ACK,
            b'{"msg_ids":[7290134325755904001,18446744073709551615]}',
            doc="ACK of several ids, as JSON integers (exact: not through a float)",
        ),
        plain("join", JOIN, js({"room": "news"}), seq=3),
        plain("join_ok", JOIN_OK, js({"room": "news", "online": 12}), seq=3),
        plain("leave", LEAVE, js({"room": "news"}), seq=4),
        plain("leave_ok", LEAVE_OK, js({"room": "news"}), seq=4),
        plain("upstream", UPSTREAM, "弹幕 ✓".encode(), seq=5),
        plain("upstream_ok", UPSTREAM_OK, seq=5),
        plain("event", EVENT, js({"type": "enter", "room": "lobby", "user": "bob"})),
        plain("error", ERROR, js({"code": "room_limit", "message": "at most 8 rooms"}), seq=6),
        plain("kick", KICK, js({"reason": "drain"})),
        batch(
            "batch_room",
            [
                (ROOM, js({"room": "lobby"}), 0, 0),
                (PUSH, chat[0], 0, BIG_ID + 10),
                (PUSH, chat[1], 0, BIG_ID + 11),
            ],
            doc="two room messages: ROOM first, then the PUSH frames (PROTOCOL.md §1.4 rule 1)",
        ),
        batch(
            "batch_room_single",
            [(ROOM, js({"room": "news"}), 0, 0), (PUSH, chat[2], 0, BIG_ID + 12)],
            doc="one room message is still a BATCH of two inner frames",
        ),
        batch(
            "batch_area",
            [(ROOM, js({"area": "hall"}), 0, 0), (PUSH, chat[0], HIGH_PRIORITY, BIG_ID + 13)],
            doc="an area push: the ROOM frame names the area",
        ),
        batch(
            "batch_room_zlib",
            [(ROOM, js({"room": "lobby"}), 0, 0)]
            + [(PUSH, long_chat, 0, BIG_ID + 20 + i) for i in range(3)],
            codec=ZLIB,
        ),
        batch(
            "batch_room_brotli",
            [(ROOM, js({"room": "lobby"}), 0, 0)]
            + [(PUSH, long_chat, 0, BIG_ID + 30 + i) for i in range(3)],
            codec=BROTLI,
        ),
        batch(
            "batch_untagged",
            [(PUSH, chat[0], ACK_REQUIRED, BIG_ID + 40), (PUSH, chat[1], 0, BIG_ID + 41)],
            doc="a BATCH without a ROOM frame: not room messages, room is null",
        ),
    ]


def invalid_vectors() -> list[dict[str, Any]]:
    push = frame(PUSH, b"x", msg_id=1)
    zbody = zlib.compress(js({"text": "danmaku " * 40}), 6)
    bomb = zlib.compress(b"\0" * (MAX_INFLATE + 1), 9)
    brotli_bomb = brotli.compress(b"\0" * (MAX_INFLATE + 1), quality=5)
    ok_inner = frame(PUSH, b"a", msg_id=2)
    return [
        invalid("bad_version", frame(PUSH, b"x", version=2), "bad_frame", "frame", "version 2"),
        invalid("short", push[:19], "bad_frame", "frame", "19 bytes: shorter than a header"),
        invalid("empty", b"", "bad_frame", "frame", "no bytes at all"),
        invalid(
            "length_below_header",
            frame(HEARTBEAT, length=19),
            "bad_frame",
            "frame",
            "length field 19 < 20",
        ),
        invalid(
            "length_mismatch_long",
            frame(PUSH, b"abcd", length=25),
            "bad_frame",
            "frame",
            "length says 25, the message has 24 bytes",
        ),
        invalid(
            "length_mismatch_short",
            frame(PUSH, b"abcd", length=20),
            "bad_frame",
            "frame",
            "length says 20, the message has 24 bytes",
        ),
        invalid("unknown_op_0", frame(0), "bad_frame", "frame", "op 0"),
        invalid("unknown_op_99", frame(99), "bad_frame", "frame", "op 99"),
        invalid(
            "unknown_flags", frame(PUSH, b"x", flags=8), "bad_frame", "frame", "flag bit 3 set"
        ),
        invalid("unknown_codec", frame(PUSH, b"x", codec=3), "bad_frame", "frame", "codec 3"),
        invalid(
            "batch_on_event",
            frame(EVENT, b"{}", flags=BATCH),
            "bad_frame",
            "frame",
            "BATCH flag on an EVENT (only PUSH may be a batch)",
        ),
        invalid(
            "oversize",
            frame(PUSH, length=MAX_FRAME + 1),
            "too_large",
            "frame",
            "the header announces max_frame + 1 bytes: refused from the header alone, "
            "before the length mismatch",
        ),
        invalid(
            "nested_batch",
            frame(PUSH, frame(PUSH, ok_inner, flags=BATCH), flags=BATCH),
            "bad_frame",
            "body",
            "a BATCH inside a BATCH",
        ),
        invalid(
            "inner_encoded",
            frame(PUSH, frame(PUSH, zlib.compress(b"a"), codec=ZLIB, msg_id=2), flags=BATCH),
            "bad_frame",
            "body",
            "an inner frame with codec zlib (inner frames are codec 0)",
        ),
        invalid(
            "batch_cut_in_header",
            frame(PUSH, ok_inner + ok_inner[:10], flags=BATCH),
            "bad_frame",
            "body",
            "the batch body ends inside an inner frame's header",
        ),
        invalid(
            "batch_cut_in_body",
            frame(PUSH, ok_inner[:-1], flags=BATCH),
            "bad_frame",
            "body",
            "the batch body ends inside an inner frame's body",
        ),
        invalid(
            "batch_inner_bad_version",
            frame(PUSH, frame(PUSH, b"a", version=7), flags=BATCH),
            "bad_frame",
            "body",
            "an inner frame with version 7",
        ),
        invalid(
            "truncated_zlib",
            frame(PUSH, zbody[: len(zbody) // 2], codec=ZLIB, msg_id=3),
            "bad_frame",
            "body",
            "the zlib stream stops half way",
        ),
        invalid(
            "corrupt_zlib",
            frame(PUSH, b"\x78\x9c\xff\xff\xff\xff", codec=ZLIB, msg_id=3),
            "bad_frame",
            "body",
            "not a zlib stream",
        ),
        invalid(
            "zlib_trailing_bytes",
            frame(PUSH, zbody + b"junk", codec=ZLIB, msg_id=3),
            "bad_frame",
            "body",
            "bytes after the end of the zlib stream",
        ),
        invalid(
            "zlib_bomb",
            frame(PUSH, bomb, codec=ZLIB, msg_id=3),
            "too_large",
            "body",
            "inflates to max_inflate + 1 bytes: a bounded inflate refuses it",
        ),
        {
            **invalid(
                "truncated_brotli",
                frame(PUSH, brotli.compress(b"x" * 1000)[:5], codec=BROTLI, msg_id=3),
                "bad_frame",
                "body",
                "the brotli stream stops early",
            ),
            "needs": "brotli",
        },
        {
            **invalid(
                "brotli_bomb",
                frame(PUSH, brotli_bomb, codec=BROTLI, msg_id=3),
                "too_large",
                "body",
                "inflates to max_inflate + 1 bytes",
            ),
            "needs": "brotli",
        },
    ]


def main() -> None:
    document = {
        "about": ABOUT,
        "limits": {"max_frame": MAX_FRAME, "max_inflate": MAX_INFLATE},
        "valid": valid_vectors(),
        "invalid": invalid_vectors(),
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}: {len(document['valid'])} valid, {len(document['invalid'])} invalid")


if __name__ == "__main__":
    main()
