"""Room server: the websockets I/O edge around the sans-I/O Rooms state, with its limits.

The server faces the internet, so every resource a client can make it hold is bounded: message
size and rate, rooms, connections in all and per address, time without a join or without a
word, the bytes waiting for a slow reader. A client that crosses a limit gets an `error` first,
so that people see why; where the limit protects the server rather than the message, the
connection is closed next.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import http
import ipaddress
import json
import logging
import signal
import sys
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ..argtypes import number
from ..ice import TurnRest
from ..keys import check_signature
from . import protocol
from .protocol import MAX_MESSAGE_BYTES, ErrorCode, ProtocolError
from .rooms import Outgoing, Rooms

logger = logging.getLogger("mpc_net.signaling")

# How long a connection being closed by the server may take to receive what was queued for it
# (its last error, or the closing notice) and to answer the close; then it is cut off.
CLOSE_GRACE = 5.0
# Frames websockets buffers from one client before it stops reading its socket. The server
# handles each message at once, so a few suffice, and they bound what a fast sender costs.
RECEIVE_QUEUE_FRAMES = 4
SHUTDOWN_MESSAGE = "shutting down; connect again later"
# A connection must finish its websocket handshake this soon, so half-open ones (which no
# per-address count sees yet) cannot pile up.
OPEN_TIMEOUT = 5.0


@dataclass(frozen=True)
class Limits:
    """What one room server allows each client; add_limit_arguments has an option for each.

    A timeout or max_connections_per_address of 0 means no limit.
    """

    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Signaling is a message or a few per peer (a description, trickled candidates), so the
    # burst lets a party offer to all others of the largest room at once (MAX_PARTIES), while a
    # flood is cut to the refill rate.
    messages_per_second: float = 50.0
    message_burst: int = 512
    max_rooms: int = 10_000
    # Bounds the server's memory: each connection holds at most its send queue, websockets'
    # buffers, and (idle) some 20 KiB, or 50 KiB with permessage-deflate: under 1 MiB in all with
    # the defaults (RELIABILITY.md).
    max_connections: int = 10_000
    # Behind a reverse proxy every client has the proxy's address: raise it or set it to 0.
    max_connections_per_address: int = 64
    join_timeout: float = 30.0
    # Longer than a party's default wait for the others (`mpc-net run --join-timeout`, 300 s),
    # during which it says nothing.
    idle_timeout: float = 600.0
    # Dozens of session descriptions, or four messages of the largest size.
    send_queue_messages: int = 256
    send_queue_bytes: int = 256 * 1024
    allowed_origins: tuple[str, ...] = ()
    join_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = ("max_message_bytes", "messages_per_second", "message_burst", "max_rooms",
                    "max_connections", "send_queue_messages", "send_queue_bytes")
        at_least_zero = ("max_connections_per_address", "join_timeout", "idle_timeout")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        for name in at_least_zero:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")
        # Otherwise one relayed signal of the allowed size could never be queued.
        if self.send_queue_bytes < self.max_message_bytes:
            raise ValueError("send_queue_bytes must be at least max_message_bytes")
        if any(not token for token in self.join_tokens):
            raise ValueError("join_tokens must not hold an empty token")


class _Verdict(Enum):
    PASS = "pass"
    REFUSE = "refuse"
    DISCONNECT = "disconnect"


class _RateLimit:
    """Token bucket over one connection's messages.

    Refused messages cost a token too, so the balance goes negative: a client that ignores its
    rate-limited errors runs into debt and is disconnected once it owes a whole burst, while one
    that pauses recovers at the refill rate.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> _Verdict:
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens >= 0:
            return _Verdict.PASS
        return _Verdict.DISCONNECT if self._tokens <= -self._burst else _Verdict.REFUSE


