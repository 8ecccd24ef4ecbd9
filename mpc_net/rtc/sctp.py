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

Losses are repaired sooner, as Linux TCP repairs them: a lost last chunk of a message gets a
tail-loss probe two round trips on instead of the timeout (RFC 8985); a hole that only one SACK
can ever report (nothing follows it) is retransmitted at once (RFC 5827's early retransmit);
and after a timeout, which drops the window to one packet, only the chunks the peer has not
reported go again, not those in its gap blocks (as Linux's SCTP does). Each repaired loss
halves the congestion window, as RFC 9260 7.2.3 does for fast retransmit; a timeout that the
first SACK after it shows to have been spurious (a peer busy in its computation acknowledges
nothing, where a kernel's TCP would) gives the window back (RFC 5682, RFC 4015).

Only the acknowledgement and sending policy change; the chunks on the wire are standard, so
browsers and plain aiortc peers interoperate unchanged (tests/test_mitm.py relays through plain
aiortc, tests/browser through Chromium). MPC_NET_STOCK_SCTP=1 leaves all of this out
(`patches.tune_association`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import Counter
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

# MPC_NET_SCTP_TRACE=1: every timeout and fast retransmit, and a summary when the association
# closes, on stderr; for finding where a run across a WAN loses its time.
TRACE = os.environ.get("MPC_NET_SCTP_TRACE") == "1"


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
    _loss_events: Counter[str]
    _largest_cwnd: int
    _first_tsn: int
    _probe_handle: asyncio.TimerHandle | None
    _probe_tsn: int | None
    _timeouts_in_a_row: int
    _before_timeout: tuple[int, int] | None

    @classmethod
    def adopt(cls, association: RTCSctpTransport) -> None:
        association.__class__ = cls
        assert isinstance(association, cls)
        association._sack_timer = None
        association._packets_unacknowledged = 0
        association._retransmissions_possible = False
        association._data_sent_at = time.monotonic()
        association._cwnd = INITIAL_WINDOW_PACKETS * USERDATA_MAX_LENGTH
        association._loss_events = Counter()
        association._largest_cwnd = association._cwnd
        association._first_tsn = association._local_tsn
        association._probe_handle = None
        association._probe_tsn = None
        association._timeouts_in_a_row = 0
        association._before_timeout = None

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
            if chunk._sent_count > 1:
                self._loss_events["retransmitted chunks"] += 1
        await self._send_packet(body)

    # aiortc looks through every chunk in flight for one to retransmit, each time it transmits:
    # with hundreds of chunks in flight that scan was the largest cost of a bulk transfer. Only
    # a SACK reporting gaps or a T3 timeout marks chunks for retransmission (RFC 9260 7.2.4,
    # 6.3.3), so until one of those happens there is only new data to send.

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        if uint32_gt(self._last_sacked_tsn, chunk.cumulative_tsn):
            return  # older than one already handled (aiortc ignores it too)
        if chunk.gaps:
            self._retransmissions_possible = True
        if uint32_gt(chunk.cumulative_tsn, self._last_sacked_tsn):
            self._timeouts_in_a_row = 0
        probe_repaired = self._probe_answered(chunk)
        spurious = self._timeout_was_spurious(chunk)
        cwnd = self._cwnd
        slow_start = cwnd <= self._ssthresh
        acknowledged = self._newly_acknowledged(chunk.cumulative_tsn) if slow_start else 0
        recovering = self._fast_recovery_exit is not None
        await super()._receive_sack_chunk(chunk)
        if not recovering and self._fast_recovery_exit is not None:
            self._trace("fast retransmit")
        elif slow_start and self._cwnd == cwnd + USERDATA_MAX_LENGTH:
            # aiortc grew the window by one packet, RFC 9260's limit per SACK; with a SACK for
            # every second packet that is 1.5x per round trip. Like TCP with delayed ACKs
            # (RFC 3465, L = 2), up to two packets per SACK: doubling, as TCP and dcsctp's
            # slow_start_tcp_style do.
            self._cwnd += max(0, min(acknowledged - USERDATA_MAX_LENGTH, USERDATA_MAX_LENGTH))
        if chunk.gaps and self._retransmit_early():
            await self._transmit()
        elif probe_repaired and self._fast_recovery_exit is None:
            self._trace("loss repaired by a probe")
            self._reduce_window()
        if spurious is not None:
            self._trace("spurious timeout")
            self._cwnd, self._ssthresh = spurious
            for sent in self._sent_queue:  # their first sends are most likely there too
                if sent._retransmit:
                    sent._retransmit = False
                    self._flight_size_increase(sent)
        self._largest_cwnd = max(self._largest_cwnd, self._cwnd)

    def _retransmit_early(self) -> bool:
        """Mark the holes below the last chunk sent as lost once a SACK reports that chunk
        received and nothing is left to send: no later SACK could add the two more reports
        that fast retransmit waits for (RFC 5827's early retransmit, at its limit). Whether it
        marked any."""
        if self._outbound_queue or not self._sent_queue or not self._sent_queue[-1]._acked:
            return False
        lost = [c for c in self._sent_queue
                if c._misses and not c._acked and not c._retransmit and c._sent_count == 1]
        for sent in lost:
            sent._misses = 0
            sent._retransmit = True
            self._flight_size_decrease(sent)
        if not lost:
            return False
        self._retransmissions_possible = True
        self._trace("early retransmit")
        if self._fast_recovery_exit is None:  # as aiortc enters fast recovery
            self._reduce_window()
            self._fast_recovery_exit = self._sent_queue[-1].tsn
            self._fast_recovery_transmit = True
        return True

    def _reduce_window(self) -> None:
        """A loss: halve the window (RFC 9260 7.2.3), as aiortc's fast retransmit does."""
        self._ssthresh = max(self._cwnd // 2, 4 * USERDATA_MAX_LENGTH)
        self._cwnd = self._ssthresh
        self._partial_bytes_acked = 0

    # Tail-loss probes (RFC 8985's TLP, as Linux TCP sends them): when the last chunks of a
    # message are lost, no SACK reports the loss and only the retransmission timer would
    # recover it. Two smoothed round trips after the last SACK (plus the peer's SACK delay),
    # with nothing new to send, the last chunk in flight goes again: its SACK reports what the
    # peer lacks, and fast (or early) retransmit repairs it. One probe per tail; a chunk that
    # only the probe delivered (the peer reports no duplicate) counts as a loss.

    def _arm_probe(self) -> None:
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        if (self._outbound_queue or self._srtt is None or self._probe_tsn is not None
                or self._fast_recovery_exit is not None or self._probe_target() is None):
            return
        # Our peers delay the SACK of an odd last packet by SACK_DELAY.
        timeout = 2 * self._srtt + SACK_DELAY
        self._probe_handle = self._loop.call_later(timeout, self._on_probe_timer)

    def _probe_target(self) -> DataChunk | None:
        """The last chunk in flight (None: none, or one is already marked for retransmission).

        Even a lone one: RFC 8985 waits 200 ms more for it, the longest a peer may delay its
        SACK, but mpc-net's peers delay theirs by SACK_DELAY; a browser that waits longer
        gets at worst one needless duplicate, which it acknowledges at once.
        """
        for sent in reversed(self._sent_queue):
            if sent._retransmit:
                return None
            if not sent._acked:
                return sent
        return None

    def _on_probe_timer(self) -> None:
        self._probe_handle = None
        target = self._probe_target()
        if target is None or self._association_state != self.State.ESTABLISHED:
            return
        self._probe_tsn = target.tsn
        self._trace("probe")
        target._sent_count += 1
        run_eagerly(self._send_chunk(target))

    def _probe_answered(self, chunk: SackChunk) -> bool:
        """Whether `chunk` acknowledges the probe, which the peer had not received before."""
        probe = self._probe_tsn
        if probe is None:
            return False
        if not _acknowledges(chunk, probe):
            return False
        self._probe_tsn = None
        # (A first send's SACK delayed past the probe also counts: a needless halving.)
        return probe not in chunk.duplicates

    def _timeout_was_spurious(self, chunk: SackChunk) -> tuple[int, int] | None:
        """The window and slow-start threshold from before the last timeout, if the first SACK
        after it acknowledges a chunk that the timeout marked and nothing has sent again: the
        first send arrived, so the timeout came from a late SACK (a peer busy in its
        computation, say), not from a loss (RFC 4015's Eifel response, detected as RFC 5682's
        F-RTO does)."""
        before, self._before_timeout = self._before_timeout, None
        if before is None:
            return None
        spurious = any(sent._retransmit and _acknowledges(chunk, sent.tsn)
                       for sent in self._sent_queue)
        return before if spurious else None

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
        self._trace("timeout")
        self._retransmissions_possible = True
        self._probe_tsn = None
        self._timeouts_in_a_row += 1
        self._before_timeout = (self._cwnd, self._ssthresh) if self._timeouts_in_a_row == 1 \
            else None
        super()._t3_expired()
        if self._timeouts_in_a_row == 1:
            # aiortc sends again what the peer reported received in gap blocks too, one packet
            # per round trip from a window of one; like Linux's SCTP, only the rest
            # goes. A peer may drop what it reported (renege, RFC 9260 6.2): a second timeout
            # without progress sends everything.
            for sent in self._sent_queue:
                if sent._acked:
                    sent._retransmit = False
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
            self._arm_probe()
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
        self._arm_probe()

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
            if self._probe_handle is not None:
                self._probe_handle.cancel()
            if TRACE and self._association_state != state:
                sent = (self._local_tsn - self._first_tsn) % SCTP_TSN_MODULO
                sys.stderr.write(f"sctp: {sent} chunks sent, {dict(self._loss_events)}, "
                                 f"largest window {self._largest_cwnd // USERDATA_MAX_LENGTH} "
                                 "packets\n")
        super()._set_state(state)

    def _trace(self, event: str) -> None:
        self._loss_events[event] += 1
        if TRACE:
            sys.stderr.write(f"sctp: {time.monotonic():.3f} {event}: window "
                             f"{self._cwnd // USERDATA_MAX_LENGTH} packets, "
                             f"{self._flight_size} bytes in flight, RTO {self._rto:.3f} s\n")

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


def _acknowledges(sack: SackChunk, tsn: int) -> bool:
    """Whether `sack` reports `tsn` received, cumulatively or in a gap block."""
    cumulative = sack.cumulative_tsn
    return not uint32_gt(tsn, cumulative) or any(
        _tsn_between(cumulative + start, tsn, cumulative + end) for start, end in sack.gaps)


def _tsn_between(low: int, tsn: int, high: int) -> bool:
    """low <= tsn <= high in serial number arithmetic (RFC 1982)."""
    low, high = low % SCTP_TSN_MODULO, high % SCTP_TSN_MODULO
    return not uint32_gt(low, tsn) and not uint32_gt(tsn, high)
