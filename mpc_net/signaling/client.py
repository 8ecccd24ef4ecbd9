"""Native signaling client: the websockets I/O edge around the shared protocol module."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    InvalidURI,
    WebSocketException,
)

from . import protocol
from .protocol import MAX_MESSAGE_BYTES, SERVER_CLOSING, ProtocolError, SignalingError

logger = logging.getLogger("mpc_net.signaling")

# Codes of failures that happen on this side; the server's codes are protocol.ErrorCode, and
# SERVER_CLOSING (re-exported here) reports the server's `closing` notice.
CONNECT_FAILED = "connect-failed"
CONNECTION_CLOSED = "connection-closed"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidURI):
        return f"not a valid URI: {exc.msg}"  # its own text repeats the URL
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SignalingClient:
    """One party's connection to a room server.

    One task should read (recv or async iteration) at a time; join reads its reply itself.
    Every failure surfaces as SignalingError. When the room server shuts down it sends
    `closing` and then closes the connection: recv (and so join) raises SignalingError with code
    SERVER_CLOSING for that notice, as the connection is about to end, and iteration ends there
    as at any clean close.
    """

    def __init__(
        self, *, max_message_bytes: int = MAX_MESSAGE_BYTES, open_timeout: float = 10
    ) -> None:
        self.url = ""
        self._max_bytes = max_message_bytes
        self._open_timeout = open_timeout
        self._ws: ClientConnection | None = None

    async def connect(self, url: str) -> None:
        try:
            self._ws = await connect(
                url, max_size=4 * self._max_bytes, open_timeout=self._open_timeout
            )
        except (OSError, TimeoutError, ValueError, WebSocketException) as exc:
            raise SignalingError(
                CONNECT_FAILED, f"cannot connect to room server {url}: {_reason(exc)}"
            ) from exc
        self.url = url

    async def join(
        self,
        room: str,
        party: int,
        parties: int,
        *,
        key: str | None = None,
        token: str | None = None,
    ) -> dict:
        """Join a room and return the server's `joined` message."""
        try:
            request = protocol.join(room, party, parties, key=key, token=token)
        except ProtocolError as exc:
            raise SignalingError(exc.code, exc.message) from None
        await self._send(request)
        while True:
            msg = await self.recv()
            if msg["type"] == "joined":
                return msg
            if msg["type"] == "error":
                raise SignalingError(msg["code"], msg["message"])
            # Presence and signals that were under way from a room this client left.
            logger.debug("dropping stale %s message while joining", msg["type"])

    async def send_signal(self, to: int, data: dict) -> None:
        try:
            msg = protocol.signal(to, data)
        except ProtocolError as exc:
            raise SignalingError(exc.code, exc.message) from None
        await self._send(msg)

    async def leave(self) -> None:
        await self._send(protocol.leave())

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

    async def recv(self) -> dict:
        """Next validated server message: peer-joined, peer-left, signal or error; raise
        SignalingError(SERVER_CLOSING) when the server announces its shutdown."""
        ws = self._connection()
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc
        msg = self._parse(raw)
        if msg["type"] == "closing":
            raise SignalingError(SERVER_CLOSING, f"room server {self.url}: {msg['message']}")
        return msg

    async def __aiter__(self) -> AsyncIterator[dict]:
        """Server messages until the server closes the connection cleanly or announces that it
        will (`closing`)."""
        ws = self._connection()
        try:
            async for raw in ws:
                msg = self._parse(raw)
                if msg["type"] == "closing":
                    return
                yield msg
        except ConnectionClosedError as exc:
            raise self._closed(exc) from exc

    def _connection(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("SignalingClient.connect() was not called")
        return self._ws

    async def _send(self, msg: dict) -> None:
        try:
            await self._connection().send(protocol.encode(msg))
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc

    def _parse(self, raw: str | bytes) -> dict:
        try:
            return protocol.parse_server_message(raw, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            raise SignalingError(
                exc.code, f"invalid message from room server {self.url}: {exc.message}"
            ) from exc

    def _closed(self, exc: ConnectionClosed) -> SignalingError:
        return SignalingError(
            CONNECTION_CLOSED, f"connection to room server {self.url} closed: {exc}"
        )