class _Client:
    """One connection: the handle that Rooms keys by, with its own ordered, bounded outbox.

    Sends are queued rather than awaited so that a peer that reads slowly never stalls the
    connection whose message caused the send; the outbox is bounded in messages and in bytes,
    and a client that lets it overflow is cut off.
    """

    def __init__(self, ws: ServerConnection, limits: Limits, now: float) -> None:
        self.ws = ws
        host, port = (ws.remote_address or ("unknown", 0))[:2]
        self.host: str = host
        self.address_group = address_group(host)
        self._name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.rate = _RateLimit(limits.messages_per_second, limits.message_burst, now)
        self.last_heard = now  # when it last sent a valid message
        self.unseated_since = now  # when it connected or last lost its seat in a room
        self._max_messages = limits.send_queue_messages
        self._max_bytes = limits.send_queue_bytes
        self._outbox: deque[str] = deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None  # the close frame to send once drained
        self._dropped = False
        self._writer = asyncio.create_task(self._write())

    def __repr__(self) -> str:
        return self._name

    @property
    def closing(self) -> bool:
        """Nothing more is sent to, or read from, a connection the server is closing."""
        return self._close is not None or self._dropped

    def send(self, msg: dict) -> None:
        if self.closing:
            return
        text = protocol.encode(msg)  # ASCII, so its length is its size in bytes
        if (
            len(self._outbox) >= self._max_messages
            or self.queued_bytes + len(text) > self._max_bytes
        ):
            self._drop()
            return
        self._outbox.append(text)
        self.queued_bytes += len(text)
        self._wake.set()

    def close(self, code: int, reason: str, last: dict) -> None:
        """Send `last` after what is queued, then close; `last` may exceed the bounds by itself,
        as it is the one message that explains the close. A client that has not taken it all
        and answered the close within CLOSE_GRACE is cut off."""
        if self.closing:
            return
        text = protocol.encode(last)
        self._outbox.append(text)
        self.queued_bytes += len(text)
        self._close = (code, reason)
        self._wake.set()
        asyncio.get_running_loop().call_later(CLOSE_GRACE, self._give_up)

    async def closed(self) -> None:
        """Wait until the close that close() asked for is done, or given up."""
        await asyncio.wait([self._writer])

    async def stop(self) -> None:
        """End the writer once the connection is gone: after the close it was asked to make,
        or at once."""
        if self._close is None:
            self._writer.cancel()
        # wait() rather than await: the writer's CancelledError is expected, not ours.
        await asyncio.wait([self._writer])

    def _give_up(self) -> None:
        if not self._writer.done():
            # Its reads and the writer's sends then fail at once, which ends both.
            self.ws.transport.abort()

    def _drop(self) -> None:
        logger.info("%s: not reading its messages, disconnecting", self,
                    extra=_event("slow-client", self, queued_messages=len(self._outbox),
                                 queued_bytes=self.queued_bytes))
        self._dropped = True
        self._outbox.clear()  # free the memory now rather than when the handler ends
        self.queued_bytes = 0
        self.ws.transport.abort()

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                while self._outbox:
                    text = self._outbox.popleft()
                    self.queued_bytes -= len(text)
                    await self.ws.send(text)
                self._wake.clear()
                if self._close is not None:
                    await self.ws.close(*self._close)
                    return
        except ConnectionClosed:
            pass  # the reading side notices too and cleans up


