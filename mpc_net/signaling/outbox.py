"""One client connection of the room server, with its own ordered, bounded outbox.

Sends are queued rather than awaited so that a peer that reads slowly never stalls the
connection whose message caused the send; the outbox is bounded in messages and in bytes, and a
client that lets it overflow is cut off.
"""

from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from . import protocol
from .errors import ErrorCode
from .limits import Limits, RateLimit, Verdict, address_group
from .logs import event, logger

# How long a connection being closed by the server may take to receive what was queued for it
# (its last error, or the closing notice) and to answer the close; then it is cut off.
CLOSE_GRACE = 5.0


class Client:
    """One connection: the handle that Rooms keys by, with its rate limit and its outbox."""

    def __init__(self, ws: ServerConnection, limits: Limits, now: float) -> None:
        self.ws = ws
        host, port = (ws.remote_address or ("unknown", 0))[:2]
        self.host: str = host
        self.address_group = address_group(host)
        self._name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.limits = limits
        self.rate = RateLimit(limits.messages_per_second, limits.message_burst, now)
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

    def send(self, msg: protocol.ServerMessage) -> None:
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

    def time_out(self, seated: bool) -> None:
        """Close the connection for saying nothing (`seated`) or taking no seat in time."""
        if seated:
            text = f"silent for {self.limits.idle_timeout:g} s"
        else:
            text = f"no join within {self.limits.seat_timeout:g} s"
        logger.info("%s: %s, disconnecting", self, text,
                    extra=event("timeout", self, code=ErrorCode.IDLE_TIMEOUT))
        self.close(CloseCode.POLICY_VIOLATION, "idle timeout",
                   protocol.Error(ErrorCode.IDLE_TIMEOUT, text))

    def rate_limited(self, verdict: Verdict) -> list[tuple[Client, protocol.ServerMessage]]:
        """What a message above the rate limit gets: an error, or, for a client that keeps on,
        the end of its connection."""
        rate = self.limits.messages_per_second
        if verdict is Verdict.DISCONNECT:
            logger.info("%s: kept sending beyond %g messages per second, disconnecting", self,
                        rate, extra=event("rate-limited", self, code=ErrorCode.RATE_LIMITED))
            self.close(CloseCode.POLICY_VIOLATION, "rate limit", protocol.Error(
                ErrorCode.RATE_LIMITED, f"kept sending beyond {rate:g} messages per second"))
            return []
        logger.debug("%s: rate limited", self,
                     extra=event("rejected", self, code=ErrorCode.RATE_LIMITED))
        return [(self, protocol.Error(
            ErrorCode.RATE_LIMITED, f"more than {rate:g} messages per second; message dropped"))]

    def close(self, code: int, reason: str, last: protocol.ServerMessage) -> None:
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
                    extra=event("slow-client", self, queued_messages=len(self._outbox),
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
