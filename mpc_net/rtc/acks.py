"""The receiving side of mpc-net's SCTP associations: delayed and piggybacked SACKs, and
cheaper reassembly.

aiortc 1.16 acknowledges every packet that carries DATA with a packet of its own, so each data
channel message costs two UDP datagrams, and every datagram costs tens of microseconds of Python
(DTLS wrapper, SCTP, asyncio) at both ends. RFC 9260 section 6.2 lets a receiver delay its SACK
(at most 200 ms, and at least every second DATA packet gets one), and section 6.10 lets it
bundle the SACK with DATA it sends anyway. MPyC's traffic flows both ways in every round, so the
acknowledgement nearly always rides on the next message back.

A receiver that falls behind its sender (a bulk transfer, with the parties' CPU the bottleneck)
has datagrams waiting in its socket: then a SACK goes for every fourth packet, and for every
second once the socket is empty, so that the SACK for the end of a burst is not delayed. The
SACKs were about a third of a sender's CPU per packet, and with more datagrams waiting the
SACK for two packets tells the sender nothing it would not learn a moment later. RFC 9260 6.2's
every second packet is a SHOULD; Linux TCP acknowledges what one pass of its receive path took
in (GRO) likewise. A receiver that keeps up acknowledges as before.
"""

from __future__ import annotations

import asyncio
from struct import pack

from aiortc.rtcsctptransport import (
    SCTP_DATA_LAST_FRAG,
    SCTP_MAX_PACKET_LENGTH,
    SCTP_TSN_MODULO,
    Chunk,
    DataChunk,
    InboundStream,
    InitChunk,
    RTCSctpTransport,
    SackChunk,
    crc32c,
    tsn_plus_one,
)

from .deadline import wait_again
from .recovery import MOST_PACKETS_PER_SACK, tsn_gt

# How long a SACK may wait for DATA to ride on. Long enough for an MPyC party to answer a round
# (well under a millisecond to a few), short next to aiortc's 1 s minimum retransmission timeout.
SACK_DELAY = 0.02

# RFC 9260 6.2: a SACK goes out for at least every second packet that carried DATA.
PACKETS_PER_SACK = 2

_COMMON_HEADER = 12


