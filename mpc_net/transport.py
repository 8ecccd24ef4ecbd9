"""DataChannelTransport: a peer's MPyC byte stream (stream.py) over one data channel at a time.

Each channel passes through its handshake gate (gate.py) before the stream flows over it; then
the transport sends MPyC's writes as records, acknowledges, keeps the peer alive, and reports a
channel that dies. The channel is anything shaped like the W3C RTCDataChannel (aiortc's, or the
browser's through Pyodide); the backend forwards its events to the `on_*` methods.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Protocol

from .gate import HandshakeGate
from .liveness import Liveness, Lost
from .records import (
    RecordError,
    RecordType,
    decode,
    decode_offset,
    encode,
    encode_offset,
)
from .stream import StreamTransport

logger = logging.getLogger("mpc_net.transport")

# Browsers close a data channel whose send buffer overflows (Chromium: 16 MiB); past the high
# water mark the surplus waits here until the channel reports `bufferedamountlow`.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024

# The receiver acknowledges at least this often, so the sender keeps at most about this much
# (plus a keepalive interval's worth) to send again after an outage.
ACK_EVERY = 1024 * 1024

KEEPALIVE_INTERVAL = 1.0
PEER_TIMEOUT = 10.0


class DataChannel(Protocol):
    """The part of the W3C RTCDataChannel interface the transport uses."""

    @property
    def readyState(self) -> str: ...  # noqa: N802 (W3C name)

    @property
    def bufferedAmount(self) -> int: ...  # noqa: N802 (W3C name)

    bufferedAmountLowThreshold: int  # noqa: N815 (W3C name)

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class PeerLost(Exception):
    """The channel to a party failed while MPyC still needed it."""

    def __init__(self, peer_pid: int, reason: str) -> None:
        super().__init__(f"lost the connection to party {peer_pid}: {reason}")
        self.peer_pid = peer_pid
        self.reason = reason


class DataChannelTransport(StreamTransport):
    """The MPyC byte stream to one party, over one data channel at a time.

    Every channel starts with a handshake (handshake.py) that ends in RESUME records: each side
    says how much of the stream it has received, and the sender continues from there. So when a
    channel dies and `on_interrupted` is given, the transport keeps MPyC's writes, and a new
    channel (`replace_channel`) carries on without losing or repeating a byte.
    """

    def __init__(
        self,
        channel: DataChannel,
        peer_pid: int,
        *,
        max_message_size: int,
        on_lost: Callable[[PeerLost], None],
        on_interrupted: Callable[[int, str], None] | None = None,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        peer_timeout: float = PEER_TIMEOUT,
    ) -> None:
        super().__init__(peer_pid, max_message_size)
        self._on_lost = on_lost
        self._on_interrupted = on_interrupted
        self._acknowledged = 0  # the offset our last ACK or RESUME told the peer
        self._flush_scheduled = False
        self._goodbye_sent = False
        self.interrupted = False  # the channel died; a new one may come
        # Figures for the end-of-run summary (and StreamTransport's).
        self.round_trips: list[float] = []  # seconds, from PING and PONG
        self.messages_sent = 0
        self.channels_used = 0
        self.linked_at: float | None = None  # loop time the first handshake ended
        self._interval = keepalive_interval
        self._timeout = peer_timeout
        self._timer: asyncio.TimerHandle | None = None
        self.replace_channel(channel, max_message_size)

    def replace_channel(self, channel: DataChannel, max_message_size: int) -> None:
        """Use a newly opened channel; nothing is sent on it before its handshake ends.

        The stream goes on from what earlier channels delivered after their handshakes: only
        a linked channel adds to what was received, and only it changes the send buffer.
        """
        self._channel = channel
        self._handshake = HandshakeGate()
        self._buffer.set_max_message_size(max_message_size)
        channel.bufferedAmountLowThreshold = LOW_WATER
        self.channels_used += 1
        now = self._loop.time()
        self._liveness = Liveness.starting(now, self._interval, self._timeout)
        self._last_tick = now
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._interval, self._tick)

    @property
    def channel(self) -> DataChannel:
        return self._channel

    def events_for(self, channel: DataChannel) -> ChannelEvents:
        """The sink a backend sends `channel`'s events to; events of replaced channels are
        dropped there."""
        return ChannelEvents(self, channel)

    # -- handshake side ---------------------------------------------------------------------

    async def receive_handshake(self) -> tuple[RecordType, bytes]:
        """The next handshake record from the peer on the current channel; RESUME comes once
        the channel is linked. Raises RecordError for a record out of place (the attempt is
        over then)."""
        return await self._handshake.receive()

    def send_handshake(self, kind: RecordType, body: bytes) -> None:
        """Send a handshake record now, ahead of anything MPyC will write.

        On a channel that is no longer open it is dropped: the peer is gone, and the reason the
        handshake ends is ours to report, not a failed send (both sides may refuse at once).
        """
        if self._channel.readyState == "open":
            self._send(encode(kind, body))

    @property
    def linked(self) -> bool:
        return self._handshake.linked

    def peer_verified(self) -> None:
        """The handshake has checked the peer's AUTH on this channel: tell the peer where its
        stream goes on (our RESUME), and link as soon as its RESUME is here too."""
        if not self._handshake.verify():
            return
        self.send_handshake(RecordType.RESUME, self._received.to_bytes(8, "big"))
        self._link_if_ready()

    def fail(self, reason: str) -> None:
        """Give up on this party (an outage lasted too long): a lost party for the runtime."""
        if not self._lost:
            self._shut()
            self._on_lost(PeerLost(self.peer_pid, reason))

    def get_write_buffer_size(self) -> int:
        return len(self._buffer) + self._channel.bufferedAmount

    # -- channel side -----------------------------------------------------------------------

    def on_message(self, message: bytes | str) -> None:
        self._liveness.received(self._loop.time())
        if isinstance(message, str):
            self._lose("sent a text message, which mpc-net never sends")
            return
        try:
            kind, body = decode(message)
            self._receive(kind, body)
        except RecordError as exc:
            self._lose(str(exc))

    def _receive(self, kind: RecordType, body: memoryview) -> None:
        if not self._handshake.linked:
            self._handshake.admit(kind, body)
            self._link_if_ready()
        elif kind is RecordType.PING:
            if self._channel.readyState == "open":
                self._send(encode(RecordType.PONG, body))
        elif kind is RecordType.PONG:
            if len(body) == 8:
                sent, = struct.unpack(">d", body)
                self.round_trips.append(self._loop.time() - sent)
        elif kind is RecordType.ACK:
            self._buffer.acknowledge(decode_offset(body))
        elif kind in (RecordType.DATA, RecordType.GOODBYE):
            if kind is RecordType.DATA:
                self._received += len(body)
                if self._received - self._acknowledged >= ACK_EVERY:
                    self._acknowledge()
            if self._protocol is None:
                self._inbox.append((kind, bytes(body)))
            else:
                self._deliver(kind, body)
        else:
            raise RecordError(f"a {kind.name} record after the handshake")

    def _link_if_ready(self) -> None:
        """The end of a handshake: the peer is authenticated and has our stream up to its
        RESUME offset; go on from there."""
        if not self._handshake.ready:
            return
        try:
            self._buffer.rewind(self._handshake.peer_offset)
        except RecordError as exc:
            self._handshake.end(f"it cannot resume our stream: {exc}")
            return
        self._handshake.link()
        if self.linked_at is None:
            self.linked_at = self._loop.time()
        self._acknowledged = self._received
        self.interrupted = False
        self._drain_inbox()
        self._schedule_flush()

    def ping(self) -> None:
        """Send a PING; its PONG adds a round-trip time (and every PING keeps the peer sure we
        are alive)."""
        self._send(encode(RecordType.PING, struct.pack(">d", self._loop.time())))

    @property
    def round_trip_time(self) -> float | None:
        """The shortest measured round trip over the channel, in seconds: PINGs answered while
        a party computes come back late, so the minimum is what the path itself costs."""
        return min(self.round_trips) if self.round_trips else None

    def on_buffered_amount_low(self) -> None:
        self._schedule_flush()

    def on_channel_close(self) -> None:
        self._lose("the data channel closed")

    def on_connection_state(self, state: str) -> None:
        if state in ("failed", "closed"):
            self._lose(f"the peer connection is {state}")

    def _acknowledge(self) -> None:
        self._acknowledged = self._received
        self._send(encode_offset(RecordType.ACK, self._received))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._lost or not self._handshake.linked or self._channel.readyState != "open":
            return
        room = HIGH_WATER - self._channel.bufferedAmount
        if self._buffer and room > 0:
            for record in self._buffer.take(room):
                self._send(record)
        if self._closing and not self._buffer and not self._goodbye_sent:
            self._goodbye_sent = True
            self._send(encode(RecordType.GOODBYE))
            self._finish_protocol()

    def _send(self, record: bytes) -> None:
        self._channel.send(record)
        self.messages_sent += 1
        self._liveness.sent(self._loop.time())

    def _tick(self) -> None:
        now = self._loop.time()
        if now - self._last_tick > 3 * self._liveness.interval:
            # Our own loop was blocked (a long local computation): whatever the peer sent is
            # still unread, so its silence proves nothing.
            self._liveness.received(now)
        self._last_tick = now
        verdict = self._liveness.verdict(now)
        if isinstance(verdict, Lost):
            self._lose(verdict.reason)
            return
        if self._handshake.linked and self._channel.readyState == "open":
            # Nothing but the handshake goes to a peer not yet authenticated, not even a PING.
            if self._received > self._acknowledged:
                self._acknowledge()
            if self._liveness.keepalive_due(now):
                self.ping()
        self._timer = self._loop.call_later(self._liveness.interval, self._tick)

    def _lose(self, reason: str) -> None:
        """The current channel is gone: the end of the stream, or news for `on_interrupted`
        (the mesh, which asks liveness.Outage what it means and calls `fail` for a lost party).
        Without `on_interrupted` a dead channel loses the party."""
        if self._lost:
            return
        self._handshake.close()
        if self._protocol_done:
            self._shut()  # the stream had ended; the channel going away is expected
        elif self._on_interrupted is not None:
            logger.debug("party %d interrupted: %s", self.peer_pid, reason)
            self.interrupted = True
            self._timer.cancel()
            self._on_interrupted(self.peer_pid, reason)
        else:
            logger.debug("party %d lost: %s", self.peer_pid, reason)
            self.fail(reason)

    def _shut(self) -> None:
        self._lost = True
        self._timer.cancel()
        self._end()


class ChannelEvents:
    """One channel's events for a transport; dropped once the transport uses another channel."""

    def __init__(self, transport: DataChannelTransport, channel: DataChannel) -> None:
        self._transport = transport
        self._channel = channel

    def _current(self) -> bool:
        return self._transport._channel is self._channel

    def on_message(self, message: bytes | str) -> None:
        if self._current():
            self._transport.on_message(message)

    def on_buffered_amount_low(self) -> None:
        if self._current():
            self._transport.on_buffered_amount_low()

    def on_channel_close(self) -> None:
        if self._current():
            self._transport.on_channel_close()

    def on_connection_state(self, state: str) -> None:
        if self._current():
            self._transport.on_connection_state(state)
