"""The room server and the pages over TLS: wss:// and https://, and their bad inputs."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from certificates import make_server_certificate
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from seats import key

from mpc_net import web
from mpc_net.native.signaling import SignalingClient
from mpc_net.signaling.protocol import ErrorCode, SignalingError

from helpers import (
    DEMOS,
    ROOT,
    RoomServerProcess,
    make_credentials,
    mpyc_tcp,
    program_lines,
    start_parties,
)


@pytest.fixture
def certificate(tmp_path: Path):
    return make_server_certificate(tmp_path, "127.0.0.1")


def tls(certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certificate, certificate.key)
    return context


async def test_pages_over_https_kept_alive_and_the_room_over_wss(tmp_path: Path, certificate,
                                                                 monkeypatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>x</title>")
    async with web.WebServer("127.0.0.1", 0, site, tls=tls(certificate)) as server:
        assert server.page_url.startswith("https://") and server.url.startswith("wss://")

        def two_pages() -> list[tuple[int, bytes]]:
            client = ssl.create_default_context(cafile=certificate.authority)
            connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=client,
                                                     timeout=10)
            answers = []
            for _ in range(2):  # one connection, one TLS handshake, two answers
                connection.request("GET", "/")
                response = connection.getresponse()
                answers.append((response.status, response.read()))
                assert response.getheader("Connection") is None
            connection.close()
            return answers

        for status, body in await asyncio.to_thread(two_pages):
            assert status == 200 and body.startswith(b"<!doctype html>")
        # A client that does not trust the certificate is told so, in words.
        with pytest.raises(SignalingError) as info:
            await SignalingClient().connect(server.url)
        assert info.value.code == ErrorCode.CONNECT_FAILED
        assert "certificate verify failed" in str(info.value)
        # One that trusts the certificate's authority (here through SSL_CERT_FILE, as a native
        # party would) joins.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.authority))
        client = SignalingClient()
        await client.connect(server.url)
        joined = await client.join("lab", 0, 2, identity=key(0))
        assert joined.peers == []
        await client.close()


def test_three_native_parties_meet_through_a_tls_room_server(tmp_path: Path, certificate,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.authority))  # the parties inherit it
    server = RoomServerProcess(0, "--tls-certificate", str(certificate.certificate),
                               "--tls-key", str(certificate.key))
    try:
        assert server.url.startswith("wss://127.0.0.1:")
        script = DEMOS / "auction.py"
        expected = mpyc_tcp(script, "-M3")
        procs = start_parties(script, 3, server.url, "over-tls",
                              credentials=make_credentials(tmp_path, 3))
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"party {i}: {err}"
            assert program_lines(out) == expected, f"party {i}"
    finally:
        server.close()


@pytest.mark.parametrize("command", ["signal", "web"])
def test_bad_tls_files_are_one_line_and_exit_code_2(tmp_path: Path, certificate,
                                                    command: str) -> None:
    other_key = tmp_path / "other.key"
    other_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    cert, good = str(certificate.certificate), str(certificate.key)
    cases = {
        ("--tls-certificate", cert): "--tls-certificate and --tls-key go together",
        ("--tls-certificate", cert, "--tls-key", str(tmp_path / "missing.key")):
            "cannot read " + str(tmp_path / "missing.key"),
        ("--tls-certificate", cert, "--tls-key", str(other_key)):
            "are not a PEM certificate and its private key",
        ("--tls-certificate", good, "--tls-key", good):
            "are not a PEM certificate and its private key",
        ("--tls-certificate", cert, "--tls-key", str(encrypted)): "is encrypted",
    }
    bundle = ["--bundle", str(tmp_path)] if command == "web" else []
    if command == "web":
        (tmp_path / "index.html").write_text("x")
    for options, message in cases.items():
        done = subprocess.run([sys.executable, "-m", "mpc_net", command, "--port", "0",
                               *bundle, *options], cwd=ROOT, capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 2, (options, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 or command == "signal", (options, done.stderr)  # argparse usage
        assert message in lines[-1] and "Traceback" not in done.stderr, (options, done.stderr)
