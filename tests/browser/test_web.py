"""`mpc-net web` without a browser: files and rooms on one port, and its bad inputs."""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from seats import key

from mpc_net import web
from mpc_net.bundle import downloads, mpyc_wheel, pyodide_tarball
from mpc_net.native.signaling import SignalingClient
from mpc_net.signaling.protocol import ErrorCode, SignalingError
from mpc_net.signaling.server import serve_until_signal

from helpers import ROOT

FETCH = ("import json, sys, urllib.request as u; r = u.urlopen(u.Request(sys.argv[1], "
         "headers=json.loads(sys.argv[2])), timeout=30); "
         "print(json.dumps([r.status, dict(r.headers), r.read().hex()]))")


def fetch_in_namespace(loopback, url: str, headers: dict[str, str] | None = None,
                       ) -> tuple[int, dict, bytes]:
    """`fetch` from where the parties run (a loopback-only namespace, if there is one)."""
    done = subprocess.run(loopback.command(sys.executable, "-c", FETCH, url,
                                           json.dumps(headers or {})),
                          capture_output=True, timeout=60, check=True)
    status, headers, body = json.loads(done.stdout)
    return status, headers, bytes.fromhex(body)


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
    wasm = b"\0asm\1\0\0\0" + bytes(1000)
    (tmp_path / "pyodide" / "pyodide.asm.wasm").write_bytes(wasm)
    (tmp_path / "pyodide" / "pyodide.asm.wasm.gz").write_bytes(gzip.compress(wasm))
    (tmp_path.parent / "secret.txt").write_text("outside the bundle")
    return tmp_path


async def test_pages_and_rooms_share_one_port(site: Path) -> None:
    async with web.WebServer("127.0.0.1", 0, site) as server:
        origin = server.page_url.rstrip("/")
        status, headers, body = await asyncio.to_thread(fetch, origin + "/?room=lab&party=1")
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert body.startswith(b"<!doctype html>")
        wasm = (site / "pyodide" / "pyodide.asm.wasm").read_bytes()
        status, headers, body = await asyncio.to_thread(fetch,
                                                        origin + "/pyodide/pyodide.asm.wasm")
        # WebAssembly.instantiateStreaming insists on this type.
        assert (status, headers["Content-Type"], body) == (200, "application/wasm", wasm)
        assert "Content-Encoding" not in headers  # this client did not ask for gzip
        status, _, body = await asyncio.to_thread(fetch, origin + "/pyodide/pyodide.asm.wasm",
                                                  {"If-None-Match": headers["ETag"]})
        assert (status, body) == (304, b"")
        for path in ("/missing.js", "/pyodide", "/" + "a" * 300):
            status, _, body = await asyncio.to_thread(fetch, origin + path)
            assert status == 404 and b"outside" not in body, path
        status, _, body = await asyncio.to_thread(fetch, origin + "/health")
        assert status == 200 and b'"status": "ok"' in body
        # The room server answers on the same port.
        client = SignalingClient()
        await client.connect(server.url)
        joined = await client.join("lab", 0, 2, identity=key(0))
        assert joined.peers == []
        await client.close()


