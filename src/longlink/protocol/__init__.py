"""The wire formats of longlink, pure and sans-I/O (PROTOCOL.md §1).

This package imports nothing else from longlink and no I/O library; every
other package depends on it.
"""

from longlink.protocol.errors import FATAL_CODES, ErrorCode, LonglinkError, ProtocolError
from longlink.protocol.frames import (
    CLIENT_OPS,
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    SERVER_OPS,
    Codec,
    Flag,
    Frame,
    FrameDecoder,
    Op,
    compress,
    decode_frame,
    decompress,
    encode_batch,
    encode_frame,
    split_batch,
)

__all__ = [
    "CLIENT_OPS",
    "DEFAULT_MAX_FRAME",
    "FATAL_CODES",
    "HEADER_SIZE",
    "SERVER_OPS",
    "Codec",
    "ErrorCode",
    "Flag",
    "Frame",
    "FrameDecoder",
    "LonglinkError",
    "Op",
    "ProtocolError",
    "compress",
    "decode_frame",
    "decompress",
    "encode_batch",
    "encode_frame",
    "split_batch",
]
