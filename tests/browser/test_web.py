"""`mpc-net web` without a browser: files and rooms on one port, and its bad inputs."""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from seats import key

from mpc_net import web
from mpc_net.signaling.client import SignalingClient


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>")
    (tmp_path / "pyodide").mkdir()
    (tmp_path / "pyodide" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path.parent / "secret.txt").write_text("outside the bundle")
    return tmp_path


async def test_pages_and_rooms_share_one_port(site: Path) -> None:
    async with web.WebServer("127.0.0.1", 0, site) as server:
        origin = server.page_url.rstrip("/")
        status, headers, body = await asyncio.to_thread(fetch, origin + "/?room=lab&party=1")
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert body.startswith(b"<!doctype html>")
        status, headers, body = await asyncio.to_thread(fetch,
                                                        origin + "/pyodide/pyodide.asm.wasm")
        # WebAssembly.instantiateStreaming insists on this type.
        assert (status, headers["Content-Type"], body) == (200, "application/wasm",
                                                           b"\0asm\1\0\0\0")
        status, _, body = await asyncio.to_thread(fetch, origin + "/pyodide/pyodide.asm.wasm",
                                                  {"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
        for path in ("/missing.js", "/../secret.txt", "/%2e%2e/secret.txt", "/pyodide"):
            status, _, body = await asyncio.to_thread(fetch, origin + path)
            assert status == 404 and b"outside" not in body, path
        status, _, body = await asyncio.to_thread(fetch, origin + "/health")
        assert status == 200 and b'"status": "ok"' in body
        # The room server answers on the same port.
        client = SignalingClient()
        await client.connect(server.url)
        joined = await client.join("lab", 0, 2, identity=key(0))
        assert joined["peers"] == []
        await client.close()


def test_missing_bundle_is_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    web.add_arguments(parser)
    options = parser.parse_args(["--bundle", str(tmp_path / "nowhere"), "--port", "0"])
    assert web.run(options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python wasm/build.py" in err
