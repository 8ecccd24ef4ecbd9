"""The congestion window and loss recovery of mpc-net's SCTP associations, without I/O.

The window is fit for MPC rounds across the internet, as Chrome's SCTP (dcsctp) and Linux TCP
tune theirs within RFC 9260 section 7.2: aiortc starts at about 3 packets and sends at most 4
beyond those in flight at a time, so a round of a few hundred kilobytes took many round trips
more than over TCP, which starts at 10 (RFC 6928). Here the window starts at 10 packets, as
much may go out at once, slow start doubles it per round trip as TCP's does, and after an idle
gap longer than the retransmission timeout it is halved per timeout but not below those 10
packets (RFC 9260 7.2.1; Linux's restart window), with the slow-start threshold raised to 3/4 of
the window before (RFC 2861, as Linux), so the short pauses between MPC rounds keep it open and
slow start regains most of what a long one took. Slow start goes on through a message's last
round trip (the window counts as used while what it held back is acknowledged, as Linux's), and
what an open window allows beyond one burst of 10 follows paced, not only as SACKs come, so
the next round of an MPC program goes out in one round trip, as over TCP. RFC 9260's 1 s
minimum retransmission timeout made every lost last packet of a round cost a second; like Linux
TCP, the timeout is the
smoothed round trip plus at least 200 ms (a peer may delay its SACK that long), 1 s before a
round trip is measured (aiortc: 3 s), and it doubles on each expiry (6.3.3 E2, which aiortc
leaves out) up to 3 s, as Chrome's dcsctp caps it. A timer that fires late because the party's
own process stalled (computing, or not scheduled) lets the loop read what arrived first: the
SACK it waits for is often there already.

Losses are repaired sooner, as Linux TCP repairs them: a lost last chunk of a message gets a
tail-loss probe two round trips on instead of the timeout (RFC 8985); a hole that only one SACK
can ever report (nothing follows it) is retransmitted at once (RFC 5827's early retransmit);
and after a timeout, which drops the window to one packet, only the chunks the peer has not
reported go again, not those in its gap blocks (as Linux's SCTP does); a chunk is fast
retransmitted once at most (RFC 9260 7.2.4). Each repaired loss reduces the congestion window
to 0.7 of itself and it grows back along CUBIC's curve (`cubic.py`, RFC 9438, as Linux TCP),
where RFC 9260 7.2.3 halves it as Reno did; a timeout that the first SACK after it shows (by
its cumulative acknowledgement) to have been spurious (a peer busy in its computation acknowledges
nothing, where a kernel's TCP would) gives the window back (RFC 5682, RFC 4015), and so does
one whose every retransmission the peer reports as a duplicate TSN (RFC 3708, as Linux TCP
undoes with DSACKs): without that, a peer busy at the start (importing, connecting) left the
slow-start threshold at 4-5 packets for the whole run, and bulk transfers crawled.

`WindowControl` decides; the association (`sctp.py`) keeps aiortc's own fields, runs the
timers and sends. Chunks and SACKs are aiortc's, read through the attributes named below.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol

from .cubic import Cubic

# The congestion window at the start, and how many packets one transmission may add to those in
# flight (RFC 9260's Max.Burst, 4 there): dcsctp's cwnd_mtus_initial, TCP's initial window.
INITIAL_WINDOW_PACKETS = 10
MAX_BURST_PACKETS = INITIAL_WINDOW_PACKETS
# The most packets one of our SACKs stands for: every second, and every fourth while datagrams
# wait in the receiver's socket (`acks.py`); slow start grows the window by what a SACK
# acknowledges up to this many packets (RFC 3465's L), so that it doubles per round trip either
# way, and a SACK lets out at most twice this, within one burst.
MOST_PACKETS_PER_SACK = 4
# In fast recovery, as aiortc sends then.
RECOVERY_BURST_PACKETS = 2
# Where the burst limit holds back what the window allows (a window opened by the last round,
# at the start of the next), the rest follows in bursts paced at this multiple of the window
# per smoothed round trip, in slow start and beyond it: Linux TCP's pacing ratios
# (tcp_pacing_ss_ratio, tcp_pacing_ca_ratio); RFC 9002 7.7 asks a sender to pace or to limit
# bursts to the initial window, and this does both.
PACING_GAIN_SLOW_START = 2.0
PACING_GAIN = 1.2
# The retransmission timeout is at least the smoothed round trip plus this: Linux TCP's minimum,
# and the longest a peer may delay a SACK (RFC 9260 6.2). RFC 9260's RTO.Min is 1 s.
RTO_MARGIN = 0.2
# The timeout before any round trip is measured (the INIT, the first messages: our handshake's):
# RFC 9260's RTO.Initial, and Linux TCP's (RFC 6298). aiortc keeps RFC 4960's 3 s, so a lost
# first message (or INIT) cost 3 s of the set-up.
RTO_INITIAL = 1.0
# A timer that fires this much after its time found our own process stalled (an MPyC computation
# held the event loop, or the machine did not run us): the peer's SACK may be waiting unread.
# The loop takes in what arrived before the timer acts (after INPUT_GRACE), as user-space QUIC
# stacks handle received datagrams before their loss timers; a kernel's TCP never stalls so.
STALL = 0.01
INPUT_GRACE = 0.02
# Each timeout doubles the retransmission timeout (RFC 9260 6.3.3 E2), up to this: Chrome's
# dcsctp transport caps its timer backoff at 3 s (RFC 9260's RTO.Max, 60 s, is a default), so
# that a run of timeouts while a peer stalls does not leave the association waiting longer
# than mpc-net's liveness checks allow (nothing received for 10 s ends the run).
MAX_BACKOFF = 3.0
# A tail-loss probe waits at least this long beyond the peer's SACK delay, as Linux TCP adds a
# minimum to its two round trips (tcp_schedule_loss_probe). On loopback two round trips are
# under 2 ms, less than the event loops' timer latency at both ends: the delayed SACK of a lone
# message came back after its probe in 2 of 3 runs, and each such probe is a needless duplicate.
PROBE_MIN_WAIT = 0.01

# The miss count of a chunk sent again: SACKs for chunks sent before the copy (still on their
# way) report it missing, and aiortc fast-retransmitted it again after every three of them, a
# dozen times per loss at 40 ms, each copy taking a place in the window. RFC 9260 7.2.4 (step
# 5) makes a chunk retransmitted once ineligible for another fast retransmit; only the timer
# (or a probe) sends it again.
NOT_FAST_RETRANSMITTED_AGAIN = -(2**31)

_TSN_MODULO = 2**32


class SentChunk(Protocol):
    """A DATA chunk on aiortc's sent queue, as aiortc keeps its sending state."""

    tsn: int
    _acked: bool
    _retransmit: bool
    _misses: int
    _sent_count: int
    _book_size: int


