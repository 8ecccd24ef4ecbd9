"""DataChannelTransport: an asyncio write transport over one data channel.

MPyC's `asyncoro.MessageExchanger` runs unchanged on top of it, exactly as it runs on a TCP
transport: it calls `write`/`writelines`/`close`, and gets `connection_made`, `data_received`
and `connection_lost` back. The channel is anything shaped like the W3C RTCDataChannel
(aiortc's, or the browser's through Pyodide); the backend forwards its events to the
`on_*` methods.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
from collections.abc import Callable, Iterable
from typing import Protocol

from .liveness import Liveness, Lost
from .records import (
    RecordError,
    RecordType,
    SendBuffer,
    decode,
    decode_offset,
    encode,
    encode_offset,
)

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


class Stage(enum.Enum):
    """How far the handshake of the current channel is. Until LINKED a channel carries the
    peer's HELLO, AUTH and RESUME in this order (or a REFUSED) and nothing else: any other
    record ends the attempt, so nothing an unauthenticated sender writes is kept, counted or
    passed to MPyC, and at most one record per step waits for the handshake."""

    HELLO = "HELLO"  # waiting for the peer's HELLO
    AUTH = "AUTH"  # waiting for the peer's AUTH
    RESUME = "RESUME"  # waiting for the peer's RESUME
    RESUMED = "nothing"  # its RESUME is here; waiting for our check of its AUTH
    LINKED = "linked"  # authenticated and resumed: the stream flows
    ENDED = "ended"  # the attempt failed or the channel died; what still arrives is dropped


class PeerLost(Exception):
    """The channel to a party failed while MPyC still needed it."""

    def __init__(self, peer_pid: int, reason: str) -> None:
        super().__init__(f"lost the connection to party {peer_pid}: {reason}")
        self.peer_pid = peer_pid
        self.reason = reason


class DataChannelTransport(asyncio.WriteTransport):
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
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self.peer_pid = peer_pid
        self._on_lost = on_lost
        self._on_interrupted = on_interrupted
        self._buffer = SendBuffer(max_message_size)
        self._received = 0  # stream offset: DATA bytes received from the peer
        self._acknowledged = 0  # the offset our last ACK or RESUME told the peer
        self._protocol: asyncio.Protocol | None = None
        # What arrived on a linked channel before MPyC attached (the first channel only).
        self._inbox: list[tuple[RecordType, bytes]] = []
        self._flush_scheduled = False
        self._closing = False  # MPyC closed its side; GOODBYE follows the pending data
        self._goodbye_sent = False
        self._protocol_done = False  # connection_lost(None) delivered to MPyC
        self._lost = False
        self.interrupted = False  # the channel died; a new one may come
        # Done once nothing more can come from the peer: its GOODBYE arrived, or the link died.
        self.ended: asyncio.Future[None] = self._loop.create_future()
        # Figures for the end-of-run summary.
        self.round_trips: list[float] = []  # seconds, from PING and PONG
        self.mpyc_writes = 0
        self.bytes_written = 0
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
        self._stage = Stage.HELLO
        self._verified = False  # the handshake has checked the peer's AUTH on this channel
        self._peer_offset = 0  # what the peer's RESUME says it has of our stream
        self._handshake: asyncio.Queue[tuple[RecordType, bytes] | RecordError] = asyncio.Queue()
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
        item = await self._handshake.get()
        if isinstance(item, RecordError):
            raise item
        return item

    def send_handshake(self, kind: RecordType, body: bytes) -> None:
        """Send a handshake record now, ahead of anything MPyC will write.

        On a channel that is no longer open it is dropped: the peer is gone, and the reason the
        handshake ends is ours to report, not a failed send (both sides may refuse at once).
        """
        if self._channel.readyState == "open":
            self._send(encode(kind, body))

    @property
    def received(self) -> int:
        """How much of the peer's stream has arrived over authenticated channels."""
        return self._received

    @property
    def attached(self) -> bool:
        """Whether MPyC has the stream: only then may a new channel resume it."""
        return self._protocol is not None

    @property
    def linked(self) -> bool:
        return self._stage is Stage.LINKED

    def peer_verified(self) -> None:
        """The handshake has checked the peer's AUTH on this channel: tell the peer where its
        stream goes on (our RESUME), and link as soon as its RESUME is here too."""
        if self._stage is Stage.ENDED or self._verified:
            return
        self._verified = True
        self.send_handshake(RecordType.RESUME, self._received.to_bytes(8, "big"))
        self._link_if_ready()

    # -- MPyC side --------------------------------------------------------------------------

    def attach(self, protocol: asyncio.Protocol) -> None:
        """Hand the stream to MPyC: `connection_made` strictly before any received bytes."""
        self._protocol = protocol
        protocol.connection_made(self)
        self._drain_inbox()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing:
            raise RuntimeError(f"write to party {self.peer_pid} after close")
        self._buffer.write(data)
        self.mpyc_writes += 1
        self.bytes_written += len(data)
        self._schedule_flush()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._schedule_flush()

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def abort(self) -> None:
        self._closing = True
        self._finish_protocol()
        self._shut()

    def fail(self, reason: str) -> None:
        """Give up on this party (an outage lasted too long): a lost party for the runtime."""
        if not self._lost:
            self._shut()
            self._on_lost(PeerLost(self.peer_pid, reason))

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return len(self._buffer) + self._channel.bufferedAmount

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peer_pid": self.peer_pid}.get(name, default)

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
        if self._stage is not Stage.LINKED:
            self._admit(kind, body)
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

    def _admit(self, kind: RecordType, body: memoryview) -> None:
        """A record on a channel that is not linked yet: the next handshake step or the end."""
        if self._stage is Stage.ENDED:
            return
        if kind is RecordType.REFUSED:
            self._stage = Stage.ENDED
            self._handshake.put_nowait((kind, bytes(body)))
        elif kind.name != self._stage.value:
            self._end_attempt(f"it sent {kind.name} where {self._stage.value} belongs in the "
                              "handshake")
        elif kind is RecordType.RESUME:
            try:
                self._peer_offset = decode_offset(body)
            except RecordError as exc:
                self._end_attempt(f"its RESUME is malformed: {exc}")
                return
            self._stage = Stage.RESUMED
            self._link_if_ready()
        else:
            self._stage = Stage.AUTH if kind is RecordType.HELLO else Stage.RESUME
            self._handshake.put_nowait((kind, bytes(body)))

    def _link_if_ready(self) -> None:
        """The end of a handshake: the peer is authenticated and has our stream up to its
        RESUME offset; go on from there."""
        if not (self._verified and self._stage is Stage.RESUMED):
            return
        try:
            self._buffer.rewind(self._peer_offset)
        except RecordError as exc:
            self._end_attempt(f"it cannot resume our stream: {exc}")
            return
        self._stage = Stage.LINKED
        if self.linked_at is None:
            self.linked_at = self._loop.time()
        self._acknowledged = self._received
        self.interrupted = False
        self._handshake.put_nowait((RecordType.RESUME, self._peer_offset.to_bytes(8, "big")))
        self._drain_inbox()
        self._schedule_flush()

    def _end_attempt(self, reason: str) -> None:
        """Fail this channel's handshake; what else arrives on the channel is dropped."""
        self._stage = Stage.ENDED
        self._handshake.put_nowait(RecordError(reason))

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

    # -- internals --------------------------------------------------------------------------

    def _drain_inbox(self) -> None:
        if self._protocol is None or self._stage is not Stage.LINKED:
            return
        inbox, self._inbox = self._inbox, []
        for kind, body in inbox:
            self._deliver(kind, body)

    def _deliver(self, kind: RecordType, body: bytes | memoryview) -> None:
        if kind is RecordType.GOODBYE:
            self._end()
            self._finish_protocol()
            self.close()  # answer with our own GOODBYE, so the peer knows we got everything
        elif not self._protocol_done:
            self._protocol.data_received(body)

    def _acknowledge(self) -> None:
        self._acknowledged = self._received
        self._send(encode_offset(RecordType.ACK, self._received))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._lost or self._stage is not Stage.LINKED or self._channel.readyState != "open":
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

    def _finish_protocol(self) -> None:
        if self._protocol is not None and not self._protocol_done:
            self._protocol_done = True
            self._protocol.connection_lost(None)

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
        if self._stage is Stage.LINKED and self._channel.readyState == "open":
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
        self._stage = Stage.ENDED
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

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


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
