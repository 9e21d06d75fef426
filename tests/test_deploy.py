"""deploy/: the sample TOML, the systemd units and the reverse-proxy examples, checked for real.

* deploy/longlink.toml parses, names every setting once, and each default it
  states is the real default.
* deploy/systemd/*.service pass ``systemd-analyze verify`` (no warning) and
  ``systemd-analyze security`` below a threshold.
* deploy/nginx/*.conf pass ``nginx -t`` and deploy/caddy/Caddyfile
  ``caddy validate``; then each proxy runs in front of a real node with a
  self-signed certificate, and a client goes through it: HTTPS API, ``wss://``
  WebSocket, and (nginx) TLS on the raw TCP port.

The tools come from Debian (``apt-get install nginx libnginx-mod-stream
caddy``; ``.ci/run`` installs them). Without one the test skips, except under
``CI=true`` where that is a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from longlink.client.raw import RawConnection
from longlink.node import Node
from longlink.protocol import Op
from longlink.protocol.messages import Auth, encode_body
from longlink.settings import Settings, load_settings
from tests.conftest import API_KEY, WAIT, eventually, node_settings
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SAMPLE = DEPLOY / "longlink.toml"
#: A setting line of the sample: "name = value", commented out ("# ") or not.
SETTING = re.compile(r"^(?:# )?([a-z_0-9]+) = ")
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


def need(tool: str, *paths: str) -> str:
    """The path of ``tool`` (skip without it; under CI that fails)."""
    found = shutil.which(tool) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        message = f"{tool} is not installed (apt-get install -y {tool})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


# ---------------------------------------------------------------- the sample TOML


def _settings_part() -> list[str]:
    lines = SAMPLE.read_text().splitlines()
    return lines[: lines.index("# [[api_keys]]")]


def test_sample_toml_parses_and_lists_every_setting() -> None:
    settings = load_settings(SAMPLE, environ={})
    assert settings.public_host == "push.example.com"
    names = [m.group(1) for line in _settings_part() if (m := SETTING.match(line))]
    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "api_keys"]
    missing = sorted(set(fields) - set(names))
    assert not missing, f"deploy/longlink.toml does not list {missing}"
    assert sorted(names) == sorted(set(names)), "a setting is listed twice"
    assert set(names) <= set(fields), sorted(set(names) - set(fields))
    assert "# [[api_keys]]" in SAMPLE.read_text()


def test_sample_toml_states_the_real_defaults(tmp_path: Path) -> None:
    lines = _settings_part()
    commented = {m.group(1) for line in lines if line[:2] == "# " and (m := SETTING.match(line))}
    uncommented = "\n".join(
        line[2:] if line[:2] == "# " and SETTING.match(line) else line for line in lines
    )
    data = tomllib.loads(uncommented)  # every setting line, commented or not, is valid TOML
    defaults = Settings()
    for name in sorted(commented):
        default = getattr(defaults, name)
        if default is None or name == "token_secret":
            continue  # no default: the value shown is an example
        value = data[name]
        expected = list(default) if isinstance(default, tuple) else default
        assert value == expected, f"{name}: the sample says {value!r}, the default is {default!r}"
    # And the API key example, uncommented, is a valid key.
    keys = SAMPLE.read_text().split("# [[api_keys]]", 1)[1]
    table = "[[api_keys]]" + re.sub(r"(?m)^# ", "", keys)
    path = tmp_path / "keys.toml"
    path.write_text(table)
    [key] = load_settings(path, environ={}).api_keys
    assert (key.name, key.targets, key.rate) == ("chat-backend", ("users", "rooms"), 1000.0)


# ---------------------------------------------------------------- systemd


def _installed_units(tmp_path: Path) -> list[Path]:
    """The units, with ExecStart pointing at this venv's longlink, and one instance of each
    template (verify checks that the command exists)."""
    longlink = Path(sys.executable).parent / "longlink"
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("/opt/longlink/venv/bin/longlink", str(longlink))
        name = unit.name.replace("@.", "@g1.")
        (tmp_path / name).write_text(text)
        units.append(tmp_path / name)
    return units


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    units = _installed_units(tmp_path)
    assert {u.name for u in units} == {
        "longlink.service",
        "longlink-api.service",
        "longlink-control.service",
        "longlink-dispatch@g1.service",
        "longlink-gateway@g1.service",
    }
    result = subprocess.run(
        [analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == "", result.stderr  # not even a warning
    for unit in units:
        security = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=40", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert security.returncode == 0, security.stdout[-600:]


def test_each_role_has_its_unit() -> None:
    for role in ("gateway", "api", "control", "dispatch"):
        [unit] = (DEPLOY / "systemd").glob(f"longlink-{role}*.service")
        assert f"--role {role} " in unit.read_text()


# ---------------------------------------------------------------- the proxies


@dataclasses.dataclass
class Tls:
    cert: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    openssl = need("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Tls(cert, key)


def _nginx_files(tmp_path: Path, tls: Tls, ports: dict[str, int]) -> Path:
    """The two nginx examples with local ports and the test certificate, in a main config."""
    http = (DEPLOY / "nginx" / "longlink.conf").read_text()
    tcp = (DEPLOY / "nginx" / "longlink-tcp.conf").read_text()
    for port, name in ((8080, "http"), (7000, "ws"), (7001, "tcp")):
        http = http.replace(f"server 127.0.0.1:{port};", f"server 127.0.0.1:{ports[name]};")
        tcp = tcp.replace(f"server 127.0.0.1:{port};", f"server 127.0.0.1:{ports[name]};")
    http = http.replace("listen 80;", f"listen 127.0.0.1:{ports['proxy_http']};")
    http = http.replace("listen 443 ssl", f"listen 127.0.0.1:{ports['proxy_https']} ssl")
    tcp = tcp.replace("listen 7443 ssl;", f"listen 127.0.0.1:{ports['proxy_tcp']} ssl;")
    http, tcp = (
        re.sub(r"(?m)^\s*listen \[::\].*\n", "", t)
        .replace("/etc/letsencrypt/live/push.example.com/fullchain.pem", str(tls.cert))
        .replace("/etc/letsencrypt/live/push.example.com/privkey.pem", str(tls.key))
        for t in (http, tcp)
    )
    (tmp_path / "longlink.conf").write_text(http)
    (tmp_path / "longlink-tcp.conf").write_text(tcp)
    temp = tmp_path / "nginx-temp"
    temp.mkdir(exist_ok=True)
    main = tmp_path / "nginx.conf"
    main.write_text(
        (f"load_module {STREAM_MODULE};\n" if STREAM_MODULE.exists() else "")
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 256; }\n"
        "http {\n    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    include {tmp_path}/longlink.conf;\n}}\n"
        f"include {tmp_path}/longlink-tcp.conf;\n"
    )
    return main


def _proxy_ports(node: Node) -> dict[str, int]:
    assert node.http is not None and node.gateway is not None
    return {
        "http": node.http.port,
        "ws": node.gateway.ws_port,
        "tcp": node.gateway.tcp_port,
        "proxy_http": free_port(),
        "proxy_https": free_port(),
        "proxy_tcp": free_port(),
    }


def _stream_module() -> None:
    if not STREAM_MODULE.exists():
        message = "nginx's stream module is missing (apt-get install -y libnginx-mod-stream)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_nginx_configs_pass_nginx_t(tmp_path: Path, tls: Tls) -> None:
    nginx = need("nginx", "/usr/sbin/nginx")
    _stream_module()
    ports = {"http": 8080, "ws": 7000, "tcp": 7001}
    ports.update(proxy_http=free_port(), proxy_https=free_port(), proxy_tcp=free_port())
    main = _nginx_files(tmp_path, tls, ports)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_caddyfile_validates(tmp_path: Path) -> None:
    caddy = need("caddy")
    caddyfile = DEPLOY / "caddy" / "Caddyfile"
    result = subprocess.run(
        [caddy, "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
        capture_output=True, text=True, timeout=60, env=_caddy_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
    formatted = subprocess.run(
        [caddy, "fmt", str(caddyfile)], capture_output=True, text=True, timeout=60
    )
    assert formatted.stdout == caddyfile.read_text()


def _caddy_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
    }


def _caddyfile(tmp_path: Path, tls: Tls, ports: dict[str, int]) -> Path:
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    text = text.replace("127.0.0.1:7000", f"127.0.0.1:{ports['ws']}")
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{ports['http']}")
    text = text.replace(
        "push.example.com {",
        f"https://127.0.0.1:{ports['proxy_https']} {{\n\ttls {tls.cert} {tls.key}",
    )
    options = "{\n\tadmin off\n\tauto_https disable_redirects\n}\n\n"
    path = tmp_path / "Caddyfile"
    path.write_text(options + text)
    return path


async def _running(
    args: list[str], port: int, tmp_path: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    log = (tmp_path / "proxy.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env
    )
    log.close()

    def accepts() -> bool:
        if proc.returncode is not None:
            raise AssertionError((tmp_path / "proxy.log").read_text())
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    await eventually(accepts, within=WAIT * 2, what="the proxy to listen", interval=0.05)
    return proc


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(node_settings(tmp_path)) as running:
        yield running


async def _through(
    node: Node, tls: Tls, https: int, tcp: int | None, check: Callable[[], None] = lambda: None
) -> None:
    """A client through the proxy: HTTPS API, connect, wss:// AUTH, a push, TLS TCP."""
    context = tls.client()
    base = f"https://127.0.0.1:{https}"
    async with httpx.AsyncClient(base_url=base, verify=context, timeout=WAIT) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        grant = (await http.post("/v1/connect", json={"user": "proxied"})).json()
        async with await RawConnection.open("ws", f"wss://127.0.0.1:{https}/ws", ssl=context) as ws:
            await ws.send_frame(Op.AUTH, encode_body(Auth(grant["token"], ["lobby"])))
            assert (await ws.recv_frame(timeout=WAIT)).op == Op.AUTH_OK
            pushed = await http.post(
                "/v1/push",
                json={"to": {"users": ["proxied"]}, "data": "through the proxy"},
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert pushed.status_code == 202, pushed.text
            frame = await ws.recv_frame(timeout=WAIT)
            assert (frame.op, frame.msg_id) == (Op.PUSH, int(pushed.json()["msg_id"]))
        if tcp is not None:
            grant = (await http.post("/v1/connect", json={"user": "tcp-proxied"})).json()
            async with await RawConnection.open("tcp", f"127.0.0.1:{tcp}", ssl=context) as raw:
                await raw.send_frame(Op.AUTH, encode_body(Auth(grant["token"], [])))
                assert (await raw.recv_frame(timeout=WAIT)).op == Op.AUTH_OK
    check()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), WAIT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_nginx_proxies_https_websocket_and_tcp(node: Node, tmp_path: Path, tls: Tls) -> None:
    nginx = need("nginx", "/usr/sbin/nginx")
    _stream_module()
    ports = _proxy_ports(node)
    main = _nginx_files(tmp_path, tls, ports)
    args = [nginx, "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log"),
            "-g", "daemon off;"]  # fmt: skip
    proc = await _running(args, ports["proxy_https"], tmp_path)
    try:
        await _through(node, tls, ports["proxy_https"], ports["proxy_tcp"])
    finally:
        await _stop(proc)


async def test_caddy_proxies_https_and_websocket(node: Node, tmp_path: Path, tls: Tls) -> None:
    caddy = need("caddy")
    ports = _proxy_ports(node)
    path = _caddyfile(tmp_path, tls, ports)
    args = [caddy, "run", "--config", str(path), "--adapter", "caddyfile"]
    proc = await _running(args, ports["proxy_https"], tmp_path, env=_caddy_env(tmp_path))
    try:
        await _through(node, tls, ports["proxy_https"], None)
        async with httpx.AsyncClient(verify=tls.client(), timeout=WAIT) as http:
            hidden = await http.get(f"https://127.0.0.1:{ports['proxy_https']}/metrics")
            assert hidden.status_code == 404
    finally:
        await _stop(proc)