class Sack(Protocol):
    cumulative_tsn: int
    gaps: list[tuple[int, int]]
    duplicates: list[int]


class WindowControl:
    """The window policy and loss-recovery state of one association (sizes in bytes)."""

    def __init__(self, packet: int, now: float) -> None:
        self.packet = packet
        self.initial_window = INITIAL_WINDOW_PACKETS * packet
        self.data_sent_at = now
        self.events: Counter[str] = Counter()  # of loss recovery
        self.stalls = 0  # timers that fired late and waited for input
        self.largest_window = self.initial_window
        self.cubic = Cubic(packet)
        self.probe_tsn: int | None = None  # the chunk a tail-loss probe sent again
        self._timeouts_in_a_row = 0
        self._before_timeout: tuple[int, int] | None = None  # (window, threshold)
        # Since the first of the latest timeouts in a row, until the peer reports all of its
        # retransmissions as duplicates (then it was spurious) or a loss is known otherwise:
        self._before_timeouts: tuple[int, int] | None = None  # (window, threshold)
        self._unconfirmed: Counter[int] = Counter()  # retransmissions not reported duplicate
        self._held_back_through: int | None = None  # the last chunk sent with more held back
        self._pacing = False  # a flight that began after a pause, not yet acknowledged

    def input_grace(self, late_by: float, deferred: bool) -> float | None:
        """How long a timer that fired `late_by` seconds late waits for input (None: it acts
        now); once per expiry (`deferred`: it already waited)."""
        return INPUT_GRACE if late_by > STALL and not deferred else None

    def burst(self, recovering: bool) -> int:
        """How much one transmission may add to what is in flight."""
        return (RECOVERY_BURST_PACKETS if recovering else MAX_BURST_PACKETS) * self.packet

    def pacing_delay(self, window: int, slow_start: bool, srtt: float | None) -> float | None:
        """How long after a burst the next may go, when the burst limit held back what the
        `window` allows (None: wait for SACKs). Only in a flight that began after a pause,
        until its first SACK: from then on SACKs clock it out as before (pacing a steady flow
        as well put bursts into a short queue that SACKs would have spread)."""
        if srtt is None or not self._pacing:
            return None
        gain = PACING_GAIN_SLOW_START if slow_start else PACING_GAIN
        return MAX_BURST_PACKETS * self.packet * srtt / (gain * window)

    def slow_start_growth(self, acknowledged: int) -> int:
        """How much a SACK acknowledging `acknowledged` bytes in slow start opens the window.

        RFC 9260 grows the window by one packet per SACK; with a SACK for every second packet
        that is 1.5x per round trip. Like TCP (RFC 3465, whose L is 2 for delayed ACKs; Linux
        grows by all that an ACK acknowledges), by what it acknowledges, up to the packets one
        of our SACKs may stand for: doubling, as TCP and dcsctp's slow_start_tcp_style do.
        """
        return min(acknowledged, MOST_PACKETS_PER_SACK * self.packet)

    # The window in use. RFC 9260 grows the window only while it is fully used: for a SACK that
    # arrives with the flight at least the window. At the end of a message the flight drains
    # with nothing left to send, so the SACKs of the last round trip grew nothing, and a
    # message of 180 packets left a window of 70-110 where Linux TCP's was 140-150 for the same
    # bytes: the next round went in two or three round trips instead of one. Linux counts the
    # window as used for a whole window of data once a send was held back by it
    # (tcp_cwnd_validate, after RFC 2861 and RFC 7661, whose pipeACK rule judges the last
    # round trip the same way): so does this, until the chunks sent then are acknowledged.

    def transmitted(self, held_back: bool, last_tsn: int | None) -> None:
        """A transmission ended with chunks `held_back` by the window (or not), `last_tsn` the
        last chunk in flight."""
        if held_back and last_tsn is not None:
            self._held_back_through = last_tsn

    def in_use(self, flight: int, window: int, cumulative_tsn: int, slow_start: bool) -> bool:
        """Whether the next SACK may grow the window: the flight fills it, or in slow start the
        SACK (the last acknowledged being `cumulative_tsn`) acknowledges chunks sent while it
        held others back. Beyond slow start only a full window grows (Linux grows there too,
        but two of ours sharing a short queue then overflowed it twice as often)."""
        held = self._held_back_through
        if held is not None and not tsn_gt(held, cumulative_tsn):
            self._held_back_through = held = None
        return flight >= window or (slow_start and held is not None)

    def reduced_threshold(self, window: int) -> int:
        """The slow-start threshold, and window, after a loss: CUBIC's 0.7 (RFC 9438) where RFC
        9260 7.2.3 halves it."""
        return self.cubic.reduced(window)

    def avoidance_window(self, window: int, acknowledged: int, now: float,
                         srtt: float | None) -> int:
        """The window after a SACK acknowledging `acknowledged` bytes beyond the slow-start
        threshold with the window in use: CUBIC's growth where RFC 9260 7.2.2 adds one packet
        per window acknowledged."""
        return self.cubic.grown(window, acknowledged, now, srtt or 0.0)

    def restart(self, window: int, threshold: int, now: float, rto: float) -> tuple[int, int]:
        """The window and slow-start threshold for sending after an idle time: the window
        halved per retransmission timeout without data in flight, down to the initial window at
        the least (RFC 9260 7.2.1, with Linux's restart window as floor); the threshold first
        raised to 3/4 of the window (RFC 2861, as Linux's tcp_cwnd_restart), so that slow start
        regains most of what the pause took: a threshold left low by an earlier loss ended it
        after each pause between MPC rounds soon after the round began."""
        idle = now - self.data_sent_at
        self.cubic.idle(idle)
        self._pacing = True
        if idle > rto and window > self.initial_window:
            halvings = min(int(idle / rto), 32)
            return max(self.initial_window, window >> halvings), max(threshold, window * 3 // 4)
        return window, threshold

    def rto(self, srtt: float, rttvar: float, rto_max: float) -> float:
        return min(rto_max, srtt + max(4 * rttvar, RTO_MARGIN))

    def backed_off(self, rto: float) -> float:
        """The timeout after one expired: doubled until a new measurement, up to MAX_BACKOFF
        (or the timeout as measured, if that is longer)."""
        return max(rto, min(2 * rto, MAX_BACKOFF))

    def progress(self) -> None:
        """A SACK advanced the cumulative TSN."""
        self._timeouts_in_a_row = 0
        self._pacing = False

    def note_window(self, window: int) -> None:
        self.largest_window = max(self.largest_window, window)

    # Timeouts.

    def timeout(self, window: int, threshold: int) -> int | None:
        """The retransmission timer expired (before aiortc's response); the slow-start
        threshold after it (None: aiortc's, after one in a row, from a window of one packet)."""
        self._timeouts_in_a_row += 1
        first = self._timeouts_in_a_row == 1
        self._before_timeout = (window, threshold) if first else None
        if first:
            self._before_timeouts = (window, threshold)
            self._unconfirmed.clear()
            if self.probe_tsn is not None:  # a copy the peer's duplicate reports must cover too
                self.resent(self.probe_tsn)
        self.probe_tsn = None
        return self.reduced_threshold(window) if first else None

    def resent(self, tsn: int) -> None:
        """The chunk `tsn` went again (a timeout's retransmission, or a probe)."""
        if self._before_timeouts is not None:
            self._unconfirmed[tsn] += 1

    def loss(self) -> None:
        """A loss known other than by a timeout (a fast or early retransmit, a probe that
        repaired one), or the timeouts undone: they are no longer worth checking."""
        self._before_timeouts = None
        self._unconfirmed.clear()

    def timeouts_undone(self, sack: Sack,
                        sent_queue: Iterable[SentChunk]) -> tuple[int, int] | None:
        """The window and slow-start threshold from before the latest timeouts, once the peer
        has reported each of their retransmissions as a duplicate TSN and none is still
        waiting to go: every first send had arrived, so the timeouts came from late SACKs (RFC
        3708's detection, RFC 4015's response). A retransmission that repaired a loss is the
        first copy to arrive, so it is never reported as a duplicate, unless a later copy is,
        and that later copy is counted too."""
        if self._before_timeouts is None:
            return None
        confirmed = [tsn for tsn in sack.duplicates if tsn in self._unconfirmed]
        self._unconfirmed.subtract(confirmed)
        self._unconfirmed = +self._unconfirmed  # without those now at zero
        if not confirmed or self._unconfirmed or any(sent._retransmit for sent in sent_queue):
            return None
        before = self._before_timeouts
        self.loss()
        self.cubic.undo()
        return before

    def resend_reported(self) -> bool:
        """Whether the timeout just handled sends again what the peer reported in gap blocks.

        aiortc does, one packet per round trip from a window of one; like Linux's SCTP, only
        the rest goes. A peer may drop what it reported (renege, RFC 9260 6.2): a second
        timeout without progress sends everything.
        """
        return self._timeouts_in_a_row != 1

    def spurious_timeout(self, sack: Sack,
                         sent_queue: Iterable[SentChunk]) -> tuple[int, int] | None:
        """The window and slow-start threshold from before the last timeout, if the first SACK
        after it acknowledges cumulatively a chunk that the timeout marked and nothing has sent
        again: the first send arrived, so the timeout came from a late SACK (a peer busy in its
        computation, say), not from a loss (RFC 4015's Eifel response, detected as RFC 5682's
        F-RTO does, by the cumulative acknowledgement). A SACK that reports marked chunks in gap
        blocks only says the hole before them is still there: a lost retransmission, which
        only the timeout sends again (an undo there cleared its mark, timeout after timeout)."""
        before, self._before_timeout = self._before_timeout, None
        if before is None:
            return None
        if not any(sent._retransmit and not tsn_gt(sent.tsn, sack.cumulative_tsn)
                   for sent in sent_queue):
            return None
        self.loss()  # undone now
        self.cubic.undo()
        return before

    # Tail-loss probes (RFC 8985's TLP, as Linux TCP sends them): when the last chunks of a
    # message are lost, no SACK reports the loss and only the retransmission timer would
    # recover it. Two smoothed round trips after the last SACK (plus the peer's SACK delay),
    # with nothing new to send, the last chunk in flight goes again: its SACK reports what the
    # peer lacks, and fast (or early) retransmit repairs it. One probe per tail; a chunk that
    # only the probe delivered counts as a loss, known as Linux TCP knows it: the peer never
    # reports the probe as a duplicate, and a later SACK acknowledges more than the probe.

    def probe_delay(self, srtt: float | None, sack_delay: float, waiting: bool,
                    recovering: bool, sent_queue: Sequence[SentChunk]) -> float | None:
        """Seconds until a tail-loss probe (None: none now). Our peers delay the SACK of an odd
        last packet by `sack_delay`."""
        if (waiting or srtt is None or self.probe_tsn is not None or recovering
                or probe_target(sent_queue) is None):
            return None
        return max(2 * srtt, PROBE_MIN_WAIT) + sack_delay

    def probe_answered(self, sack: Sack) -> bool:
        """Whether `sack` shows that the probe repaired a loss: it acknowledges beyond the
        probed chunk, and no SACK reported the probe as a duplicate (RFC 8985 7.4, as Linux's
        tcp_process_tlp_ack decides). A SACK that reaches only the probed chunk may answer its
        first send, delayed past the probe (a busy peer): the duplicate's report follows it."""
        probe = self.probe_tsn
        if probe is None or not acknowledges(sack, probe):
            return False
        if probe in sack.duplicates:
            self.probe_tsn = None  # both sends arrived: nothing was lost
            return False
        if not tsn_gt(highest_acknowledged(sack), probe):
            return False
        self.probe_tsn = None
        return True


def probe_target(sent_queue: Sequence[SentChunk]) -> SentChunk | None:
    """The last chunk in flight (None: none, or one is already marked for retransmission).

    Even a lone one: RFC 8985 waits 200 ms more for it, the longest a peer may delay its SACK,
    but mpc-net's peers delay theirs by their SACK delay; a browser that waits longer gets at
    worst one needless duplicate, which it acknowledges at once.
    """
    for sent in reversed(sent_queue):
        if sent._retransmit:
            return None
        if not sent._acked:
            return sent
    return None


def early_losses(sent_queue: Sequence[SentChunk], waiting: bool) -> list[SentChunk]:
    """The holes below the last chunk sent, once a SACK reports that chunk received and nothing
    is left to send (`waiting` false): no later SACK could add the two more reports that fast
    retransmit waits for (RFC 5827's early retransmit, at its limit)."""
    if waiting or not sent_queue or not sent_queue[-1]._acked:
        return []
    return [c for c in sent_queue
            if c._misses and not c._acked and not c._retransmit and c._sent_count == 1]


def newly_acknowledged(sent_queue: Iterable[SentChunk], cumulative_tsn: int) -> int:
    """Bytes of the chunks in flight that a SACK up to `cumulative_tsn` acknowledges."""
    total = 0
    for sent in sent_queue:
        if tsn_gt(sent.tsn, cumulative_tsn):
            break
        if not sent._acked:
            total += sent._book_size
    return total


def highest_acknowledged(sack: Sack) -> int:
    """The highest TSN that `sack` reports received."""
    return (sack.cumulative_tsn + max((end for _, end in sack.gaps), default=0)) % _TSN_MODULO


def acknowledges(sack: Sack, tsn: int) -> bool:
    """Whether `sack` reports `tsn` received, cumulatively or in a gap block."""
    cumulative = sack.cumulative_tsn
    return not tsn_gt(tsn, cumulative) or any(
        _tsn_between(cumulative + start, tsn, cumulative + end) for start, end in sack.gaps)


def tsn_gt(a: int, b: int) -> bool:
    """a > b in serial number arithmetic (RFC 1982), as TSNs compare."""
    half = _TSN_MODULO // 2
    return (a < b and b - a > half) or (a > b and a - b < half)


def _tsn_between(low: int, tsn: int, high: int) -> bool:
    """low <= tsn <= high in serial number arithmetic (RFC 1982)."""
    low, high = low % _TSN_MODULO, high % _TSN_MODULO
    return not tsn_gt(low, tsn) and not tsn_gt(tsn, high)
