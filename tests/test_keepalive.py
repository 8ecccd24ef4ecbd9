"""The request-head parser of the page server's keep-alive connections (sans-I/O)."""

from __future__ import annotations

from http import HTTPStatus

import pytest

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
