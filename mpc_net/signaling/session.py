"""The client side of the signaling protocol over any message connection.

A client (websockets natively, the browser's WebSocket under Pyodide) supplies `_send_text`
and `_receive_text`; joining a room, relaying signals and checking every message the server
sends are the same for all of them and live here, on top of the shared `protocol` module.
"""

from __future__ import annotations

import logging

from ..text import printable
from . import protocol
from .protocol import MAX_MESSAGE_BYTES, SERVER_CLOSING, ProtocolError, SignalingError

logger = logging.getLogger("mpc_net.signaling")

# Codes of failures that happen on the client's side; the server's codes are protocol.ErrorCode.
CONNECT_FAILED = "connect-failed"
CONNECTION_CLOSED = "connection-closed"


class SignalingSession:
    """One party's conversation with a room server; every failure is a SignalingError."""

    def __init__(self, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.url = ""
        self._max_bytes = max_message_bytes

    async def _send_text(self, text: str) -> None:
        raise NotImplementedError

    async def _receive_text(self) -> str | bytes:
        raise NotImplementedError

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
        await self._send_text(protocol.encode(request))
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
        await self._send_text(protocol.encode(msg))

    async def leave(self) -> None:
        await self._send_text(protocol.encode(protocol.leave()))

    async def recv(self) -> dict:
        """Next validated server message: peer-joined, peer-left, signal or error; raise
        SignalingError(SERVER_CLOSING) when the server announces its shutdown."""
        msg = self._parse(await self._receive_text())
        if msg["type"] == "closing":
            raise SignalingError(SERVER_CLOSING, f"room server {self.url}: {msg['message']}")
        return msg

    def _parse(self, raw: str | bytes) -> dict:
        try:
            msg = protocol.parse_server_message(raw, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            raise SignalingError(
                exc.code, f"invalid message from room server {self.url}: {exc.message}"
            ) from exc
        # The server's own words end up on the user's terminal.
        if msg["type"] in ("error", "closing"):
            for field in msg.keys() & {"code", "message"}:
                msg[field] = printable(msg[field])
        return msg