class RoomServer:
    """Signaling server for rooms of parties; relays SDP and presence, never MPC data."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        ice_servers: list[dict] | None = None,
        turn: TurnRest | None = None,
        limits: Limits | None = None,
        open_relay: bool = False,
    ) -> None:
        self.host = host
        self.limits = limits or Limits()
        if turn is not None and not self.limits.join_tokens and not open_relay:
            # Credentials then go to anyone who can take a seat, and anyone can in open rooms
            # or under a roster of their own making.
            raise ValueError("TURN credentials without join tokens would make the TURN server "
                             "an open relay: require a join token, or accept an open relay "
                             "explicitly")
        self.open_relay = turn is not None and open_relay
        self.rooms = Rooms(check_signature, ice_servers, turn, max_rooms=self.limits.max_rooms)
        self._renewal: asyncio.Task | None = None
        self._requested_port = port
        self._server: Server | None = None
        self._clients: set[_Client] = set()
        self._addresses: Counter[str] = Counter()  # admitted connections per client address
        self._closing = False
        # Digests have one length, so comparing them takes the same time whatever was sent.
        self._token_digests = [_digest(token) for token in self.limits.join_tokens]

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("room server is not running")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self.rooms.rooms),
            "connections": len(self._clients),
            "parties": self.rooms.party_count,
        }

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
            open_timeout=OPEN_TIMEOUT,
        )
        if self.open_relay:
            logger.warning("WARNING: TURN credentials go to every party that takes a seat, "
                           "without a join token: the TURN server is an open relay",
                           extra=_event("open-relay"))
        if self.rooms.turn is not None:
            self._renewal = asyncio.create_task(self._renew(self.rooms.turn.ttl / 2))

    async def close(self, message: str = SHUTDOWN_MESSAGE) -> None:
        """Tell every client `closing`, close their connections (1001), and stop."""
        if self._server is None:
            return
        self._closing = True
        if self._renewal is not None:
            self._renewal.cancel()
        # Stop listening at once; websockets answers handshakes under way with 503.
        self._server.server.close()
        notice = protocol.closing(message)
        clients = list(self._clients)
        for client in clients:
            client.close(CloseCode.GOING_AWAY, "server shutting down", notice)
        logger.info("room server closing %d connections", len(clients),
                    extra=_event("closing", connections=len(clients)))
        await asyncio.gather(*(client.closed() for client in clients))
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

    # -- HTTP ----------------------------------------------------------------------------------

    def handle_http(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer GET /health, or return None for any other path so that another server can
        chain this one into its own process_request."""
        if urlsplit(request.path).path != "/health":
            return None
        body = {"status": "ok", **self.stats()}
        response = connection.respond(http.HTTPStatus.OK, json.dumps(body) + "\n")
        del response.headers["Content-Type"]  # respond() says text/plain
        response.headers["Content-Type"] = "application/json"
        response.headers["Cache-Control"] = "no-store"
        return response

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' hook: /health, a websocket handshake on any other path, else 404."""
        response = self.handle_http(connection, request)
        if response is None and not _is_upgrade(request):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        return response

    # -- connections ---------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        client = _Client(ws, self.limits, asyncio.get_running_loop().time())
        admitted = self._admit(client)
        try:
            await self._read(client)
        finally:
            if admitted:
                self._deliver(self.rooms.disconnect(client))
                self._release(client)
                logger.debug("%s: disconnected", client, extra=_event("disconnected", client))
            await client.stop()

    def _admit(self, client: _Client) -> bool:
        if self._closing:
            # Its handshake finished as close() began, too late to be among those it told.
            client.close(CloseCode.GOING_AWAY, "server shutting down",
                         protocol.closing(SHUTDOWN_MESSAGE))
            return False
        refusal = self._connection_refusal(client)
        if refusal is not None:
            logger.info("%s: refused: %s", client, refusal,
                        extra=_event("refused", client, code=ErrorCode.TOO_MANY_CONNECTIONS))
            client.close(CloseCode.POLICY_VIOLATION, "too many connections",
                         protocol.error(ErrorCode.TOO_MANY_CONNECTIONS, refusal))
            return False
        self._addresses[client.address_group] += 1
        self._clients.add(client)
        logger.debug("%s: connected", client, extra=_event("connected", client))
        return True

    def _connection_refusal(self, client: _Client) -> str | None:
        if len(self._clients) >= self.limits.max_connections:
            return f"the room server holds its limit of {self.limits.max_connections} connections"
        limit = self.limits.max_connections_per_address
        if limit and self._addresses[client.address_group] >= limit:
            return f"more than {limit} connections from {client.address_group}"
        return None

    def _release(self, client: _Client) -> None:
        self._clients.discard(client)
        self._addresses[client.address_group] -= 1
        if not self._addresses[client.address_group]:
            del self._addresses[client.address_group]  # so that the map holds live ones only

    async def _read(self, client: _Client) -> None:
        """Handle the client's messages until its connection is gone. Once the server is closing
        it, what it still sends is discarded: websockets stops reading a socket whose messages
        are not taken, and then it would never see the client's answer to the close."""
        while True:
            try:
                async with asyncio.timeout_at(self._deadline(client)):
                    raw = await client.ws.recv()
            except TimeoutError:
                self._time_out(client)
                continue
            except ConnectionClosedOK:
                return
            except ConnectionClosedError as exc:
                # Vanishing clients are routine; a traceback in the log would only alarm.
                logger.debug("%s: connection lost: %s", client, exc,
                             extra=_event("lost", client))
                return
            if not client.closing:
                self._deliver(self._receive(client, raw))
            # websockets hands out queued messages without yielding; without this, a burst
            # from one client would fill its peers' outboxes before their writers ever ran.
            await asyncio.sleep(0)

    def _deadline(self, client: _Client) -> float | None:
        if client.closing:
            return None  # close() bounds the time it takes
        if self.rooms.is_seated(client):
            timeout, since = self.limits.idle_timeout, client.last_heard
        else:
            timeout, since = self.limits.join_timeout, client.unseated_since
        return since + timeout if timeout else None

    def _time_out(self, client: _Client) -> None:
        if self.rooms.is_seated(client):
            text = f"silent for {self.limits.idle_timeout:g} s"
        else:
            text = f"no join within {self.limits.join_timeout:g} s"
        logger.info("%s: %s, disconnecting", client, text,
                    extra=_event("timeout", client, code=ErrorCode.IDLE_TIMEOUT))
        client.close(CloseCode.POLICY_VIOLATION, "idle timeout",
                     protocol.error(ErrorCode.IDLE_TIMEOUT, text))

    def _receive(self, client: _Client, raw: str | bytes) -> Outgoing:
        now = asyncio.get_running_loop().time()
        verdict = client.rate.take(now)
        if verdict is not _Verdict.PASS:
            return self._rate_limited(client, verdict)
        seated = self.rooms.is_seated(client)
        try:
            msg = protocol.parse_client_message(raw, max_bytes=self.limits.max_message_bytes)
            if msg["type"] == "join":
                self._check_token(client, msg.get("token"))
            outgoing = self.rooms.handle(client, msg)
        except ProtocolError as exc:
            # The connection stays open so that the client can correct itself, e.g. rejoin; the
            # error goes to it alone, and only valid messages keep it from timing out.
            logger.debug("%s: rejected: %s", client, exc,
                         extra=_event("rejected", client, code=exc.code))
            return [(client, protocol.error(exc.code, exc.message))]
        client.last_heard = now
        if seated and not self.rooms.is_seated(client):
            client.unseated_since = now
        return outgoing

    def _rate_limited(self, client: _Client, verdict: _Verdict) -> Outgoing:
        rate = self.limits.messages_per_second
        if verdict is _Verdict.DISCONNECT:
            logger.info("%s: kept sending beyond %g messages per second, disconnecting", client,
                        rate, extra=_event("rate-limited", client, code=ErrorCode.RATE_LIMITED))
            client.close(CloseCode.POLICY_VIOLATION, "rate limit", protocol.error(
                ErrorCode.RATE_LIMITED, f"kept sending beyond {rate:g} messages per second"))
            return []
        logger.debug("%s: rate limited", client,
                     extra=_event("rejected", client, code=ErrorCode.RATE_LIMITED))
        return [(client, protocol.error(
            ErrorCode.RATE_LIMITED, f"more than {rate:g} messages per second; message dropped"))]

    def _check_token(self, client: _Client, token: str | None) -> None:
        if not self._token_digests:
            return
        digest = _digest(token or "")
        # No early exit: the time taken must not tell which token came close.
        matched = False
        for expected in self._token_digests:
            matched |= hmac.compare_digest(digest, expected)
        if not matched:
            logger.info("%s: join with a wrong or missing token", client,
                        extra=_event("bad-token", client, code=ErrorCode.BAD_TOKEN))
            raise ProtocolError(ErrorCode.BAD_TOKEN, "the join token is missing or wrong")

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            client.send(msg)

    async def _renew(self, period: float) -> None:
        """Seats that stay get fresh TURN credentials before theirs expire."""
        while True:
            await asyncio.sleep(period)
            self._deliver(self.rooms.renew())