async def test_precompressed_files_go_to_clients_that_accept_gzip(site: Path) -> None:
    wasm = (site / "pyodide" / "pyodide.asm.wasm").read_bytes()
    async with web.WebServer("127.0.0.1", 0, site) as server:
        url = server.page_url + "pyodide/pyodide.asm.wasm"
        for accept in ("gzip, deflate, br, zstd", "br;q=1.0, gzip;q=0.8", "*"):
            status, headers, body = await asyncio.to_thread(fetch, url,
                                                            {"Accept-Encoding": accept})
            assert (status, headers["Content-Encoding"]) == (200, "gzip"), accept
            assert headers["Content-Type"] == "application/wasm"
            assert headers["Vary"] == "Accept-Encoding"
            assert int(headers["Content-Length"]) == len(body) < len(wasm)
            assert gzip.decompress(body) == wasm
        status, _, body = await asyncio.to_thread(fetch, url, {"If-None-Match": headers["ETag"],
                                                               "Accept-Encoding": "gzip"})
        assert (status, body) == (304, b"")
        for accept in ("gzip;q=0", "br", "identity", "*;q=0", "gzip;q=zero"):
            status, headers, body = await asyncio.to_thread(fetch, url,
                                                            {"Accept-Encoding": accept})
            assert (status, body, headers.get("Content-Encoding")) == (200, wasm, None), accept
        # Files without a precompressed copy go as they are.
        status, headers, body = await asyncio.to_thread(fetch, server.page_url,
                                                        {"Accept-Encoding": "gzip"})
        assert (status, headers.get("Content-Encoding")) == (200, None)
        assert body.startswith(b"<!doctype html>")
        # A file edited after its gzip copy was made goes as it is now.
        edited = wasm + b"edited"
        (site / "pyodide" / "pyodide.asm.wasm").write_bytes(edited)
        status, headers, body = await asyncio.to_thread(fetch, url, {"Accept-Encoding": "gzip"})
        assert (status, body, headers.get("Content-Encoding")) == (200, edited, None)


async def test_only_files_named_by_their_digest_are_kept_for_good(site: Path) -> None:
    """The bundle's snapshot and Pyodide's directory carry a digest of what they hold: browsers
    keep them without asking again. Any other file is revalidated on every load (a 304 when
    unchanged), so a rebuilt bundle is never stale."""
    digest = "0123456789abcdef"
    (site / f"pyodide-{digest}").mkdir()
    (site / f"pyodide-{digest}" / "pyodide.asm.wasm").write_bytes(b"\0asm\1\0\0\0")
    snapshot = site / f"snapshot-{digest}.bin"
    snapshot.write_bytes(bytes(1000))
    snapshot.with_name(snapshot.name + ".gz").write_bytes(gzip.compress(bytes(1000)))
    for name in (f"snapshot-{digest}0.bin", f"snapshot-{digest.upper()}.bin",
                 f"snapshot{digest}.bin", "snapshot-0123.bin", "site-files.bin"):
        (site / name).write_bytes(b"x")
    async with web.WebServer("127.0.0.1", 0, site, {"p.py": "pass\n"}) as server:
        origin = server.page_url.rstrip("/")
        for path in (f"/pyodide-{digest}/pyodide.asm.wasm", f"/snapshot-{digest}.bin"):
            for accept in ("gzip", "identity"):
                status, headers, _ = await asyncio.to_thread(fetch, origin + path,
                                                             {"Accept-Encoding": accept})
                assert (status, headers["Cache-Control"]) == (200, web.IMMUTABLE), path
                assert "ETag" in headers
        for path in ("/", "/pyodide/pyodide.asm.wasm", f"/snapshot-{digest}0.bin",
                     f"/snapshot-{digest.upper()}.bin", f"/snapshot{digest}.bin",
                     "/snapshot-0123.bin", "/site-files.bin", "/programs.json", "/programs/p.py"):
            status, headers, _ = await asyncio.to_thread(fetch, origin + path)
            assert (status, headers["Cache-Control"]) == (200, "no-cache"), path
            if path.startswith("/programs"):
                continue
            status, again, body = await asyncio.to_thread(fetch, origin + path,
                                                          {"If-None-Match": headers["ETag"]})
            assert (status, body, again["Cache-Control"]) == (304, b"", "no-cache"), path
        # Answers that are no file are never kept.
        for path in (f"/snapshot-{digest}.js", f"/pyodide-{digest}/missing.wasm"):
            status, headers, _ = await asyncio.to_thread(fetch, origin + path)
            assert (status, headers.get("Cache-Control")) == (404, None), path


