"""The distribution: its name, version, command, license, and dependencies that are used."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import longlink
from tests.conftest import WAIT

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Dependencies no module imports, and why each is there.
NOT_IMPORTED = {
    "hiredis": "redis-py parses replies with it when it is installed",
    "sniffio": "httpcore retries a failing import of it on every request",
    # Its package imports jinja2 and PyYAML; /docs needs only its files (api/ops.py).
    "swagger-ui-py": "/docs serves its static files, found with importlib.util.find_spec",
}
#: Import names that differ from the distribution's.
IMPORT_NAMES = {"PyJWT": "jwt", "prometheus-client": "prometheus_client"}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0)


def test_the_distribution_is_longlink_server_with_the_package_version() -> None:
    assert PROJECT["name"] == "longlink-server"
    assert metadata.version("longlink-server") == longlink.__version__
    [script] = [e for e in metadata.entry_points(group="console_scripts") if e.name == "longlink"]
    assert script.value == "longlink.cli:main"


def test_the_license_file_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the longlink authors" in text
    assert PROJECT["license"] == "MIT"


def test_every_dependency_is_imported_by_the_package() -> None:
    sources = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))
    for requirement in PROJECT["dependencies"]:
        name = _name(requirement)
        if name in NOT_IMPORTED:
            continue
        module = IMPORT_NAMES.get(name, name)
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.MULTILINE), name


async def test_version_option() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "longlink", "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0
    assert out.decode().strip() == f"longlink, version {longlink.__version__}"


#: The longest a module of the package may grow (docs/architecture.md, "Modules").
MODULE_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    package = ROOT / "src" / "longlink"
    long = {
        str(path.relative_to(package)): lines
        for path in package.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MODULE_LINES
    }
    assert not long, f"split these modules (over {MODULE_LINES} lines): {long}"