def _event(name: str, client: _Client | None = None, **fields: object) -> dict[str, object]:
    """The `extra` of a log record: what JsonFormatter adds to the line as fields."""
    if client is not None:
        fields["client"] = str(client)
    return {"event": name, **fields}


def address_group(host: str) -> str:
    """What the per-address limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    prefix, from which any number of addresses are to be had)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(token: str) -> bytes:
    # surrogatepass: JSON may carry a lone surrogate, which plain UTF-8 refuses to encode.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _is_upgrade(request: Request) -> bool:
    values = ",".join(request.headers.get_all("Upgrade")).split(",")
    return any(value.strip().lower() == "websocket" for value in values)


async def serve_until_signal(host: str, port: int, **kwargs: Any) -> None:
    """Run a RoomServer until SIGINT or SIGTERM, then shut it down gracefully: every client
    gets `closing`, then its connection is closed with 1001."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[signal.Signals] = loop.create_future()
    signals = (signal.SIGINT, signal.SIGTERM)

    def received(sig: signal.Signals) -> None:
        if not stop.done():  # a second signal while shutting down changes nothing
            stop.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, received, sig)
    try:
        async with RoomServer(host, port, **kwargs) as server:
            logger.info("room server listening on %s", server.url,
                        extra=_event("listening", url=server.url))
            name = (await stop).name
            logger.info("room server shutting down on %s", name,
                        extra=_event("shutdown", signal=name))
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


