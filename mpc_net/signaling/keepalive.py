"""HTTP/1.1 keep-alive in front of websockets' WebSocket upgrade.

websockets answers a plain HTTP request through its `process_request` hook and then closes the
connection, so a page that loads a dozen files opens a dozen connections, a TCP handshake each
(and a TLS one each behind a proxy that does not pool). `KeepAliveConnection` reads plain
requests itself, answers them from the same hook one after another on one connection, and hands
the first WebSocket upgrade request, with everything after it, to websockets unchanged.

`parse_head` is the sans-I/O part: bytes in, a request (or not yet) out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

# A request head beyond this is refused: the bundle's paths and a browser's headers are far
# smaller, and the bound keeps a client from growing our buffer.
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
# As nginx's keepalive_requests: a connection is closed after this many answers, so that no
# client holds one forever.
MAX_REQUESTS = 1000
# An answer goes to the transport this much at a time, while it is not paused: what it has not
# taken stays here, where the idle check sees it. Under TLS, asyncio's transport counts only what
# it has not encrypted yet: one large write would pass at once to the TCP transport below,
# uncounted, and a connection still sending megabytes would look idle and be closed.
WRITE_CHUNK = 64 * 1024
TOKEN_CHARACTERS = frozenset("!#$%&'*+-.^_`|~0123456789"
                             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

Responder = Callable[[ServerConnection, Request], Response | None]


class BadRequest(ValueError):
    """A request head that cannot be answered; `status` says which error to send."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_head(buffer: bytes | bytearray) -> tuple[Request, int] | None:
    """The first request of `buffer` and the bytes its head takes, None while it is incomplete.

    Only heads: a request that announces a body is refused, since nothing here takes one.
    """
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        return None
    request_line, *lines = bytes(buffer[:end]).decode("iso-8859-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= TOKEN_CHARACTERS:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"unsupported {version!r}")
    if not target.startswith("/") or not target.isprintable():
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request target")
    if len(lines) > MAX_HEADERS:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers")
    headers = Headers()
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= TOKEN_CHARACTERS:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header")
        headers[name] = value.strip(" \t")
    if "Transfer-Encoding" in headers or headers.get("Content-Length", "0").strip() != "0":
        raise BadRequest(HTTPStatus.BAD_REQUEST, "request bodies are not accepted")
    return Request(target, headers, method, version), end + 4


def asks_for_websocket(request: Request) -> bool:
    values = ",".join(request.headers.get_all("Upgrade")).split(",")
    return any(value.strip().lower() == "websocket" for value in values)


def keeps_alive(request: Request) -> bool:
    """HTTP/1.1 keeps the connection unless the client says close; HTTP/1.0 clients get
    one answer, as most of them expect."""
    tokens = {t.strip().lower() for t in ",".join(request.headers.get_all("Connection"))
              .split(",")}
    return request.protocol == "HTTP/1.1" and "close" not in tokens


class KeepAliveConnection(ServerConnection):
    """A websockets server connection that answers plain HTTP requests on one connection
    (through `respond`, the same shape as websockets' `process_request`) until one asks for
    a WebSocket. Its own answers (malformed requests, methods other than GET and HEAD) carry
    `headers`.

    Between requests it waits at most `idle_timeout`; a request head must arrive within that
    time, so half-sent requests cannot hold connections. An answer may take as long as the
    client reads it, but a client that takes nothing of it for `send_timeout` is dropped (as
    nginx's send_timeout). Once the upgrade request has come, the websocket handshake gets
    `open_timeout`, as on websockets' own connections.
    """

    def __init__(self, protocol: ServerProtocol, server: Server, *, respond: Responder,
                 headers: Mapping[str, str], idle_timeout: float, send_timeout: float,
                 open_timeout: float, registry: set[KeepAliveConnection],
                 **options: Any) -> None:
        super().__init__(protocol, server, **options)
        self._respond = respond
        self._headers = headers  # for the answers this class makes itself
        self._idle_timeout = idle_timeout
        self._send_timeout = send_timeout
        self._open_timeout = open_timeout
        self._registry = registry
        self._websocket = False  # whether websockets reads and writes the connection now
        self._pending: bytearray | None = bytearray()  # None once no more requests are read
        self._answered = 0
        self._writing_paused = False
        self._upgrade_requested: asyncio.Future[None] = self.loop.create_future()
        self._idle: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes our answers had waiting at the last check
        self._outgoing = memoryview(b"")  # what of the answer the transport has not taken yet
        self._close_after = False  # close once it has
        self._sent_at = 0.0  # loop time the client last took some of them

    # -- asyncio protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._registry.add(self)
        self._wait_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave_http()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._websocket:
            super().data_received(data)
        elif self._pending is not None:
            self._pending += data
            self._answer_pending()

    def eof_received(self) -> bool | None:
        if self._websocket:
            return super().eof_received()
        return None  # the client is done asking; the transport closes after what it owes

    def pause_writing(self) -> None:
        super().pause_writing()
        if not self._websocket:
            # A client that asks faster than it reads must not grow our write buffer.
            self._writing_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._writing_paused and not self._websocket:
            self._writing_paused = False
            self.transport.resume_reading()
            self._write_more()
            self._answer_pending()

    # -- websockets ----------------------------------------------------------------------------

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.wait([self._upgrade_requested, self.connection_lost_waiter],
                           return_when=asyncio.FIRST_COMPLETED)
        async with asyncio.timeout(self._open_timeout):
            await super().handshake(*args, **kwargs)

    def close_idle(self) -> None:
        """End the connection if it is still plain HTTP, after what it is sending."""
        if not self._websocket:
            self._pending = None
            self._close_after = True
            self._write_more()

    # -- HTTP ----------------------------------------------------------------------------------

    def _answer_pending(self) -> None:
        while self._pending is not None and not self._writing_paused and not self._outgoing:
            try:
                parsed = parse_head(self._pending)
            except BadRequest as exc:
                self._send(self._refusal(exc.status, f"{exc}\n"), close=True, head_only=False)
                return
            if parsed is None:
                return
            request, size = parsed
            if asks_for_websocket(request):
                data = bytes(self._pending)
                self._leave_http()
                self._websocket = True
                self._upgrade_requested.set_result(None)
                super().data_received(data)
                return
            del self._pending[:size]
            self._answer(request)

    def _answer(self, request: Request) -> None:
        if request.method not in ("GET", "HEAD"):
            response = self._refusal(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed\n")
            response.headers["Allow"] = "GET, HEAD"
        else:
            response = self._respond(self, request) or self._refusal(HTTPStatus.NOT_FOUND,
                                                                     "Not found\n")
        self._answered += 1
        self._send(response, close=not keeps_alive(request) or self._answered >= MAX_REQUESTS,
                   head_only=request.method == "HEAD")

    def _refusal(self, status: HTTPStatus, text: str) -> Response:
        response = self.respond(status, text)
        for name, value in self._headers.items():
            response.headers[name] = value
        return response

    def _send(self, response: Response, *, close: bool, head_only: bool) -> None:
        del response.headers["Connection"]  # websockets' responses say close
        if close:
            response.headers["Connection"] = "close"
        body = b"" if head_only else response.body
        self._outgoing = memoryview(Response(response.status_code, response.reason_phrase,
                                             response.headers, body).serialize())
        if close:
            self._pending = None  # read nothing more, but watch the sending as before
            self._close_after = True
        self._write_more()
        self._unsent = self._unsent_bytes()
        self._sent_at = self.loop.time()
        self._wait_idle()

    def _write_more(self) -> None:
        while self._outgoing and not self._writing_paused:
            self.transport.write(self._outgoing[:WRITE_CHUNK])
            self._outgoing = self._outgoing[WRITE_CHUNK:]
        if not self._outgoing and self._close_after:
            self.transport.close()

    def _unsent_bytes(self) -> int:
        return len(self._outgoing) + self.transport.get_write_buffer_size()

    def _wait_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(self._idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        """Close a connection that sends nothing and is asked nothing; drop one whose client
        took nothing of an answer for `send_timeout`. A slow client that reads goes on: no
        deadline for a whole answer, since a page's largest file takes seconds on a slow line,
        and a browser reads a file only as fast as it compiles it."""
        unsent = self._unsent_bytes()
        if not unsent:
            self.transport.close()
            return
        if unsent < self._unsent:
            self._unsent, self._sent_at = unsent, self.loop.time()
        if self.loop.time() - self._sent_at >= self._send_timeout:
            self.transport.abort()
        else:
            self._wait_idle()

    def _leave_http(self) -> None:
        """No more plain requests: the connection is websockets' now, or gone."""
        self._pending = None
        self._registry.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
