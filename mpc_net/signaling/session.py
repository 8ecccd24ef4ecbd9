"""The client side of the signaling protocol over any message connection.

A client (websockets natively, the browser's WebSocket under Pyodide) supplies `_send_text`
and `_receive_text`; joining a room, relaying signals and checking every message the server
sends are the same for all of them and live here, on top of the shared `protocol` module.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol, TypeVar

from ..auth import Roster, encode_public_key
from ..text import printable
from . import protocol
from .protocol import MAX_MESSAGE_BYTES, VERSION, ErrorCode, ProtocolError, SignalingError

logger = logging.getLogger("mpc_net.signaling")
Reply = TypeVar("Reply", protocol.Challenge, protocol.Joined)


class Signer(Protocol):
    """A party's identity key (a key file natively, WebCrypto in browsers)."""

    public_key: bytes

    async def sign(self, data: bytes) -> bytes: ...


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
        identity: Signer,
        roster: Roster | None = None,
        token: str | None = None,
    ) -> protocol.Joined:
        """Take seat `party` of a room and return the server's `joined` message.

        The seat is proven by signing the server's fresh challenge with `identity`; with a
        roster, the room is the roster's and the key must be its key of `party`. Without one the
        seats are open (--trust-room-server)."""
        session = roster.session_id if roster is not None else None
        try:
            protocol.check_seat(room, party, parties)
        except ProtocolError as exc:
            raise SignalingError(exc.code, exc.message) from None
        await self._send_text(protocol.encode(protocol.Hello()))
        try:
            challenge = (await self._reply(protocol.Challenge)).challenge
        except SignalingError as exc:
            if exc.code != ErrorCode.BAD_MESSAGE:
                raise
            # A room server of an older release does not know `hello`.
            raise SignalingError(ErrorCode.UNSUPPORTED_VERSION, f"room server {self.url} does "
                                 f"not speak signaling protocol version {VERSION} (it said: "
                                 f"{exc.message}); it needs the same mpc-net release as the "
                                 "parties") from None
        statement = protocol.seat_statement(challenge, room, party, parties, session)
        try:
            request = protocol.Join(
                room, party, parties, key=encode_public_key(identity.public_key),
                proof=await identity.sign(statement),
                roster=json.loads(roster.to_json()) if roster is not None else None, token=token)
        except ProtocolError as exc:
            raise SignalingError(exc.code, exc.message) from None
        await self._send_text(protocol.encode(request))
        return await self._reply(protocol.Joined)

    async def _reply(self, kind: type[Reply]) -> Reply:
        """The server's next message of `kind`; raise SignalingError for an error reply."""
        while True:
            msg = await self.recv()
            if isinstance(msg, kind):
                return msg
            if isinstance(msg, protocol.Error):
                raise SignalingError(msg.code, msg.message)
            # Presence and signals that were under way from a room this client left.
            logger.debug("dropping stale %s message while joining", msg.kind)

    async def send_signal(self, to: int, payload: protocol.SignalPayload) -> None:
        try:
            msg = protocol.Signal(to, protocol.signal_data(payload))
            msg.check_size()
        except ProtocolError as exc:
            raise SignalingError(exc.code, exc.message) from None
        await self._send_text(protocol.encode(msg))

    async def leave(self) -> None:
        await self._send_text(protocol.encode(protocol.Leave()))

    async def recv(self) -> protocol.ServerMessage:
        """Next validated server message: peer-joined, peer-left, signal or error; raise
        SignalingError(ErrorCode.SERVER_CLOSING) when the server announces its shutdown."""
        msg = self._parse(await self._receive_text())
        if isinstance(msg, protocol.Closing):
            raise SignalingError(ErrorCode.SERVER_CLOSING, f"room server {self.url}: {msg.message}")
        return msg

    def _parse(self, raw: str | bytes) -> protocol.ServerMessage:
        try:
            msg = protocol.parse_server_message(raw, max_bytes=self._max_bytes)
        except ProtocolError as exc:
            raise SignalingError(
                exc.code, f"invalid message from room server {self.url}: {exc.message}"
            ) from exc
        # The server's own words end up on the user's terminal.
        if isinstance(msg, protocol.Error):
            return protocol.Error(printable(msg.code), printable(msg.message))
        if isinstance(msg, protocol.Closing):
            return protocol.Closing(printable(msg.message))
        return msg
