"""Room server: the websockets I/O edge around the sans-I/O Rooms state, with its limits.

A client that crosses a limit (limits.py) gets an `error` first, so that people see why; where
the limit protects the server rather than the message, the connection is closed next.
"""

from __future__ import annotations

import asyncio
import http
import json
import signal
import ssl
import time
from collections import Counter
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ..ed25519 import check_signature
from ..ice import TurnRest
from . import protocol
from .cluster import Cluster
from .keepalive import asks_for_websocket
from .limits import JoinTokens, Limits, Verdict
from .logs import event, logger
from .outbox import Client
from .protocol import ErrorCode, ProtocolError
from .rooms import Outgoing, Rooms

# Frames websockets buffers from one client before it stops reading its socket. The server
# handles each message at once, so a few suffice, and they bound what a fast sender costs.
RECEIVE_QUEUE_FRAMES = 4
SHUTDOWN_MESSAGE = "shutting down; connect again later"
# A connection must finish its websocket handshake this soon, so half-open ones (which no
# per-address count sees yet) cannot pile up.
OPEN_TIMEOUT = 5.0


class RoomServer:
    """Signaling server for rooms of parties; relays SDP and presence, never MPC data."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *,
                 ice_servers: list[dict] | None = None, turn: TurnRest | None = None,
                 limits: Limits | None = None, open_relay: bool = False,
                 tls: ssl.SSLContext | None = None, redis: str | None = None) -> None:
        self.host = host
        self.tls = tls
        self.limits = limits or Limits()
        if turn is not None and not self.limits.join_tokens and not open_relay:
            # Credentials then go to anyone who can take a seat, and anyone can in open rooms
            # or under a roster of their own making.
            raise ValueError("TURN credentials without join tokens would make the TURN server "
                             "an open relay: require a join token, or accept an open relay "
                             "explicitly")
        self.open_relay = turn is not None and open_relay
        self.rooms = Rooms(check_signature, ice_servers, turn, max_rooms=self.limits.max_rooms)
        # With Redis, the rooms this process owns; the Cluster routes the others' messages.
        self.cluster = Cluster(redis, self.rooms, clock=time.monotonic,
                               pending_joins=self.limits.max_pending_joins) if redis else None
        self.table: Rooms | Cluster = self.cluster or self.rooms
        self._renewal: asyncio.Task | None = None
        self._requested_port = port
        self._server: Server | None = None
        self._clients: set[Client] = set()
        self._addresses: Counter[str] = Counter()  # admitted connections per client address
        self._closing = False
        self._tokens = JoinTokens(self.limits.join_tokens)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("room server is not running")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}"

    def stats(self) -> dict[str, int | bool]:
        redis = {} if self.cluster is None else {"redis": self.cluster.reachable}
        return {"rooms": len(self.rooms.rooms), "connections": len(self._clients),
                "parties": self.table.party_count, **redis}

    async def start(self) -> None:
        limits = self.limits
        # Browsers always send Origin; other clients send none, which stays allowed.
        origins = [*limits.allowed_origins, None] if limits.allowed_origins else None
        # websockets closes the connection on a message above max_size; a margin above our own
        # limit lets a slightly oversized message get a readable too-large error instead.
        self._server = await serve(
            self._serve,
            self.host,
            self._requested_port,
            max_size=2 * limits.max_message_bytes,
            max_queue=RECEIVE_QUEUE_FRAMES,
            origins=origins,
            process_request=self.process_request,
            **self.connection_options(),
            **({"ssl": self.tls, "ssl_handshake_timeout": OPEN_TIMEOUT} if self.tls else {}),
        )
        if self.open_relay:
            logger.warning("WARNING: TURN credentials go to every party that takes a seat, "
                           "without a join token: the TURN server is an open relay",
                           extra=event("open-relay"))
        if self.cluster is not None:
            await self.cluster.start()
        if self.rooms.turn is not None:
            self._renewal = asyncio.create_task(self._renew(self.rooms.turn.ttl / 2))

    def connection_options(self) -> dict[str, Any]:
        """websockets' `serve` options for each connection; a subclass's way to change them."""
        return {"open_timeout": OPEN_TIMEOUT}

    async def close(self, message: str = SHUTDOWN_MESSAGE) -> None:
        """Tell every client `closing`, close their connections (1001), and stop."""
        if self._server is None:
            return
        self._closing = True
        if self._renewal is not None:
            self._renewal.cancel()
        # Stop listening at once; websockets answers handshakes under way with 503.
        self._server.server.close()
        notice = protocol.Closing(message)
        clients = list(self._clients)
        for client in clients:
            client.close(CloseCode.GOING_AWAY, "server shutting down", notice)
        logger.info("room server closing %d connections", len(clients),
                    extra=event("closing", connections=len(clients)))
        await asyncio.gather(*(client.closed() for client in clients))
        if self.cluster is not None:
            await self.cluster.close()
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> RoomServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def announce(self) -> None:
        """Log where the server listens: the first line that people and scripts look for."""
        logger.info("room server listening on %s", self.url,
                    extra=event("listening", url=self.url))

    # -- HTTP ----------------------------------------------------------------------------------

    def handle_http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer GET /health, or return None for any other path so that another server can
        chain this one into its own process_request. A process that cannot reach Redis (or does
        not listen on its channel yet) cannot seat anyone: it answers 503, to handshakes too, so
        that proxies and parties try the next process."""
        down = self.cluster is not None and not self.cluster.reachable
        status = http.HTTPStatus.SERVICE_UNAVAILABLE if down else http.HTTPStatus.OK
        if urlsplit(request.path).path == "/health":
            return _json_response(connection, {"status": "redis unreachable" if down else "ok",
                                               **self.stats()}, status)
        if down and asks_for_websocket(request):
            return connection.respond(status, "the room server cannot reach Redis\n")
        return None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' hook: /health, a websocket handshake on any other path, else 404."""
        response = self.handle_http(connection, request)
        if response is None and not asks_for_websocket(request):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        return response

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        client = Client(ws, self.limits, asyncio.get_running_loop().time())
        admitted = self._admit(client)
        try:
            await self._read(client)
        finally:
            if admitted:
                self._deliver(self.table.disconnect(client))
                self._release(client)
                logger.debug("%s: disconnected", client, extra=event("disconnected", client))
            await client.stop()

    def _admit(self, client: Client) -> bool:
        if self._closing:
            # Its handshake finished as close() began, too late to be among those it told.
            client.close(CloseCode.GOING_AWAY, "server shutting down",
                         protocol.Closing(SHUTDOWN_MESSAGE))
            return False
        group = client.address_group
        refusal = self.limits.connection_refusal(len(self._clients), self._addresses[group], group)
        if refusal is not None:
            logger.info("%s: refused: %s", client, refusal,
                        extra=event("refused", client, code=ErrorCode.TOO_MANY_CONNECTIONS))
            client.close(CloseCode.POLICY_VIOLATION, "too many connections",
                         protocol.Error(ErrorCode.TOO_MANY_CONNECTIONS, refusal))
            return False
        self._addresses[group] += 1
        self._clients.add(client)
        logger.debug("%s: connected", client, extra=event("connected", client))
        return True

    def _release(self, client: Client) -> None:
        self._clients.discard(client)
        self._addresses[client.address_group] -= 1
        if not self._addresses[client.address_group]:
            del self._addresses[client.address_group]  # so that the map holds live ones only

    async def _read(self, client: Client) -> None:
        """Handle the client's messages until its connection is gone. Once the server is closing
        it, what it still sends is discarded: websockets stops reading a socket whose messages
        are not taken, and then it would never see the client's answer to the close."""
        while True:
            try:
                async with asyncio.timeout_at(self._deadline(client)):
                    raw = await client.ws.recv()
            except TimeoutError:
                client.time_out(self.table.is_seated(client))
                continue
            except ConnectionClosedOK:
                return
            except ConnectionClosedError as exc:
                # Vanishing clients are routine; a traceback in the log would only alarm.
                logger.debug("%s: connection lost: %s", client, exc,
                             extra=event("lost", client))
                return
            if not client.closing:
                self._deliver(self._receive(client, raw))
            # websockets hands out queued messages without yielding; without this, a burst
            # from one client would fill its peers' outboxes before their writers ever ran.
            await asyncio.sleep(0)

    def _deadline(self, client: Client) -> float | None:
        if client.closing:
            return None  # close() bounds the time it takes
        if self.table.is_seated(client):
            timeout, since = self.limits.idle_timeout, client.last_heard
        else:
            timeout, since = self.limits.seat_timeout, client.unseated_since
        return since + timeout if timeout else None

    def _receive(self, client: Client, raw: str | bytes) -> Outgoing:
        now = asyncio.get_running_loop().time()
        verdict = client.rate.take(now)
        if verdict is not Verdict.PASS:
            return client.rate_limited(verdict)
        seated = self.table.is_seated(client)
        try:
            msg = protocol.parse_client_message(raw, max_bytes=self.limits.max_message_bytes)
            if isinstance(msg, protocol.Join):
                self._check_token(client, msg.token)
            outgoing = self.table.handle(client, msg)
        except ProtocolError as exc:
            # The connection stays open so that the client can correct itself, e.g. rejoin; the
            # error goes to it alone, and only valid messages keep it from timing out.
            logger.debug("%s: rejected: %s", client, exc,
                         extra=event("rejected", client, code=exc.code))
            return [(client, protocol.Error(exc.code, exc.message))]
        client.last_heard = now
        if seated and not self.table.is_seated(client):
            client.unseated_since = now
        return outgoing

    def _check_token(self, client: Client, token: str | None) -> None:
        if not self._tokens.accept(token):
            logger.info("%s: join with a wrong or missing token", client,
                        extra=event("bad-token", client, code=ErrorCode.BAD_TOKEN))
            raise ProtocolError(ErrorCode.BAD_TOKEN, "the join token is missing or wrong")

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            client.send(msg)

    async def _renew(self, period: float) -> None:
        """Seats that stay get fresh TURN credentials before theirs expire."""
        while True:
            await asyncio.sleep(period)
            self._deliver(self.table.renew())


def _json_response(connection: ServerConnection, body: dict,
                   status: http.HTTPStatus = http.HTTPStatus.OK) -> Response:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]  # respond() says text/plain
    response.headers["Content-Type"] = "application/json"
    response.headers["Cache-Control"] = "no-store"
    return response


async def serve_until_signal(server: RoomServer) -> None:
    """Run `server` (as `mpc-net signal` and `mpc-net web` do) until SIGINT or SIGTERM, then
    shut it down gracefully: every client gets `closing`, then its connection is closed with
    1001."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[signal.Signals] = loop.create_future()
    signals = (signal.SIGINT, signal.SIGTERM)

    def received(sig: signal.Signals) -> None:
        if not stop.done():  # a second signal while shutting down changes nothing
            stop.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, received, sig)
    try:
        async with server:
            server.announce()
            name = (await stop).name
            logger.info("room server shutting down on %s", name,
                        extra=event("shutdown", signal=name))
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
