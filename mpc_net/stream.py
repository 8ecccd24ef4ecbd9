"""The MPyC side of a peer's byte stream: the asyncio write transport MPyC's
`asyncoro.MessageExchanger` runs on, exactly as on a TCP transport.

MPyC calls `write`/`writelines`/`close` and gets `connection_made`, `data_received` and
`connection_lost` back. What carries the bytes (transport.py: data channels, one at a time)
subclasses this and says when the stream is linked, sends what is written, and shuts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from .records import RecordType, SendBuffer


class StreamTransport(asyncio.WriteTransport):
    """What MPyC writes (a send buffer) and what it receives, in order, after
    `connection_made`."""

    def __init__(self, peer_pid: int, max_message_size: int) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self.peer_pid = peer_pid
        self._buffer = SendBuffer(max_message_size)
        self._received = 0  # stream offset: bytes received from the peer
        self._protocol: asyncio.Protocol | None = None
        # What arrived on a linked channel before MPyC attached (the first channel only).
        self._inbox: list[tuple[RecordType, bytes]] = []
        self._closing = False  # MPyC closed its side; GOODBYE follows the pending data
        self._protocol_done = False  # connection_lost(None) delivered to MPyC
        self._lost = False
        # Done once nothing more can come from the peer: its GOODBYE arrived, or the link died.
        self.ended: asyncio.Future[None] = self._loop.create_future()
        self.mpyc_writes = 0
        self.bytes_written = 0

    @property
    def linked(self) -> bool:
        """Whether the peer is authenticated on the current channel and the stream flows."""
        raise NotImplementedError

    def _schedule_flush(self) -> None:
        """Send what is written as soon as the carrier may."""
        raise NotImplementedError

    def _shut(self) -> None:
        """Stop for good: nothing more is sent or received."""
        raise NotImplementedError

    @property
    def received(self) -> int:
        """How much of the peer's stream has arrived over authenticated channels."""
        return self._received

    @property
    def attached(self) -> bool:
        """Whether MPyC has the stream: only then may a new channel resume it."""
        return self._protocol is not None

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

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peer_pid": self.peer_pid}.get(name, default)

    def _drain_inbox(self) -> None:
        if self._protocol is None or not self.linked:
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

    def _finish_protocol(self) -> None:
        if self._protocol is not None and not self._protocol_done:
            self._protocol_done = True
            self._protocol.connection_lost(None)

    def _end(self) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
