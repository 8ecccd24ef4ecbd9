"""Room server: the websockets I/O edge around the sans-I/O Rooms state."""

from __future__ import annotations

import asyncio
import logging
import signal
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from ..ice import TurnRest
from . import protocol
from .protocol import MAX_MESSAGE_BYTES, ProtocolError
from .rooms import Outgoing, Rooms

logger = logging.getLogger("mpc_net.signaling")

# A client that stops reading while its peers keep signaling would make the server buffer
# without bound; with this many messages waiting for it, it is disconnected instead.
MAX_QUEUED_MESSAGES = 256


class _Client:
    """One connection: the handle that Rooms keys by, with its own ordered outbox.

    Sends are queued rather than awaited so that a peer that reads slowly never stalls the
    connection whose message caused the send.
    """

    def __init__(self, ws: ServerConnection) -> None:
        self._ws = ws
        self._outbox: asyncio.Queue[str] = asyncio.Queue(MAX_QUEUED_MESSAGES)
        self._writer = asyncio.create_task(self._write())
        host, port = ws.remote_address[:2]
        self._name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self) -> str:
        return self._name

    def send(self, msg: dict) -> None:
        try:
            self._outbox.put_nowait(protocol.encode(msg))
        except asyncio.QueueFull:
            if not self._ws.transport.is_closing():
                logger.info("%s: not reading its messages, disconnecting", self)
                self._ws.transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                await self._ws.send(await self._outbox.get())
        except ConnectionClosed:
            pass  # the reading side notices too and cleans up

    async def stop(self) -> None:
        self._writer.cancel()
        # wait() rather than await: the writer's CancelledError is expected, not ours to raise.
        await asyncio.wait([self._writer])


class RoomServer:
    """Signaling server for rooms of parties; relays SDP and presence, never MPC data."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        ice_servers: list[dict] | None = None,
        turn: TurnRest | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.rooms = Rooms(ice_servers, turn)
        self._requested_port = port
        self._max_bytes = max_message_bytes
        self._server: Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("room server is not running")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        # websockets closes the connection on a message above max_size; a margin above our own
        # limit lets a slightly oversized message get a readable too-large error instead.
        self._server = await serve(
            self._serve, self.host, self._requested_port, max_size=4 * self._max_bytes
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RoomServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        logger.debug("%s: connected", client)
        try:
            async for raw in ws:
                self._deliver(self._receive(client, raw))
                # websockets hands out queued messages without yielding; without this, a burst
                # from one client would fill its peers' outboxes before their writers ever ran.
                await asyncio.sleep(0)
        except ConnectionClosedError as exc:
            # Vanishing clients are routine; a traceback in the log would only alarm.
            logger.debug("%s: connection lost: %s", client, exc)
        finally:
            self._deliver(self.rooms.disconnect(client))
            await client.stop()
            logger.debug("%s: disconnected", client)

    def _receive(self, client: _Client, raw: str | bytes) -> Outgoing:
        try:
            msg = protocol.parse_client_message(raw, max_bytes=self._max_bytes)
            return self.rooms.handle(client, msg)
        except ProtocolError as exc:
            # The connection stays open so that the client can correct itself, e.g. rejoin.
            logger.debug("%s: rejected: %s", client, exc)
            return [(client, protocol.error(exc.code, exc.message))]

    @staticmethod
    def _deliver(outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            client.send(msg)


async def serve_until_signal(host: str, port: int, **kwargs: Any) -> None:
    """Run a RoomServer until SIGINT or SIGTERM, then close it cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with RoomServer(host, port, **kwargs) as server:
            logger.info("room server listening on %s", server.url)
            await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
