"""``longlink.protocol`` is sans-I/O (STYLE habit 1): proven in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import longlink

FORBIDDEN = (
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "redis",
    "starlette",
    "uvicorn",
    "httpx",
    "websockets",
    "uvloop",
)

SCRIPT = """
import importlib, json, pkgutil, sys

import longlink.protocol

names = ["longlink.protocol"]
for info in pkgutil.walk_packages(longlink.protocol.__path__, "longlink.protocol."):
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def isolated() -> dict[str, list[str]]:
    """What a fresh interpreter holds after importing every protocol module."""
    src = str(Path(longlink.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_protocol_imports_no_io_library(isolated: dict[str, list[str]]) -> None:
    result = isolated
    # Every module of the package was imported, not only the package itself.
    assert {"longlink.protocol.frames", "longlink.protocol.messages"} <= set(result["imported"])
    loaded = {name.partition(".")[0] for name in result["modules"]}
    assert sorted(loaded & set(FORBIDDEN)) == []


def test_protocol_imports_nothing_else_from_longlink(isolated: dict[str, list[str]]) -> None:
    result = isolated
    others = [
        name
        for name in result["modules"]
        if name.startswith("longlink.") and not name.startswith("longlink.protocol")
    ]
    assert others == []