# -- command line --------------------------------------------------------------------------------


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the limit options (and --log-format) to the `mpc-net signal` parser."""
    d = Limits()
    group = parser.add_argument_group("limits (0 turns a timeout or the address limit off)")
    group.add_argument("--max-message-bytes", type=number(int, 1), default=d.max_message_bytes,
                       metavar="BYTES", help="largest message a client may send "
                       f"(default: {d.max_message_bytes})")
    group.add_argument("--messages-per-second", type=number(float, 0, strict=True),
                       default=d.messages_per_second, metavar="RATE",
                       help="sustained messages per second per connection; more get a "
                       "rate-limited error, and a connection that keeps on is closed "
                       f"(default: {d.messages_per_second:g})")
    group.add_argument("--message-burst", type=number(int, 1), default=d.message_burst,
                       metavar="N", help="messages a connection may send at once above the rate "
                       f"(default: {d.message_burst})")
    group.add_argument("--max-rooms", type=number(int, 1), default=d.max_rooms, metavar="N",
                       help=f"rooms open at once (default: {d.max_rooms})")
    group.add_argument("--max-connections", type=number(int, 1), default=d.max_connections,
                       metavar="N", help="connections open at once, which bounds the memory "
                       f"(default: {d.max_connections})")
    group.add_argument("--max-connections-per-address", type=number(int, 0),
                       default=d.max_connections_per_address, metavar="N",
                       help="connections from one client IP address; behind a proxy all "
                       f"clients share its address (default: {d.max_connections_per_address})")
    group.add_argument("--join-timeout", type=number(float, 0), default=d.join_timeout,
                       metavar="SECONDS", help="close a connection that is not in a room this "
                       f"long after connecting or leaving (default: {d.join_timeout:g})")
    group.add_argument("--idle-timeout", type=number(float, 0), default=d.idle_timeout,
                       metavar="SECONDS", help="close a connection in a room that sends nothing "
                       "this long; keep it above the parties' --join-timeout "
                       f"(default: {d.idle_timeout:g})")
    group.add_argument("--send-queue-messages", type=number(int, 1),
                       default=d.send_queue_messages, metavar="N",
                       help="messages waiting for a slow reader before it is disconnected "
                       f"(default: {d.send_queue_messages})")
    group.add_argument("--send-queue-bytes", type=number(int, 1), default=d.send_queue_bytes,
                       metavar="BYTES", help="bytes waiting for a slow reader before it is "
                       "disconnected; at least --max-message-bytes "
                       f"(default: {d.send_queue_bytes})")
    group.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                       help="a web origin (https://host[:port]) whose browser pages may connect "
                       "(repeatable); if given, other browser origins get HTTP 403, while "
                       "clients that send no Origin stay allowed (default: any origin)")
    group.add_argument("--join-token", action="append", default=[], type=_token, metavar="TOKEN",
                       help="require this token in every join (repeatable: any one of them "
                       "will do); a join without it gets a bad-token error (default: none)")
    group.add_argument("--join-token-file", action="append", default=[], type=_token_file,
                       metavar="FILE", help="tokens as for --join-token, one per line; keeps "
                       "them out of process listings")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="text lines, or one JSON object per line for log collectors "
                        "(default: text)")


def limits_from(options: argparse.Namespace) -> Limits:
    """The Limits of options parsed with add_limit_arguments; raise ValueError if they clash."""
    tokens = [*options.join_token, *(t for tokens in options.join_token_file for t in tokens)]
    return Limits(
        max_message_bytes=options.max_message_bytes,
        messages_per_second=options.messages_per_second,
        message_burst=options.message_burst,
        max_rooms=options.max_rooms,
        max_connections=options.max_connections,
        max_connections_per_address=options.max_connections_per_address,
        join_timeout=options.join_timeout,
        idle_timeout=options.idle_timeout,
        send_queue_messages=options.send_queue_messages,
        send_queue_bytes=options.send_queue_bytes,
        allowed_origins=tuple(options.allowed_origin),
        join_tokens=tuple(dict.fromkeys(tokens)),
    )


def setup_logging(log_format: str = "text", verbose: bool = False) -> None:
    """Log to stderr as `mpc-net signal` does: text lines, or JSON objects with --log-format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("websockets").setLevel(logging.WARNING)


# Attributes of every LogRecord; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extra fields
    (event, client, room, party, code, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # json.dumps escapes newlines, so a traceback stays on its one line.
        return json.dumps(entry, default=str)


def _token(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a join token must not be empty")
    return text


def _token_file(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as f:
            tokens = tuple(line.strip() for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc}") from None
    if not tokens:
        raise argparse.ArgumentTypeError(f"no token in {path}")
    return tokens
