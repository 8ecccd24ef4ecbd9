"""Browser signaling client: the page's WebSocket under the shared signaling session."""

from __future__ import annotations

import asyncio

from js import WebSocket
from pyodide.ffi import JsException

from ..signaling.protocol import ErrorCode, SignalingError
from ..signaling.session import SignalingSession
from .jsffi import Handlers

OPEN = 1  # WebSocket.readyState


class BrowserSignalingClient(SignalingSession):
    """The mesh's signaling client in a browser (same methods as the native client)."""

    def __init__(self, *, open_timeout: float = 10, close_timeout: float = 2) -> None:
        super().__init__()
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._ws = None
        self._handlers = Handlers()
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()  # None: the socket closed
        self._opened: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[str] | None = None

    async def connect(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        self._opened = loop.create_future()
        self._closed = loop.create_future()
        try:
            self._ws = WebSocket.new(url)
        except JsException as exc:  # a SyntaxError for a malformed URL
            raise SignalingError(ErrorCode.CONNECT_FAILED, f"cannot connect to room server {url}: "
                                 f"{exc.message}") from None
        self._handlers.on(self._ws, "open", lambda _: _settle(self._opened, None))
        self._handlers.on(self._ws, "message", lambda e: self._inbox.put_nowait(str(e.data)))
        self._handlers.on(self._ws, "close", self._on_close)
        try:
            await asyncio.wait_for(asyncio.shield(self._opened), self._open_timeout)
        except (TimeoutError, ConnectionError) as exc:
            self._opened.cancel()  # settled or given up: a late close event must not set it
            await self.close()
            # Browsers do not say why a WebSocket failed (on purpose), so neither can we.
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise SignalingError(ErrorCode.CONNECT_FAILED,
                                 f"cannot connect to room server {url}: {reason}") from None
        self.url = url

    async def close(self) -> None:
        if self._ws is None:
            return
        self._ws.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), self._close_timeout)
        except TimeoutError:
            pass  # the browser finishes the closing handshake by itself
        self._handlers.clear()
        self._ws = None

    async def _send_text(self, text: str) -> None:
        if self._ws is None or self._ws.readyState != OPEN:
            raise self._lost()
        self._ws.send(text)

    async def _receive_text(self) -> str:
        if self._ws is None:
            raise RuntimeError("BrowserSignalingClient.connect() was not called")
        text = await self._inbox.get()
        if text is None:
            self._inbox.put_nowait(None)  # every later read fails the same way
            raise self._lost()
        return text

    def _on_close(self, event) -> None:
        reason = f"code {event.code}" + (f", {event.reason}" if event.reason else "")
        _settle(self._closed, reason)
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("refused, or not a room server"))
        self._inbox.put_nowait(None)

    def _lost(self) -> SignalingError:
        reason = self._closed.result() if self._closed and self._closed.done() else "closed"
        return SignalingError(ErrorCode.CONNECTION_CLOSED,
                              f"connection to room server {self.url} closed ({reason})")


def _settle(future: asyncio.Future, value: object) -> None:
    if not future.done():
        future.set_result(value)
