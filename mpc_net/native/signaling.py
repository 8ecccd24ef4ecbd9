"""Native signaling client: the websockets I/O edge around the shared protocol module."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Literal

from ..rtc.lean import lean_imports

with lean_imports():
    from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    InvalidURI,
    WebSocketException,
)

from ..signaling.protocol import (
    MAX_MESSAGE_BYTES,
    Closing,
    ErrorCode,
    ServerMessage,
    SignalingError,
)
from ..signaling.session import SignalingSession
from ..text import printable

__all__ = ["SignalingClient", "SignalingError"]


def _proxy() -> Literal[True] | None:
    """websockets' own proxy lookup (True) where a proxy may be configured, else None: no proxy.

    The lookup is the standard library's urllib.request (with http.client and email, about 15 ms
    to import), which outside macOS and Windows reads only the environment's *_proxy variables,
    as here: without one it would find no proxy, and need not load.
    """
    if sys.platform == "darwin" or os.name == "nt":  # system settings too
        return True
    names = (name.lower() for name, value in os.environ.items() if value)
    return True if any(name.endswith("_proxy") for name in names) else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidURI):
        return f"not a valid URI: {exc.msg}"  # its own text repeats the URL
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return printable(text.splitlines()[0]) if text else type(exc).__name__


class SignalingClient(SignalingSession):
    """One party's connection to a room server.

    One task should read (recv or async iteration) at a time; join reads its reply itself.
    Every failure surfaces as SignalingError. When the room server shuts down it sends
    `closing` and then closes the connection: recv (and so join) raises SignalingError with code
    ErrorCode.SERVER_CLOSING for that notice, as the connection is about to end, and iteration
    ends there as at any clean close.
    """

    def __init__(
        self, *, max_message_bytes: int = MAX_MESSAGE_BYTES, open_timeout: float = 10
    ) -> None:
        super().__init__(max_message_bytes=max_message_bytes)
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None

    async def connect(self, url: str) -> None:
        try:
            self._ws = await connect(
                url, max_size=4 * self._max_bytes, open_timeout=self._open_timeout,
                proxy=_proxy(),
            )
        # ImportError: a SOCKS proxy is configured, and python-socks is not installed.
        except (OSError, TimeoutError, ValueError, WebSocketException, ImportError) as exc:
            raise SignalingError(
                ErrorCode.CONNECT_FAILED, f"cannot connect to room server {url}: {_reason(exc)}"
            ) from exc
        self.url = url

    async def close(self) -> None:
        if self._ws is None:
            return
        closing = asyncio.create_task(self._ws.close())
        try:
            # Unread messages pause websockets' reading, so the server's close frame would only
            # be seen after close_timeout; discarding them lets the handshake finish at once.
            async for _ in self._ws:
                pass
        except (ConnectionClosed, ConcurrencyError):
            pass  # closed anyway, or another task is reading and drains instead
        await closing

    async def _receive_text(self) -> str | bytes:
        try:
            return await self._connection().recv()
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc

    async def __aiter__(self) -> AsyncIterator[ServerMessage]:
        """Server messages until the server closes the connection cleanly or announces that it
        will (`closing`)."""
        ws = self._connection()
        try:
            async for raw in ws:
                msg = self._parse(raw)
                if isinstance(msg, Closing):
                    return
                yield msg
        except ConnectionClosedError as exc:
            raise self._closed(exc) from exc

    def _connection(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("SignalingClient.connect() was not called")
        return self._ws

    async def _send_text(self, text: str) -> None:
        try:
            await self._connection().send(text)
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc

    def _closed(self, exc: ConnectionClosed) -> SignalingError:
        return SignalingError(  # the close reason is the server's text
            ErrorCode.CONNECTION_CLOSED,
            f"connection to room server {self.url} closed: {printable(str(exc))}")