async def read_response(reader: asyncio.StreamReader, head_only: bool = False,
                        ) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("iso-8859-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    length = 0 if head_only else int(headers.get("Content-Length", "0"))
    return int(head[0].split()[1]), headers, await reader.readexactly(length)


def get(path: str, *headers: str, method: str = "GET") -> bytes:
    return "\r\n".join((f"{method} {path} HTTP/1.1", "Host: x", *headers, "", "")).encode()


async def test_a_page_loads_its_files_over_one_connection_then_upgrades_on_it(
        site: Path) -> None:
    wasm = (site / "pyodide" / "pyodide.asm.wasm").read_bytes()
    async with web.WebServer("127.0.0.1", 0, site) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # Sent together (pipelined), answered in order on the one connection.
        writer.write(get("/") + get("/pyodide/pyodide.asm.wasm", "Accept-Encoding: gzip")
                     + get("/pyodide/pyodide.asm.wasm", method="HEAD") + get("/missing")
                     + get("/health") + get("/", method="DELETE"))
        answers = [await read_response(reader, head_only=(i == 2)) for i in range(6)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 404, 200, 405]
        assert answers[0][2].startswith(b"<!doctype html>")
        assert gzip.decompress(answers[1][2]) == wasm
        assert int(answers[2][1]["Content-Length"]) == len(wasm) and answers[2][2] == b""
        assert answers[5][1]["Allow"] == "GET, HEAD"
        for _, headers, _ in answers:
            assert "Connection" not in headers  # HTTP/1.1: kept alive
            assert headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
        # The room server takes a WebSocket upgrade on the same connection.
        writer.write(get("/", "Connection: Upgrade", "Upgrade: websocket",
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                         "Sec-WebSocket-Version: 13"))
        status, headers, _ = await read_response(reader, head_only=True)
        assert (status, headers["Upgrade"]) == (101, "websocket")
        assert server.stats()["connections"] == 1
        writer.close()


async def test_page_connections_end_when_asked_when_idle_and_on_bad_requests(
        site: Path) -> None:
    class QuickServer(web.WebServer):
        page_idle_timeout = 0.3

    async def connected_at(server: web.WebServer) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", server.port)

    async with QuickServer("127.0.0.1", 0, site) as server:
        for request in (get("/", "Connection: close"), b"GET / HTTP/1.0\r\n\r\n",
                        b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
                        b"BAD\r\n\r\n"):
            reader, writer = await connected_at(server)
            writer.write(request + get("/"))  # the second request goes unanswered
            status, headers, _ = await read_response(reader)
            assert headers["Connection"] == "close" and status in (200, 400), request
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            writer.close()
        # Idle between requests, or a head sent too slowly: closed after page_idle_timeout.
        for request in (get("/"), b"GET / HT"):
            reader, writer = await connected_at(server)
            writer.write(request)
            if request.endswith(b"\r\n"):
                await read_response(reader)
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            writer.close()
    # Server shutdown ends page connections at once, not after their idle time.
    server = web.WebServer("127.0.0.1", 0, site)
    await server.start()
    reader, writer = await connected_at(server)
    writer.write(get("/"))
    await read_response(reader)
    async with asyncio.timeout(1):
        await server.close()
        assert await reader.read() == b""
    writer.close()


async def test_a_client_that_asks_faster_than_it_reads_is_paused(site: Path) -> None:
    big = os.urandom(4 << 20)
    (site / "big.bin").write_bytes(big)
    async with web.WebServer("127.0.0.1", 0, site) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.transport.set_write_buffer_limits(high=1 << 20)
        writer.write(get("/big.bin") * 100)  # 400 MB of answers if all were queued
        async with asyncio.timeout(10):  # until the answers fill the transport's buffer
            while not any(c._writing_paused for c in server._page_connections):
                await asyncio.sleep(0.01)
        (connection,) = server._page_connections
        # At most one answer beyond the transport's high-water mark waits to be sent.
        assert connection.transport.get_write_buffer_size() <= len(big) + (1 << 20)
        for _ in range(100):
            status, _, body = await read_response(reader)
            assert status == 200 and body == big
        writer.close()


async def slow_reader_connection(port: int) -> tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter]:
    """A connection whose kernel buffers hold little, so that the server's side feels how fast
    the client reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=64 * 1024)


async def test_a_slow_reader_gets_whole_files_and_a_stalled_one_is_dropped(site: Path) -> None:
    big = os.urandom(4 << 20)
    (site / "big.bin").write_bytes(big)

    class QuickServer(web.WebServer):
        # Long enough that a loaded machine does not starve the reader for a whole period.
        page_idle_timeout = 1.0
        page_send_timeout = 2.0

        def connection_options(self) -> dict:
            # websockets once cut answers that outlasted its close timeout (default 10 s).
            return {**super().connection_options(), "close_timeout": 0.3}

    async with asyncio.timeout(30), QuickServer("127.0.0.1", 0, site) as server:
        for close in ("Connection: keep-alive", "Connection: close"):
            reader, writer = await slow_reader_connection(server.port)
            writer.write(get("/big.bin", close))
            head = await reader.readuntil(b"\r\n\r\n")
            body = bytearray()
            while len(body) < len(big):  # about 3 s: idle timeouts, and close timeouts
                body += await reader.read(32 * 1024)
                await asyncio.sleep(0.02)
            assert b" 200 " in head.split(b"\r\n")[0] and body == big, close
            writer.close()
        reader, writer = await slow_reader_connection(server.port)
        writer.write(get("/big.bin"))
        async with asyncio.timeout(5):
            while server._page_connections:  # dropped with its megabytes unsent
                await asyncio.sleep(0.05)
        writer.close()


async def test_malformed_paths_get_400_and_every_answer_the_security_headers(
        site: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with web.WebServer("127.0.0.1", 0, site) as server:
        origin = server.page_url.rstrip("/")
        for path in ("/%00", "/index.html%00.js", "/..", "/../secret.txt", "/%2e%2e/secret.txt",
                     "/pyodide/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt", "/./index.html",
                     "/%ff%fe", "/%c0%ae%c0%ae/secret.txt", "/%e2%82", "/a%0a", "/a%5cb",
                     "/" + "a" * 2000, "/" + "%41" * 400):
            status, headers, body = await asyncio.to_thread(fetch, origin + path)
            assert (status, body) == (400, b"Bad request\n"), path
            assert headers["Content-Security-Policy"] == web.CONTENT_SECURITY_POLICY
        for path in ("/", "/pyodide/pyodide.asm.wasm", "/missing", "/health"):
            status, headers, _ = await asyncio.to_thread(fetch, origin + path)
            assert status in (200, 404), path
            policy = headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in policy and "script-src 'self' " in policy
            assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in policy
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["X-Content-Type-Options"] == "nosniff"
    # websockets logs at debug level, with its parser's exception, every connection that ends
    # before a WebSocket request: each page connection does.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                or (r.exc_info and (r.levelno, r.name) != (logging.DEBUG, "websockets.server"))]


async def test_web_serves_until_a_signal_then_closes_every_connection(
        site: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mpc_net")
    task = asyncio.create_task(serve_until_signal(web.WebServer("127.0.0.1", 0, site)))

    def listening() -> logging.LogRecord | None:
        return next((r for r in caplog.records if getattr(r, "event", None) == "listening"),
                    None)

    async with asyncio.timeout(10):
        while listening() is None:
            await asyncio.sleep(0.01)
    record = listening()
    assert record.getMessage() == f"pages on {record.pages} and the room server on {record.url}"
    client = SignalingClient()
    await client.connect(record.url)
    await client.join("lab", 0, 2, identity=key(0))
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(SignalingError) as info:
        async with asyncio.timeout(10):
            await client.recv()
    assert info.value.code == ErrorCode.SERVER_CLOSING
    async with asyncio.timeout(10):
        await task
    assert any("shutting down on SIGTERM" in r.getMessage() for r in caplog.records)
    await client.close()


def test_missing_bundle_is_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser()
    web.add_arguments(parser)
    options = parser.parse_args(["--bundle", str(tmp_path / "nowhere"), "--port", "0"])
    assert web.run(options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python wasm/build.py" in err


def test_without_npm_the_first_use_build_is_one_line_and_exit_code_1(tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing downloaded yet
    monkeypatch.setenv("PATH", str(tmp_path))  # and no npm to download with
    monkeypatch.delenv(web.BUNDLE_VARIABLE, raising=False)
    parser = argparse.ArgumentParser()
    web.add_arguments(parser)
    assert web.run(parser.parse_args(["--port", "0"])) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "building the browser bundle" in err[0], err
    assert "needs npm" in err[1] and "--bundle" in err[1]
    assert not list(tmp_path.glob("mpc-net/bundle-*"))  # no half-built bundle left behind


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """A virtual environment with mpc-net installed from a wheel of this checkout, as `pip
    install .` does: no path back to the checkout. Its dependencies come from the test
    environment's site-packages, without that environment's editable mpc_net."""
    tmp = tmp_path_factory.mktemp("plain")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "mpc_net", source / "mpc_net", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "demos", source / "demos")
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300,
                            check=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp), str(source)])
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         *map(str, tmp.glob("mpc_net-*.whl"))])
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    (Path(purelib.stdout.strip()) / "test-dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")
    where = run([str(python), "-c", "import mpc_net; print(mpc_net.__file__)"], cwd=tmp)
    assert where.stdout.startswith(str(venv)), where.stdout
    return venv


def test_a_plain_install_serves_the_page_it_builds_on_first_use(plain_install, loopback,
                                                                tmp_path) -> None:
    # Downloaded once (as any first use does), then built without network in the namespace.
    mpyc_wheel(), pyodide_tarball()
    (tmp_path / "cache" / "mpc-net").mkdir(parents=True)
    (tmp_path / "cache" / "mpc-net" / "downloads").symlink_to(downloads())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop(web.BUNDLE_VARIABLE, None)
    proc = loopback.popen(str(plain_install / "bin" / "mpc-net"), "web", "--port", "0",
                          cwd=elsewhere, env=env)
    try:
        announced = proc.stderr.readline()
        assert "building the browser bundle of this installation" in announced, announced
        line = proc.stderr.readline()
        match = re.search(r"pages on (http://\S+)/ and the room server", line)
        assert match, f"mpc-net web did not start: {line!r}"
        origin = match.group(1)
        fetch_in = functools.partial(fetch_in_namespace, loopback)
        status, headers, page = fetch_in(origin + "/")
        assert status == 200 and b"<title>mpc-net" in page
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        status, _, manifest = fetch_in(origin + "/bundle.json")
        wheel = json.loads(manifest)["wheels"][0]
        status, _, data = fetch_in(f"{origin}/wheels/{wheel}")
        # The page loads exactly the mpc_net installed here.
        installed = next((plain_install / "lib").glob("python3*/site-packages/mpc_net"))
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in ("web.py", "bundle.py", "browser/page.py"):
                assert archive.read(f"mpc_net/{name}") == (installed / name).read_bytes()
        pyodide = json.loads(manifest)["pyodideDirectory"]
        status, headers, packed = fetch_in(f"{origin}/{pyodide}/pyodide.asm.wasm",
                                           {"Accept-Encoding": "gzip"})
        assert (status, headers["Content-Encoding"]) == (200, "gzip")
        assert headers["Cache-Control"] == web.IMMUTABLE  # named by its digest
        assert gzip.decompress(packed).startswith(b"\0asm")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # The second start finds the bundle in the cache.
    proc = loopback.popen(str(plain_install / "bin" / "mpc-net"), "web", "--port", "0",
                          cwd=elsewhere, env=env)
    try:
        assert "pages on http://" in proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_plain_install_says_bench_needs_a_checkout(plain_install, tmp_path) -> None:
    done = subprocess.run([str(plain_install / "bin" / "mpc-net"), "bench", "--quick"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "checkout" in done.stderr and "git clone" in done.stderr, done.stderr
