"""Memory per idle authenticated connection, plain and TLS (docs/security.md, "TLS").

Starts ``longlink serve`` twice (plain, then with a certificate made here by
the ``openssl`` command), opens ``--conns`` TCP connections to each that
AUTH and then stay idle, and reads the server's RSS (``/proc/PID/status``)
before and after. Everything stays on 127.0.0.1.

    python bench/tls_memory.py --conns 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from longlink.protocol import FrameDecoder, Op, encode_frame

READY = re.compile(r"^longlink ready http=(\d+) ws=(\d+) tcp=(\d+)$")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def measure(conns: int, tls: tuple[Path, Path] | None) -> float:
    env = {
        **os.environ,
        "LONGLINK_HTTP_PORT": "0", "LONGLINK_WS_PORT": "0", "LONGLINK_TCP_PORT": "0",
        "LONGLINK_DEMO": "1", "LONGLINK_LOG_LEVEL": "warning", "LONGLINK_HEARTBEAT_S": "300",
        "LONGLINK_MAX_CONNS_PER_IP": "0", "LONGLINK_CONNECT_RATE": "0",
        "LONGLINK_KICK_SAME_DEVICE": "0",
        "LONGLINK_DATA_DIR": tempfile.mkdtemp(),
    }  # fmt: skip
    if tls is not None:
        env["LONGLINK_TLS_CERT"], env["LONGLINK_TLS_KEY"] = str(tls[0]), str(tls[1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "serve", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    match = READY.match((await proc.stdout.readline()).decode().strip())
    assert match, "server did not start"
    http, _, tcp = (int(p) for p in match.groups())
    context: ssl.SSLContext | None = None
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls[0]))
    scheme = "https" if tls else "http"
    async with httpx.AsyncClient(verify=context or True) as client:
        answer = await client.post(f"{scheme}://127.0.0.1:{http}/v1/connect", json={"user": "u"})
        token = answer.json()["token"]
    auth = encode_frame(Op.AUTH, json.dumps({"token": token}).encode(), seq=1)
    before = rss(proc.pid)
    writers = []
    try:
        for _ in range(conns):
            reader, writer = await asyncio.open_connection("127.0.0.1", tcp, ssl=context)
            writer.write(auth)
            decoder = FrameDecoder(1 << 20)
            while not any(f.op == Op.AUTH_OK for f in decoder.feed(await reader.read(4096))):
                pass
            writers.append(writer)
        await asyncio.sleep(1.0)  # let the server settle (no event to wait for: RSS)
        after = rss(proc.pid)
        print(f"  RSS {before >> 20} -> {after >> 20} MiB", file=sys.stderr)
        return (after - before) / conns
    finally:
        for writer in writers:
            writer.close()
        proc.terminate()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conns", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tls = certificate(Path(directory))
        plain = await measure(args.conns, None)
        secure = await measure(args.conns, tls)
    print(f"{args.conns} idle authenticated TCP connections:")
    print(f"  plain: {plain / 1024:.1f} KiB each")
    print(f"  TLS:   {secure / 1024:.1f} KiB each (+{(secure - plain) / 1024:.1f} KiB for TLS)")


if __name__ == "__main__":
    asyncio.run(main())
