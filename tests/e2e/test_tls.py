"""TLS on every listener (PROTOCOL.md §1.5; issue 14, failure 3), certificates made here.

``LONGLINK_TLS_CERT``/``LONGLINK_TLS_KEY`` turn on ``https://``, ``wss://``
and TLS on the TCP port; ``/v1/connect`` then advertises ``wss://`` URLs and
``"tls": true``; the Python SDK connects over each with a CA file; SIGHUP
loads a new certificate for new connections.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import signal
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from longlink.client import Client
from tests.conftest import API_KEY, WAIT
from tests.e2e.test_cli import start_server


def make_ca(directory: Path, name: str) -> tuple[Path, Any, Any]:
    """A CA certificate (PEM file) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_server_cert(directory: Path, ca: tuple[Path, Any, Any], name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost signed by ``ca``: (cert file, key file)."""
    _, ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def start_tls_server(
    tmp_path: Path, cert: Path, key: Path, config: Path
) -> tuple[asyncio.subprocess.Process, dict[str, int]]:
    config.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\n')  # noqa: ASYNC240
    return await start_server(tmp_path, "--config", str(config), stderr=asyncio.subprocess.PIPE)


async def peer_certificate_cn(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    cert = writer.get_extra_info("peercert")
    writer.close()
    return str(dict(x[0] for x in cert["subject"])["commonName"])


async def stderr_line(proc: asyncio.subprocess.Process, word: bytes) -> bytes:
    """The next line of the server's stderr that contains ``word``."""
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        assert line, "stderr closed"
        if word in line:
            return line


@pytest.fixture
async def tls_server(tmp_path: Path) -> Any:
    ca = make_ca(tmp_path, "test-ca")
    cert, key = make_server_cert(tmp_path, ca, "first")
    proc, ports = await start_tls_server(tmp_path, cert, key, tmp_path / "longlink.toml")
    try:
        yield proc, ports, ca
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_every_listener_speaks_tls_and_connect_advertises_it(tls_server: Any) -> None:
    _, ports, (ca, _, _) = tls_server
    url = f"https://127.0.0.1:{ports['http']}"
    context = ssl.create_default_context(cafile=str(ca))
    async with httpx.AsyncClient(verify=context, timeout=WAIT) as http:
        grant = (await http.post(f"{url}/v1/connect", json={"user": "u"})).json()
    [endpoint] = grant["endpoints"]
    assert endpoint["ws"] == f"wss://127.0.0.1:{ports['ws']}/ws"
    assert endpoint["tcp"] == f"127.0.0.1:{ports['tcp']}" and endpoint["tls"] is True
    assert endpoint["stream"] == f"https://127.0.0.1:{ports['ws']}/v1/stream"
    # Plain HTTP on the TLS port is refused (no cleartext fallback).
    async with httpx.AsyncClient(timeout=WAIT) as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"http://127.0.0.1:{ports['http']}/healthz")
    for transport in ("ws", "tcp", "stream"):  # the stream: a guaranteed push, its ACK by POST
        async with (
            Client(url, user=f"u-{transport}", transport=transport, ca_file=str(ca)) as client,  # type: ignore[arg-type]
            httpx.AsyncClient(
                base_url=url, verify=context, headers={"Authorization": f"Bearer {API_KEY}"}
            ) as api,
        ):
            body = {"to": {"users": [f"u-{transport}"]}, "data": transport, "guaranteed": True}
            assert (await api.post("/v1/push", json=body)).status_code == 202
            assert (await client.next_message(timeout=WAIT)).json() == transport


async def test_sighup_serves_new_connections_with_the_new_certificate(
    tls_server: Any, tmp_path: Path
) -> None:
    proc, ports, ca = tls_server
    for port in ports.values():
        assert await peer_certificate_cn(port, ca[0]) == "first"
    second, second_key = make_server_cert(tmp_path, ca, "second")
    (tmp_path / "longlink.toml").write_text(f'tls_cert = "{second}"\ntls_key = "{second_key}"\n')
    proc.send_signal(signal.SIGHUP)
    assert b"reloaded" in await stderr_line(proc, b"reload")
    for port in ports.values():
        assert await peer_certificate_cn(port, ca[0]) == "second"
    # A broken pair is refused loudly and the running certificate stays.
    (tmp_path / "longlink.toml").write_text(f'tls_cert = "{second}"\ntls_key = "{second}"\n')
    proc.send_signal(signal.SIGHUP)
    assert b"reload failed" in await stderr_line(proc, b"reload")
    assert await peer_certificate_cn(ports["tcp"], ca[0]) == "second"
