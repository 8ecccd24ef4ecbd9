"""The page server's keep-alive connections: the request-head parser (sans-I/O), and a slow
reader over HTTP and HTTPS."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from http import HTTPStatus
from pathlib import Path

import pytest
from certificates import make_server_certificate

from mpc_net import web
from mpc_net.signaling.keepalive import (
    MAX_HEAD_BYTES,
    BadRequest,
    asks_for_websocket,
    keeps_alive,
    parse_head,
)


def test_a_head_is_parsed_once_complete_and_the_next_one_stays_in_the_buffer() -> None:
    first = b"GET /pyodide/x.wasm?v=1 HTTP/1.1\r\nHost: a\r\nAccept-Encoding:  gzip \r\n\r\n"
    second = b"HEAD / HTTP/1.0\r\n\r\n"
    for cut in range(len(first)):
        assert parse_head(first[:cut]) is None
    request, size = parse_head(first + second)
    assert (request.method, request.path, request.protocol) == ("GET", "/pyodide/x.wasm?v=1",
                                                                "HTTP/1.1")
    assert request.headers["accept-encoding"] == "gzip" and size == len(first)
    request, size = parse_head((first + second)[size:])
    assert (request.method, request.protocol, size) == ("HEAD", "HTTP/1.0", len(second))


@pytest.mark.parametrize("head, status", [
    (b"GET /\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET  / HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"G(T / HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET http://elsewhere/ HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET /a\x7fb HTTP/1.1\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET / HTTP/2.0\r\n\r\n", HTTPStatus.HTTP_VERSION_NOT_SUPPORTED),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", HTTPStatus.BAD_REQUEST),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPStatus.BAD_REQUEST),
    (b"GET / HTTP/1.1\r\n" + b"A: b\r\n" * 101 + b"\r\n",
     HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE),
    (b"GET / HTTP/1.1\r\nA: " + b"b" * MAX_HEAD_BYTES, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE),
])
def test_heads_that_cannot_be_answered_say_which_error(head: bytes, status: HTTPStatus) -> None:
    with pytest.raises(BadRequest) as info:
        parse_head(head)
    assert info.value.status == status


def test_upgrade_and_keep_alive_are_read_from_their_headers() -> None:
    def parsed(head: bytes):
        return parse_head(head + b"\r\n\r\n")[0]

    upgrade = parsed(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c, WebSocket")
    assert asks_for_websocket(upgrade) and keeps_alive(upgrade)
    assert not asks_for_websocket(parsed(b"GET / HTTP/1.1\r\nUpgrade: websocketx"))
    assert not keeps_alive(parsed(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close"))
    assert not keeps_alive(parsed(b"GET / HTTP/1.0\r\nConnection: keep-alive"))


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_a_connection_sending_a_large_answer_to_a_slow_reader_is_not_idle(
        tmp_path: Path, tls: bool) -> None:
    """A client that reads a large answer for several idle timeouts keeps its connection open
    and gets all of it. Over TLS, asyncio's transport counts only what it has not encrypted yet:
    an answer written at once looked sent, the connection idle, and it was closed with megabytes
    still to send (cut off once the TLS shutdown timed out)."""
    big = os.urandom(16 << 20)  # well beyond the kernel's send buffer (at most 4 MiB)
    (tmp_path / "big.bin").write_bytes(big)
    certificate = make_server_certificate(tmp_path, "127.0.0.1")
    server_tls = client_tls = None
    if tls:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(certificate.certificate, certificate.key)
        client_tls = ssl.create_default_context(cafile=certificate.authority)

    class QuickServer(web.WebServer):
        page_idle_timeout = 0.3

    async with asyncio.timeout(60), QuickServer("127.0.0.1", 0, tmp_path,
                                                tls=server_tls) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(
            sock=sock, limit=64 * 1024, ssl=client_tls,
            server_hostname="127.0.0.1" if tls else None)
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        body = bytearray()
        closing = []
        while len(body) < len(big):  # about 3 s: several idle timeouts
            body += await reader.read(64 * 1024)
            if len(body) < len(big) // 2:  # megabytes still to send
                closing += [c.transport.is_closing() for c in server._page_connections]
            await asyncio.sleep(0.01)
        assert b" 200 " in head.split(b"\r\n")[0] and body == big
        assert closing and not any(closing)
        writer.close()
