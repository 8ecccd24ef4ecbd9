"""mpc-net's SCTP association: aiortc's, with delayed and piggybacked SACKs (`acks.py`), a
congestion window and loss recovery fit for MPC rounds (`recovery.py` decides, this class runs
the timers and sends), eager sends, and DATA right after the COOKIE ECHO (`cookie_echo.py`).

Sending starts at once: aiortc hands every message to a new task, which runs only on the next
turn of the event loop; here the message goes out within the `send` call unless the path has to
wait (a TURN channel binding, say), and only then a task finishes the job.

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
from collections.abc import Callable, Coroutine

from aiortc import RTCDataChannel
from aiortc.rtcsctptransport import (
    SCTP_RTO_MAX,
    SCTP_TSN_MODULO,
    USERDATA_MAX_LENGTH,
    WEBRTC_BINARY,
    Chunk,
    DataChunk,
    RTCSctpTransport,
    SackChunk,
)

from .acks import SACK_DELAY
from .cookie_echo import CookieEchoDataSctpTransport
from .deadline import wait_again
from .recovery import (
    NOT_FAST_RETRANSMITTED_AGAIN,
    RTO_INITIAL,
    WindowControl,
    early_losses,
    newly_acknowledged,
    probe_target,
    tsn_gt,
)
from .timers import MovedT3SctpTransport

logger = logging.getLogger("mpc_net.native")

# MPC_NET_SCTP_TRACE=1: every timeout and fast retransmit, and a summary when the association
# closes, on stderr; for finding where a run across a WAN loses its time.
TRACE = os.environ.get("MPC_NET_SCTP_TRACE") == "1"


class PiggybackSctpTransport(CookieEchoDataSctpTransport, MovedT3SctpTransport):
    """aiortc's association, acknowledging late and inside DATA packets where it can, with a
    congestion window and retransmission timeout fit for MPC rounds.

    Installed on an existing association with `adopt`, because aiortc's RTCPeerConnection
    creates its association itself.
    """

    _window: WindowControl
    _retransmissions_possible: bool
    _first_tsn: int
    _probe_handle: asyncio.TimerHandle | None
    _probe_due: float | None  # loop time the running probe timer was moved to (None: its own)
    _pacing_handle: asyncio.TimerHandle | None  # the next burst of a window held back
    _deferred: set[asyncio.TimerHandle]  # timers that waited for input already

    @classmethod
    def adopt(cls, association: RTCSctpTransport) -> None:
        association.__class__ = cls
        assert isinstance(association, cls)
        association._start_delaying_acks()
        association._window = WindowControl(USERDATA_MAX_LENGTH, time.monotonic())
        association._cwnd = association._window.initial_window
        if association._srtt is None:
            association._rto = RTO_INITIAL
        association._retransmissions_possible = False
        association._first_tsn = association._local_tsn
        association._probe_handle = association._pacing_handle = None
        association._probe_due = None
        association._deferred = set()

    async def _send_chunk(self, chunk: Chunk) -> None:
        if isinstance(chunk, DataChunk):
            self._window.data_sent_at = time.monotonic()
            if chunk._sent_count > 1:
                self._window.events["retransmitted chunks"] += 1
                self._window.resent(chunk.tsn)
                chunk._misses = NOT_FAST_RETRANSMITTED_AGAIN
        await super()._send_chunk(chunk)

    # aiortc looks through every chunk in flight for one to retransmit, each time it transmits:
    # with hundreds of chunks in flight that scan was the largest cost of a bulk transfer. Only
    # a SACK reporting gaps or a T3 timeout marks chunks for retransmission (RFC 9260 7.2.4,
    # 6.3.3), so until one of those happens there is only new data to send.

    async def _receive_sack_chunk(self, chunk: SackChunk) -> None:
        window = self._window
        if tsn_gt(self._last_sacked_tsn, chunk.cumulative_tsn):
            return  # older than one already handled (aiortc ignores it too)
        if chunk.gaps:
            self._retransmissions_possible = True
        if tsn_gt(chunk.cumulative_tsn, self._last_sacked_tsn):
            window.progress()
        probe_repaired = window.probe_answered(chunk)
        spurious = window.spurious_timeout(chunk, self._sent_queue)
        cwnd = self._cwnd
        slow_start = cwnd <= self._ssthresh
        recovering = self._fast_recovery_exit is not None
        # RFC 9260 7.2.1-2: the window grows only while it is in use.
        growing = not recovering and window.in_use(self._flight_size, cwnd,
                                                   self._last_sacked_tsn, slow_start)
        acknowledged = newly_acknowledged(self._sent_queue, chunk.cumulative_tsn) \
            if growing else 0
        await super()._receive_sack_chunk(chunk)
        if not recovering and self._fast_recovery_exit is not None:
            self._trace("fast retransmit")
            self._reduce_window(cwnd)  # CUBIC's reduction, where aiortc halved it
        elif slow_start and acknowledged:
            self._cwnd = cwnd + window.slow_start_growth(acknowledged)  # aiortc: one packet
        elif acknowledged and self._fast_recovery_exit is None:
            self._cwnd = window.avoidance_window(cwnd, acknowledged, time.monotonic(), self._srtt)
            self._partial_bytes_acked = 0  # aiortc's Reno growth, replaced
        if chunk.gaps and self._retransmit_early():
            await self._transmit()
        elif probe_repaired and self._fast_recovery_exit is None:
            self._trace("loss repaired by a probe")
            self._reduce_window()
        if spurious is None:
            spurious = window.timeouts_undone(chunk, self._sent_queue)
            if spurious is not None:
                self._trace("timeouts undone by duplicate reports")
        else:
            self._trace("spurious timeout")
        if spurious is not None:
            self._cwnd, self._ssthresh = spurious
            for sent in self._sent_queue:  # their first sends are most likely there too
                if sent._retransmit:
                    sent._retransmit = False
                    self._flight_size_increase(sent)
        window.note_window(self._cwnd)

    def _retransmit_early(self) -> bool:
        """Mark the holes RFC 5827's early retransmit finds as lost; whether there were any."""
        lost = early_losses(self._sent_queue, bool(self._outbound_queue))
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

    def _reduce_window(self, window: int | None = None) -> None:
        """A loss, with the window `window` (or the current one) in force."""
        self._window.loss()
        self._ssthresh = self._window.reduced_threshold(window or self._cwnd)
        self._cwnd = self._ssthresh
        self._partial_bytes_acked = 0

    def _arm_probe(self) -> None:
        # At every SACK of a flight's last round trip: the deadline moves later, and a timer
        # made and cancelled each time cost as much as T3's did (`timers.py`).
        delay = self._window.probe_delay(self._srtt, SACK_DELAY, bool(self._outbound_queue),
                                         self._fast_recovery_exit is not None, self._sent_queue)
        due = None if delay is None else self._loop.time() + delay
        handle = self._probe_handle
        if handle is not None and due is not None and handle.when() <= due:
            self._probe_due = due
            return
        if handle is not None:
            handle.cancel()
        self._probe_handle = None if due is None else self._loop.call_at(due,
                                                                         self._on_probe_timer)
        self._probe_due = None

    def _on_probe_timer(self) -> None:
        due, self._probe_due = self._probe_due, None
        later = wait_again(self._loop, self._probe_handle, due, self._on_probe_timer)
        if later is not None:
            self._probe_handle = later
            return
        self._probe_handle = self._input_first(self._probe_handle, self._on_probe_timer)
        if self._probe_handle is not None:
            return
        target = probe_target(self._sent_queue)
        if target is None or self._association_state != self.State.ESTABLISHED:
            return
        self._window.probe_tsn = target.tsn
        self._trace("probe")
        target._sent_count += 1
        run_eagerly(self._send_chunk(target))

    def _input_first(self, handle: asyncio.TimerHandle | None,
                     callback: Callable[[], None]) -> asyncio.TimerHandle | None:
        """The timer that runs `callback` once the loop has taken in its input, if `handle`
        fired late because this process stalled (None: act now)."""
        if handle is None:
            return None
        deferred = handle in self._deferred
        self._deferred.discard(handle)
        grace = self._window.input_grace(self._loop.time() - handle.when(), deferred)
        if grace is None:
            return None
        self._window.stalls += 1
        self._trace("late timer", counted=False)
        later = self._loop.call_later(grace, callback)
        self._deferred = {h for h in self._deferred if not h.cancelled()} | {later}
        return later

    def _t3_expired(self) -> None:
        if self._t3_moved():
            return
        later = self._input_first(self._t3_handle, self._t3_expired)
        if later is not None:
            self._t3_handle = later
            return
        self._trace("timeout")
        self._retransmissions_possible = True
        threshold = self._window.timeout(self._cwnd, self._ssthresh)
        super()._t3_expired()
        if threshold is not None:
            self._ssthresh = threshold
        if not self._window.resend_reported():
            for sent in self._sent_queue:
                if sent._acked:
                    sent._retransmit = False
        self._rto = self._window.backed_off(self._rto)

    def _update_rto(self, R: float) -> None:
        super()._update_rto(R)
        assert self._srtt is not None and self._rttvar is not None
        self._rto = self._window.rto(self._srtt, self._rttvar, SCTP_RTO_MAX)

    @staticmethod
    def hold_datagrams() -> None:
        """A transmission begins: its packets may wait for its end (`send.py` sends them
        together; else each goes at once)."""

    @staticmethod
    def release_datagrams() -> None:
        """A transmission ends: the packets it sent go."""

    async def _transmit(self) -> None:
        self.hold_datagrams()
        try:
            await self._transmit_held()
        finally:
            self.release_datagrams()

    async def _transmit_held(self) -> None:
        if self._retransmissions_possible or self._forward_tsn_chunk is not None:
            await super()._transmit()
            self._retransmissions_possible = any(c._retransmit for c in self._sent_queue)
            self._transmitted()
            return
        if self._outbound_queue and not self._sent_queue:
            # What it sends now ends the idle time.
            self._cwnd, self._ssthresh = self._window.restart(self._cwnd, self._ssthresh,
                                                              time.monotonic(), self._rto)
        started = self._loop.time()
        burst = self._window.burst(recovering=self._fast_recovery_exit is not None)
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
        if self._outbound_queue and self._flight_size < self._cwnd:
            self._pace(started)
        self._transmitted()

    def _pace(self, burst_started: float) -> None:
        """Send what the burst limit held back soon after the burst begun at `burst_started`."""
        if self._pacing_handle is not None or self._fast_recovery_exit is not None:
            return
        delay = self._window.pacing_delay(self._cwnd, self._cwnd <= self._ssthresh, self._srtt)
        if delay is not None:
            self._pacing_handle = self._loop.call_at(burst_started + delay, self._on_pacing_timer)

    def _on_pacing_timer(self) -> None:
        self._pacing_handle = None
        if self._association_state == self.State.ESTABLISHED:
            run_eagerly(self._transmit())

    def _transmitted(self) -> None:
        held_back = bool(self._outbound_queue) and self._flight_size >= self._cwnd
        self._window.transmitted(held_back, self._sent_queue[-1].tsn if self._sent_queue else None)
        self._arm_probe()

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
            for handle in (self._probe_handle, self._pacing_handle):
                if handle is not None:
                    handle.cancel()
            if TRACE and self._association_state != state:
                sent = (self._local_tsn - self._first_tsn) % SCTP_TSN_MODULO
                sys.stderr.write(f"sctp: {sent} chunks sent, {dict(self._window.events)}, "
                                 f"{self._window.stalls} late timers, "
                                 f"largest window "
                                 f"{self._window.largest_window // USERDATA_MAX_LENGTH} packets\n")
        super()._set_state(state)

    def _trace(self, event: str, counted: bool = True) -> None:
        if counted:
            self._window.events[event] += 1
        if TRACE:
            sys.stderr.write(f"sctp: {time.monotonic():.3f} {event}: window "
                             f"{self._cwnd // USERDATA_MAX_LENGTH} packets, "
                             f"{self._flight_size} bytes in flight, RTO {self._rto:.3f} s\n")


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
                # What a task does with a future its coroutine yields: without it, awaiting the
                # still pending future again fails ("await wasn't used with future").
                awaited._asyncio_future_blocking = False  # type: ignore[attr-defined]
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
