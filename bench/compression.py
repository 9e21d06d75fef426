"""Compression of danmaku-like room batches: ratio and CPU per batch (docs/dispatch.md).

A batch body is what dispatch compresses once per aggregation window: complete
inner PUSH frames (20-byte header + ~100-byte JSON payload) laid end to end
(PROTOCOL.md §1.1). For each batch size and codec setting this prints the
compressed size as a share of the raw body, the CPU time to compress it (once per
batch, in dispatch) and to decompress it (once per batch, in every client).

    python bench/compression.py                     # the table in docs/dispatch.md
    python bench/compression.py --sizes 50 --repeat 200
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
import zlib
from collections.abc import Callable

import brotli
from danmaku import Danmaku

from longlink.model import EPOCH_MS
from longlink.protocol import Op, encode_frame


def batch_body(messages: int, seed: int) -> bytes:
    stream = Danmaku(seed)
    base = (int(time.time() * 1000) - EPOCH_MS) << 22
    frames = [
        encode_frame(Op.PUSH, stream.next_json(t=1_700_000_000 + i * 0.001), msg_id=base + i)
        for i in range(messages)
    ]
    return b"".join(frames)


def settings() -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    out: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {}
    for level in (1, 6, 9):
        out[f"zlib {level}"] = (functools.partial(zlib.compress, level=level), zlib.decompress)
    for quality in (1, 3, 4, 5, 6, 9, 11):
        compress = functools.partial(brotli.compress, quality=quality, lgwin=18)
        out[f"br {quality}"] = (compress, brotli.decompress)
    return out


def cpu_us(func: Callable[[bytes], bytes], data: bytes, repeat: int) -> float:
    start = time.process_time_ns()
    for _ in range(repeat):
        func(data)
    return (time.process_time_ns() - start) / repeat / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 20, 50, 200])
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5, help="batches averaged per size")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    print(f"python {platform.python_version()}, brotli {brotli.version}, zlib {zlib.ZLIB_VERSION}")
    print("| messages | raw bytes | setting | size % | compress µs | decompress µs |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        bodies = [batch_body(size, seed) for seed in range(args.seeds)]
        raw = sum(len(b) for b in bodies) / len(bodies)
        for name, (compress, decompress) in settings().items():
            ratio = c_us = d_us = 0.0
            for body in bodies:
                packed = compress(body)
                assert decompress(packed) == body
                ratio += len(packed) / len(body)
                c_us += cpu_us(compress, body, args.repeat)
                d_us += cpu_us(decompress, packed, args.repeat)
            n = len(bodies)
            print(
                f"| {size} | {raw:.0f} | {name} | {100 * ratio / n:.1f} "
                f"| {c_us / n:.1f} | {d_us / n:.1f} |"
            )


if __name__ == "__main__":
    main()
