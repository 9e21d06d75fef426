"""Write the seed corpus of every target into ``fuzz/corpus/`` (run once; kept in git).

Seeds are valid inputs (the shared frame vectors, a WebSocket upgrade, push
bodies) so the fuzzer starts from the paths real clients take.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from longlink.protocol import Op, encode_frame
from longlink.protocol import websocket as wsp
from longlink.protocol.push import batch_frame, push_frame, room_batch, room_tag

ROOT = Path(__file__).parent / "corpus"
VECTORS = Path(__file__).parent.parent / "tests" / "vectors" / "frames.json"


def write(target: str, data: bytes) -> None:
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main() -> None:
    vectors = json.loads(VECTORS.read_text())
    frames = [bytes.fromhex(v["hex"]) for v in vectors["valid"] + vectors["invalid"] if "hex" in v]
    frames += [
        encode_frame(Op.AUTH, b'{"token": "t", "rooms": ["a"]}', seq=1),
        encode_frame(Op.HEARTBEAT, b'{"heartbeat_s": 30}', seq=2),
        push_frame(b"hello", 42),
        room_batch(room_tag("lobby"), [push_frame(b"x", 1), push_frame(b"y", 2)]),
    ]
    for frame in frames:
        write("frame", frame)
        write("stream", b"\x07" + frame + frame)
        head = b"POST /v1/stream/g1-ab-1 HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer t\r\n"
        write("http", b"\x0b" + head + b"Content-Length: %d\r\n\r\n" % len(frame) + frame)
        write("ws", b"\x05" + wsp.encode_masked_frame(wsp.WsOpcode.BINARY, frame, os.urandom(4)))
    write("batch", b"\x00" + room_tag("lobby") + push_frame(b"x", 1))
    write("batch", b"\x00" + batch_frame(push_frame(b"x", 1))[20:])
    write(
        "upgrade",
        b"\x10GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: longlink.v1\r\n\r\n",
    )
    for kind, body in enumerate(
        [
            b'{"token": "t", "rooms": ["a"], "codecs": ["br"], "since": {"a": "1"}}',
            b'{"heartbeat_s": 20}',
            b'{"room": "a", "since": "12"}',
            b'{"rtt_ms": [1, 2], "transport": "ws", "reconnects": 0}',
            b'{"room": "a"}',
            b'{"msg_ids": [1, 2, 3]}',
            b"18446744073709551615",
        ]
    ):
        write("session", bytes([kind]) + body)
    push = {"to": {"users": ["u"]}, "data": {"a": [1, {"b": None}]}, "ttl_s": 30}
    write("json", b"\x00" + json.dumps(push).encode())
    write("json", b"\x01" + json.dumps({"messages": [push, {**push, "data_b64": "eA=="}]}).encode())
    write("json", b"\x02" + json.dumps({"user": "u", "device": "d"}).encode())


if __name__ == "__main__":
    main()