class DelayedAckSctpTransport(RTCSctpTransport):
    """aiortc's association, acknowledging late and inside DATA packets where it can."""

    # The SACK timer is not made and cancelled per packet: one timer waits, and when it fires
    # early for a SACK owed since (one sent meanwhile, another owed later), it waits again.
    _sack_timer: asyncio.TimerHandle | None
    _sack_due: float | None  # loop time by which the SACK now owed goes out (None: none owed)
    _packets_unacknowledged: int

    @staticmethod
    def datagrams_waiting() -> bool:
        """Whether datagrams wait in the socket to be read (`receive.py` tells; else no)."""
        return False

    def _start_delaying_acks(self) -> None:
        self._sack_timer = None
        self._sack_due = None
        self._packets_unacknowledged = 0

    def _mark_received(self, tsn: int) -> bool:
        # aiortc sorts and filters its sets of out-of-order and duplicate TSNs for every chunk;
        # the next TSN in order with neither outstanding just advances the cumulative TSN.
        if (tsn == tsn_plus_one(self._last_received_tsn) and not self._sack_misordered
                and not self._sack_duplicates):
            self._last_received_tsn = tsn
            return False
        return super()._mark_received(tsn)

    async def _send_sack(self) -> None:
        # aiortc calls this after every received packet that needs acknowledging.
        self._packets_unacknowledged += 1
        owed = self._packets_unacknowledged
        urgent = (
            owed >= MOST_PACKETS_PER_SACK
            or self._sack_misordered  # a gap: the sender needs it for fast retransmit
            or self._sack_duplicates  # our last SACK may have been lost
            or self._association_state != self.State.ESTABLISHED
            or (owed >= PACKETS_PER_SACK and not self.datagrams_waiting())
        )
        if urgent:
            await self._send_packet(bytes(self._take_sack()))
        elif self._sack_due is None:
            self._sack_due = self._loop.time() + SACK_DELAY
            if self._sack_timer is None:
                self._sack_timer = self._loop.call_at(self._sack_due, self._on_sack_timer)

    async def _send_chunk(self, chunk: Chunk) -> None:
        body = bytes(chunk)
        if self._sack_needed and isinstance(chunk, DataChunk):
            sack = self._take_sack(limit=SCTP_MAX_PACKET_LENGTH - _COMMON_HEADER - len(body))
            if sack is not None:
                body = bytes(sack) + body  # RFC 9260 6.10: SACK ahead of DATA
        await self._send_packet(body)

    def _on_sack_timer(self) -> None:
        timer, self._sack_timer = self._sack_timer, None
        due = self._sack_due
        if due is None or not self._sack_needed:
            return
        self._sack_timer = wait_again(self._loop, timer, due, self._on_sack_timer)
        if self._sack_timer is None and self._association_state == self.State.ESTABLISHED:
            asyncio.ensure_future(self._send_delayed_sack())

    async def _send_delayed_sack(self) -> None:
        if not self._sack_needed:
            return  # DATA carried it meanwhile
        try:
            await self._send_packet(bytes(self._take_sack()))
        except ConnectionError:
            pass  # the association is going away; nothing left to acknowledge to

    def _cancel_sack_timer(self) -> None:
        if self._sack_timer is not None:
            self._sack_timer.cancel()
            self._sack_timer = None
        self._sack_due = None

    def _take_sack(self, limit: int | None = None) -> SackChunk | None:
        """The SACK for everything received so far, now owed to no one (None: over `limit`)."""
        sack = SackChunk()
        sack.cumulative_tsn = self._last_received_tsn
        sack.advertised_rwnd = max(0, self._advertised_rwnd)
        sack.duplicates = list(self._sack_duplicates)
        sack.gaps = _gap_blocks(self._last_received_tsn, self._sack_misordered)
        if limit is not None and 16 + 4 * (len(sack.gaps) + len(sack.duplicates)) > limit:
            return None
        self._sack_duplicates.clear()
        self._sack_needed = False
        self._packets_unacknowledged = 0
        self._sack_due = None  # its timer, if waiting, finds nothing owed or waits again
        return sack

    async def _send_packet(self, body: bytes) -> None:
        """Send chunks (serialized, back to back) as one packet."""
        # RFC 9260 8.5.1: a packet with an INIT carries the verification tag 0. Both ends of a
        # WebRTC association send an INIT, and aiortc takes the peer's tag from the peer's INIT;
        # its timer then sent our INIT again with that tag, which the peer dropped: with both
        # INIT ACKs lost, the association never came up.
        tag = 0 if body[0] == InitChunk.type else self._remote_verification_tag
        header = pack("!HHL", self._local_port, self._remote_port, tag)
        checksum = crc32c(header + b"\x00\x00\x00\x00" + body)
        await self.transport._send_data(header + pack("<L", checksum) + body)

    def _get_inbound_stream(self, stream_id: int) -> InboundStream:
        if stream_id not in self._inbound_streams:
            self._inbound_streams[stream_id] = InOrderInboundStream()
        return self._inbound_streams[stream_id]

    def _set_state(self, state: RTCSctpTransport.State) -> None:
        if state == self.State.CLOSED:
            self._cancel_sack_timer()
        super()._set_state(state)


class InOrderInboundStream(InboundStream):
    """aiortc's reassembly, without its search after fragments that cannot end a message.

    aiortc looks for complete messages from the start of the reassembly queue after every
    chunk, so a message of k fragments costs k^2/2 steps: for mpc-net's 256 KiB messages (224
    fragments) that search was most of the receiver's time. A chunk that arrives in order and
    is not a message's last fragment completes nothing, so the search is skipped for it.
    """

    _may_complete = True

    def add_chunk(self, chunk: DataChunk) -> None:
        in_order = not self.reassembly or tsn_gt(chunk.tsn, self.reassembly[-1].tsn)
        self._may_complete = not in_order or bool(chunk.flags & SCTP_DATA_LAST_FRAG)
        super().add_chunk(chunk)

    def pop_messages(self):
        if self._may_complete:
            yield from super().pop_messages()

    def prune_chunks(self, tsn: int) -> int:
        self._may_complete = True  # pruning may unblock messages further on
        return super().prune_chunks(tsn)


def _gap_blocks(cumulative_tsn: int, received: set[int]) -> list[tuple[int, int]]:
    """Gap ack blocks (offsets from the cumulative TSN) for TSNs received beyond it."""
    blocks: list[list[int]] = []
    following = None
    for tsn in sorted(received):
        offset = (tsn - cumulative_tsn) % SCTP_TSN_MODULO
        if tsn == following:
            blocks[-1][1] = offset
        else:
            blocks.append([offset, offset])
        following = tsn_plus_one(tsn)
    return [(start, end) for start, end in blocks]
