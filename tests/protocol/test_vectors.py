"""The shared frame vectors (tests/vectors/frames.json) against the Python codec and SDK unpacking.

The JavaScript SDK's tests read the same file (tests/js/vectors.test.mjs), so
both sides agree byte for byte on PROTOCOL.md §1.1-1.4 rule 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from longlink.client import unpack_pushes
from longlink.protocol import Flag, Frame, ProtocolError, decode_frame

ROOT = Path(__file__).parents[2]
DOCUMENT: dict[str, Any] = json.loads(
    (ROOT / "tests" / "vectors" / "frames.json").read_text(encoding="utf-8")
)
MAX_FRAME: int = DOCUMENT["limits"]["max_frame"]
MAX_INFLATE: int = DOCUMENT["limits"]["max_inflate"]
VALID = DOCUMENT["valid"]
INVALID = DOCUMENT["invalid"]


def _header(frame: Frame, length: int) -> dict[str, Any]:
    return {
        "length": length,
        "version": 1,
        "op": frame.op,
        "flags": frame.flags,
        "codec": frame.codec,
        "seq": frame.seq,
        "msg_id": str(frame.msg_id),
    }


def test_the_file_covers_what_the_protocol_lists() -> None:
    ops = {v["header"]["op"] for v in VALID}
    inner_ops = {i["op"] for v in VALID for i in v.get("inner", [])}
    assert ops == set(range(1, 16))  # every op of §1.2 up to KICK as a plain frame
    assert 16 in inner_ops  # ROOM, inside a BATCH
    assert {v["header"]["codec"] for v in VALID} == {0, 1, 2}
    assert {v["error"] for v in INVALID} == {"bad_frame", "too_large"}


@pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
def test_valid_frame_decodes_as_written(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    frame = decode_frame(data, MAX_FRAME)
    assert _header(frame, len(data)) == vector["header"]
    assert frame.body.hex() == vector["body_hex"]
    payload = frame.payload(MAX_INFLATE)
    assert payload.hex() == vector["payload_hex"]
    if "json" in vector:
        assert json.loads(payload) == vector["json"]
    if frame.flags & Flag.BATCH:
        inner = [
            {
                "op": f.op,
                "flags": f.flags,
                "codec": f.codec,
                "seq": f.seq,
                "msg_id": str(f.msg_id),
                "body_hex": f.body.hex(),
            }
            for f in frame.inner_frames(MAX_INFLATE)
        ]
        expected = [{k: v for k, v in i.items() if k != "json"} for i in vector["inner"]]
        assert inner == expected


@pytest.mark.parametrize(
    "vector", [v for v in VALID if "messages" in v], ids=lambda v: str(v["name"])
)
def test_sdk_unpacks_the_messages_with_their_room(vector: dict[str, Any]) -> None:
    frame = decode_frame(bytes.fromhex(vector["hex"]), MAX_FRAME)
    got = [
        {
            "msg_id": str(m.msg_id),
            "room": m.room,
            "data_hex": m.data.hex(),
            "guaranteed": m.guaranteed,
            "high_priority": m.high_priority,
        }
        for m in unpack_pushes(frame, MAX_INFLATE)
    ]
    assert got == [{k: v for k, v in m.items() if k != "area"} for m in vector["messages"]]


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_frame_is_refused_with_its_code(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    with pytest.raises(ProtocolError) as caught:
        frame = decode_frame(data, MAX_FRAME)
        assert vector["stage"] == "body", "the header and length should have been refused"
        frame.inner_frames(MAX_INFLATE) if frame.flags & Flag.BATCH else frame.payload(MAX_INFLATE)
    assert caught.value.code == vector["error"]


def test_the_worked_example_in_docs_is_made_of_vectors() -> None:
    """docs/protocol.md's hex dumps are byte for byte the vectors they say they are."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    dumps = []
    for block in re.findall(r"```\n(0000  .*?)```", text, flags=re.S):
        rows = [line[6:53].split() for line in block.splitlines() if line.strip()]
        dumps.append(bytes.fromhex("".join("".join(row) for row in rows)).hex())
    by_name = {v["name"]: v["hex"] for v in VALID}
    assert dumps == [by_name[n] for n in ("auth", "auth_ok", "batch_room", "ack_header")]
