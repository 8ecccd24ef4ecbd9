"""Fewer datagrams per message on aiortc's SCTP association: delayed and piggybacked SACKs.

aiortc 1.16 acknowledges every packet that carries DATA with a packet of its own, so each data
channel message costs two UDP datagrams, and every datagram costs tens of microseconds of Python
(DTLS wrapper, SCTP, asyncio) at both ends. RFC 9260 section 6.2 lets a receiver delay its SACK
(at most 200 ms, and at least every second DATA packet gets one), and section 6.10 lets it
bundle the SACK with DATA it sends anyway. MPyC's traffic flows both ways in every round, so the
acknowledgement nearly always rides on the next message back.

Sending also starts at once: aiortc hands every message to a new task, which runs only on the
next turn of the event loop; here the message goes out within the `send` call unless the path
has to wait (a TURN channel binding, say), and only then a task finishes the job.

The congestion window is fit for MPC rounds across the internet, as Chrome's SCTP (dcsctp) and
Linux TCP tune theirs within RFC 9260 section 7.2: aiortc starts at about 3 packets and sends at
most 4 beyond those in flight at a time, so a round of a few hundred kilobytes took many round
trips more than over TCP, which starts at 10 (RFC 6928). Here the window starts at 10 packets,
as much may go out at once, slow start doubles it per round trip as TCP's does, and after an
idle gap longer than the retransmission timeout it is halved per timeout but not below those 10
packets (RFC 9260 7.2.1; Linux's restart window), so the short pauses between MPC rounds keep it
open. RFC 9260's 1 s minimum retransmission timeout made every lost last packet of a round cost
a second; like Linux TCP, the timeout is the smoothed round trip plus at least 200 ms (a peer
may delay its SACK that long), and it doubles on each expiry (6.3.3 E2, which aiortc leaves
out).

Only the acknowledgement and sending policy change; the chunks on the wire are standard, so
browsers and plain aiortc peers interoperate unchanged (tests/test_mitm.py relays through plain
aiortc, tests/browser through Chromium). MPC_NET_STOCK_SCTP=1 leaves all of this out
(`patches.tune_association`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from struct import pack

from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import (
    SCTP_DATA_LAST_FRAG,
    SCTP_MAX_PACKET_LENGTH,
    SCTP_RTO_MAX,
    SCTP_TSN_MODULO,
    USERDATA_MAX_LENGTH,
    WEBRTC_BINARY,
    Chunk,
    DataChunk,
    InboundStream,
    RTCSctpTransport,
    SackChunk,
    crc32c,
    tsn_plus_one,
    uint32_gt,
)

logger = logging.getLogger("mpc_net.native")

# How long a SACK may wait for DATA to ride on. Long enough for an MPyC party to answer a round
# (well under a millisecond to a few), short next to aiortc's 1 s minimum retransmission timeout.
SACK_DELAY = 0.02

# RFC 9260 6.2: a SACK goes out for at least every second packet that carried DATA.
PACKETS_PER_SACK = 2

_COMMON_HEADER = 12

# The congestion window at the start, and how many packets one transmission may add to those in
# flight (RFC 9260's Max.Burst, 4 there): dcsctp's cwnd_mtus_initial, TCP's initial window.
INITIAL_WINDOW_PACKETS = 10
MAX_BURST_PACKETS = INITIAL_WINDOW_PACKETS
# The retransmission timeout is at least the smoothed round trip plus this: Linux TCP's minimum,
# and the longest a peer may delay a SACK (RFC 9260 6.2). RFC 9260's RTO.Min is 1 s.
RTO_MARGIN = 0.2


class PiggybackSctpTransport(RTCSctpTransport):
    """aiortc's association, acknowledging late and inside DATA packets where it can, with a
    congestion window and retransmission timeout fit for MPC rounds.

    Installed on an existing association with `adopt`, because aiortc's RTCPeerConnection
    creates its association itself.
    """

    _sack_timer: asyncio.TimerHandle | None
    _packets_unacknowledged: int
    _retransmissions_possible: bool
    _data_sent_at: float

    @classmethod
    def adopt(cls, association: RTCSctpTransport) -> None:
        association.__class__ = cls
        assert isinstance(association, cls)
        association._sack_timer = None
        association._packets_unacknowledged = 0
        association._retransmissions_possible = False
        association._data_sent_at = time.monotonic()
        association._cwnd = INITIAL_WINDOW_PACKETS * USERDATA_MAX_LENGTH

    async def _send_sack(self) -> None:
        # aiortc calls this after every received packet that needs acknowledging.
        self._packets_unacknowledged += 1
        urgent = (
            self._packets_unacknowledged >= PACKETS_PER_SACK
            or self._sack_misordered  # a gap: the sender needs it for fast retransmit
            or self._sack_duplicates  # our last SACK may have been lost
            or self._association_state != self.State.ESTABLISHED
        )
        if urgent:
            await self._send_packet(bytes(self._take_sack()))
        elif self._sack_timer is None:
            self._sack_timer = self._loop.call_later(SACK_DELAY, self._on_sack_timer)

    async def _send_chunk(self, chunk: Chunk) -> None:
        body = bytes(chunk)
        if self._sack_needed and isinstance(chunk, DataChunk):
            sack = self._take_sack(limit=SCTP_MAX_PACKET_LENGTH - _COMMON_HEADER - len(body))
            if sack is not None:
                body = bytes(sack) + body  # RFC 9260 6.10: SACK ahead of DATA
        if isinstance(chunk, DataChunk):
            self._data_sent_at = time.monotonic()
        await self._send_packet(body)

    # aiortc looks through every chunk in flight for one to retransmit, each time it transmits:
    # with hundreds of chunks in flight that scan was the largest cost of a bulk transfer. Only
    # a SACK reporting gaps or a T3 timeout marks chunks for retransmission (RFC 9260 7.2.4,
    # 6.3.3), so until one of those happens there is only new data to send.

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        if chunk.gaps:
            self._retransmissions_possible = True
        cwnd = self._cwnd
        slow_start = cwnd <= self._ssthresh
        acknowledged = self._newly_acknowledged(chunk.cumulative_tsn) if slow_start else 0
        await super()._receive_sack_chunk(chunk)
        if slow_start and self._cwnd == cwnd + USERDATA_MAX_LENGTH:
            # aiortc grew the window by one packet, RFC 9260's limit per SACK; with a SACK for
            # every second packet that is 1.5x per round trip. Like TCP with delayed ACKs
            # (RFC 3465, L = 2), up to two packets per SACK: doubling, as TCP and dcsctp's
            # slow_start_tcp_style do.
            self._cwnd += max(0, min(acknowledged - USERDATA_MAX_LENGTH, USERDATA_MAX_LENGTH))

    def _newly_acknowledged(self, cumulative_tsn: int) -> int:
        """Bytes of the chunks in flight that a SACK up to `cumulative_tsn` acknowledges."""
        total = 0
        for sent in self._sent_queue:
            if uint32_gt(sent.tsn, cumulative_tsn):
                break
            if not sent._acked:
                total += sent._book_size
        return total

    def _t3_expired(self) -> None:
        self._retransmissions_possible = True
        super()._t3_expired()
        self._rto = min(2 * self._rto, SCTP_RTO_MAX)  # back off until a new measurement

    def _update_rto(self, R: float) -> None:
        super()._update_rto(R)
        assert self._srtt is not None and self._rttvar is not None
        self._rto = min(SCTP_RTO_MAX, self._srtt + max(4 * self._rttvar, RTO_MARGIN))

    def _restart_after_idle(self) -> None:
        """Halve the window per retransmission timeout without data in flight, down to the
        initial window at the least (RFC 9260 7.2.1, with Linux's restart window as floor)."""
        idle = time.monotonic() - self._data_sent_at
        floor = INITIAL_WINDOW_PACKETS * USERDATA_MAX_LENGTH
        if idle > self._rto and self._cwnd > floor:
            halvings = min(int(idle / self._rto), 32)
            self._cwnd = max(floor, self._cwnd >> halvings)

    async def _transmit(self) -> None:
        if self._retransmissions_possible or self._forward_tsn_chunk is not None:
            await super()._transmit()
            self._retransmissions_possible = any(c._retransmit for c in self._sent_queue)
            return
        if self._outbound_queue and not self._sent_queue:
            self._restart_after_idle()  # what it sends now ends the idle time
        packets = 2 if self._fast_recovery_exit is not None else MAX_BURST_PACKETS
        burst = packets * USERDATA_MAX_LENGTH
        window = min(self._flight_size + burst, self._cwnd)
        while self._outbound_queue and self._flight_size < window:
            chunk = self._outbound_queue.popleft()
            self._sent_queue.append(chunk)
            self._flight_size_increase(chunk)
            chunk._sent_count += 1
            chunk._sent_time = time.time()
            await self._send_chunk(chunk)
            if not self._t3_handle:
                self._t3_start()

    def _get_inbound_stream(self, stream_id: int) -> InboundStream:
        if stream_id not in self._inbound_streams:
            self._inbound_streams[stream_id] = InOrderInboundStream()
        return self._inbound_streams[stream_id]

    def _data_channel_send(self, channel: RTCDataChannel, data: bytes | str) -> None:
        if not isinstance(data, bytes) or not data:
            super()._data_channel_send(channel, data)  # mpc-net sends neither
            return
        if self._remote_max_message_size and len(data) > self._remote_max_message_size:
            raise ValueError(f"a message of {len(data)} bytes exceeds the peer's maximum "
                             f"message size ({self._remote_max_message_size} bytes)")
        channel._addBufferedAmount(len(data))
        self._data_channel_queue.append((channel, WEBRTC_BINARY, data))
        run_eagerly(self._data_channel_flush())

    def _set_state(self, state: RTCSctpTransport.State) -> None:
        if state == self.State.CLOSED:
            self._cancel_sack_timer()
        super()._set_state(state)

    def _on_sack_timer(self) -> None:
        self._sack_timer = None
        if self._sack_needed and self._association_state == self.State.ESTABLISHED:
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
        self._cancel_sack_timer()
        return sack

    async def _send_packet(self, body: bytes) -> None:
        """Send chunks (serialized, back to back) as one packet."""
        header = pack("!HHL", self._local_port, self._remote_port, self._remote_verification_tag)
        checksum = crc32c(header + b"\x00\x00\x00\x00" + body)
        await self.transport._send_data(header + pack("<L", checksum) + body)


class InOrderInboundStream(InboundStream):
    """aiortc's reassembly, without its search after fragments that cannot end a message.

    aiortc looks for complete messages from the start of the reassembly queue after every
    chunk, so a message of k fragments costs k^2/2 steps: for mpc-net's 256 KiB messages (224
    fragments) that search was most of the receiver's time. A chunk that arrives in order and
    is not a message's last fragment completes nothing, so the search is skipped for it.
    """

    _may_complete = True

    def add_chunk(self, chunk: DataChunk) -> None:
        in_order = not self.reassembly or uint32_gt(chunk.tsn, self.reassembly[-1].tsn)
        self._may_complete = not in_order or bool(chunk.flags & SCTP_DATA_LAST_FRAG)
        super().add_chunk(chunk)

    def pop_messages(self):
        if self._may_complete:
            yield from super().pop_messages()

    def prune_chunks(self, tsn: int) -> int:
        self._may_complete = True  # pruning may unblock messages further on
        return super().prune_chunks(tsn)


def run_eagerly(coroutine: Coroutine) -> None:
    """Run `coroutine` now, as far as it goes without waiting; a task finishes the rest.

    (Python 3.12's eager task factory does this for whole loops.)
    """
    try:
        awaited = coroutine.send(None)
    except StopIteration:
        return
    except Exception as exc:  # as a task's failure: the channel's own events report it
        logger.debug("aiortc: %r", exc)
        return
    asyncio.ensure_future(_finish(coroutine, awaited))


async def _finish(coroutine: Coroutine, awaited: object) -> None:
    while True:
        try:
            if awaited is None:
                await asyncio.sleep(0)  # a bare yield: let the loop turn
            else:
                await awaited  # type: ignore[misc]
        except BaseException:
            pass  # the coroutine itself sees the outcome when it resumes
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return
        except Exception as exc:
            logger.debug("aiortc: %r", exc)
            return


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
