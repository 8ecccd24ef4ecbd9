"""The send path of mpc-net's connections: each SCTP packet encrypted and handed to the socket in
one step, and the packets of one transmission to the kernel in one system call.

aiortc sends a packet through five coroutines before it reaches asyncio's socket transport:
the DTLS transport's `_send_data` and `_write_ssl`, the ICE transport's `_send` (aioice's
`Connection.send`), `Connection.sendto`, which looks up the nominated candidate pair, and the
pair's protocol's `send_data`. None of them waits for anything on a direct UDP path; together
they were a fifth of a sender's CPU time per packet in a bulk transfer.

Once DTLS is connected and the nominated pair's protocol is aioice's `StunProtocol`,
`DatagramSender` does what those layers do, in the same order: OpenSSL encrypts the packet into
one record, the record goes to the pair's remote address through the protocol's transport,
as `StunProtocol.send_data` sends it (a socket's asyncio transport; for a relayed candidate
aioice's TURN transport, which wraps each datagram for the relay and may wait for a channel
binding, in order, in tasks of its own). Anything else,
and anything before or after that state, takes aiortc's own path. The DTLS transport's byte and
packet counters (only its `getStats` reads them, which mpc-net's parties never call) do not count
what this sends.

While the association transmits (`hold` ... `release`: a burst of up to 10 DATA packets, what a
SACK lets out), the records wait, and at the end go to a plain socket as few system calls: on
Linux one `sendmsg` with UDP generic segmentation offload (`UDP_SEGMENT`, as QUIC stacks send)
for each run of records of one size, which the kernel cuts into the same datagrams that
`sendto` would have sent one by one. A datagram's `sendto` was the largest single cost left on
the sending side. A kernel or device that refuses it (an error other than a full socket buffer)
turns it off for the connection, and the records go one by one, as before.
"""

from __future__ import annotations

import asyncio
import struct
import sys

from aioice import Connection
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import SSL, State  # SSL: the OpenSSL bindings aiortc's DTLS uses

from .sctp import PiggybackSctpTransport

# aiortc reads at most this much of a record from OpenSSL (RFC 9260 packets stay well below).
RECORD_MAX = 1500

COMPONENT = 1  # a data channel's only ICE component (RTP's; rtcp-mux)

# Linux's UDP generic segmentation offload (linux/udp.h), and its limits: at most 64 segments
# (UDP_MAX_SEGMENTS before Linux 6.9) of one IP datagram's payload.
SOL_UDP = 17
UDP_SEGMENT = 103
MOST_SEGMENTS = 64
MOST_SEGMENTED_BYTES = 65000

# Where a pair's datagrams go: the nominated pair's transport and the remote address.
Destination = tuple[asyncio.DatagramTransport, tuple]


class DatagramSender:
    """Sends one DTLS transport's packets straight to the nominated pair's socket, once it
    can; those of one transmission together."""

    def __init__(self, dtls: RTCDtlsTransport, association: PiggybackSctpTransport) -> None:
        self._dtls = dtls
        self._connection: Connection = dtls.transport._connection
        self._aiortc_send_data = dtls._send_data
        self._holding = 0  # transmissions under way, nested
        self._held: list[bytes] = []
        self._held_to: Destination | None = None  # where the held records go
        self._segmenting = sys.platform == "linux"
        dtls._send_data = self.send_data
        association.hold_datagrams = self.hold  # type: ignore[method-assign]
        association.release_datagrams = self.release  # type: ignore[method-assign]

    def hold(self) -> None:
        """A transmission begins: records wait for its end."""
        self._holding += 1

    def release(self) -> None:
        """A transmission ends: what it sent goes to the socket."""
        self._holding -= 1
        if not self._holding and self._held:
            self._flush()

    async def send_data(self, data: bytes) -> None:
        """What aiortc's `RTCDtlsTransport._send_data` does, without its layers."""
        dtls = self._dtls
        pair = self._connection._nominated.get(COMPONENT)
        if (dtls._state is not State.CONNECTED or pair is None
                or type(pair.protocol) is not StunProtocol):
            if self._held:
                self._flush()  # in order
            await self._aiortc_send_data(data)
            return
        ssl = dtls._ssl
        ssl.send(data)
        try:
            record = ssl.bio_read(RECORD_MAX)
        except SSL.Error:
            return  # as aiortc: nothing to send
        transport = pair.protocol.transport
        if not self._holding:
            transport.sendto(record, pair.remote_addr)
            return
        destination = (transport, pair.remote_addr)
        if self._held and destination != self._held_to:
            self._flush()
        self._held_to = destination
        self._held.append(record)

    def _flush(self) -> None:
        records, self._held = self._held, []
        assert self._held_to is not None
        transport, address = self._held_to
        start = 0
        if self._segmenting and transport.get_extra_info("socket") is not None:
            # A relayed candidate's TURN transport has no socket (nor room for segments).
            start = self._send_segmented(transport, address, records)
        for record in records[start:]:
            transport.sendto(record, address)

    def _send_segmented(self, transport: asyncio.DatagramTransport, address: tuple,
                        records: list[bytes]) -> int:
        """Send runs of records of one size (the last may be shorter) with UDP_SEGMENT; how
        many records went (the rest go through the transport, in order)."""
        sock = transport._sock  # type: ignore[attr-defined]
        start, count = 0, len(records)
        while start < count:
            if transport.get_write_buffer_size() or transport.is_closing():
                return start  # asyncio's buffer goes first, or reports the closing
            size = len(records[start])
            end = start + 1
            stop = min(count, start + min(MOST_SEGMENTS, MOST_SEGMENTED_BYTES // size))
            while end < stop and len(records[end]) == size:
                end += 1
            if end < stop and len(records[end]) < size:
                end += 1  # a shorter last segment
            if end - start == 1:
                transport.sendto(records[start], address)
            else:
                try:
                    sock.sendmsg(records[start:end],
                                 [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))], 0, address)
                except (BlockingIOError, InterruptedError):
                    return start  # the transport buffers them
                except OSError:
                    self._segmenting = False  # not on this kernel, device or path
                    return start
            start = end
        return start
