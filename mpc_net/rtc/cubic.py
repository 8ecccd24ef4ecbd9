"""CUBIC congestion control (RFC 9438) for mpc-net's SCTP associations, without I/O.

aiortc responds to a loss as TCP Reno does (RFC 9260 7.2.3): the window halves and then grows
by one packet per round trip. An MPC round across the internet is a short transfer of a few
hundred packets, so at 1 % random loss each association met 3-6 losses, each one halving its
window for the rest of the run (the largest windows stayed at 16-27 packets, where Linux TCP,
with CUBIC, sent the same rounds with 100-150 packets in flight). CUBIC, Linux's and the other
major TCP stacks' default, reduces the window to 0.7 of itself and grows it back along a cubic
function of the time since the loss, towards the window where the loss happened, and never
slower than Reno would (its "Reno-friendly" region), so that it shares a bottleneck fairly with
Reno flows and with itself (fast convergence: a flow that lost again below its last maximum
yields more). RFC 9260 does not fix the congestion control (section 7 describes TCP's of its
day; RFC 9438 is the IETF's description of the one TCP now uses), and like TCP's choice it is
a sender's alone: nothing changes on the wire.

Windows are in packets here, as in RFC 9438; the association keeps them in bytes.
"""

from __future__ import annotations

# RFC 9438 section 5: the multiplicative decrease and the cubic's scaling constant (packets and
# seconds), and the Reno-friendly additive increase that matches Reno's average window for the
# same loss rate with that decrease (section 4.3).
BETA = 0.7
C = 0.4
ALPHA = 3 * (1 - BETA) / (1 + BETA)
# RFC 9260 7.2.3's least slow-start threshold after a loss, in packets.
MIN_WINDOW = 4


class Cubic:
    """The state of one association's CUBIC between congestion events."""

    def __init__(self, packet: int) -> None:
        self.packet = packet
        self.w_max = 0.0  # the window at the last congestion event (packets)
        self._epoch: float | None = None  # when the current congestion avoidance began
        self._k = 0.0  # seconds from the epoch until the cubic reaches its origin
        self._origin = 0.0  # the window the cubic plateaus at (packets)
        self._w_est = 0.0  # what Reno would have reached since the epoch (packets)
        self._before: tuple[float, float | None, float, float, float] | None = None

    def reduced(self, window: int) -> int:
        """The window, and slow-start threshold, after a congestion event at `window` bytes."""
        self._before = (self.w_max, self._epoch, self._k, self._origin, self._w_est)
        packets = window / self.packet
        # Fast convergence (section 4.7): a loss below the last maximum releases more.
        self.w_max = packets * (1 + BETA) / 2 if packets < self.w_max else packets
        self._epoch = None
        return max(round(window * BETA), MIN_WINDOW * self.packet)

    def undo(self) -> None:
        """The last congestion event was spurious: the state from before it (section 4.9)."""
        if self._before is not None:
            self.w_max, self._epoch, self._k, self._origin, self._w_est = self._before
            self._before = None

    def idle(self, seconds: float) -> None:
        """Nothing was sent for `seconds`: the cubic's clock stops meanwhile, as Linux's does,
        so the pauses between MPC rounds do not count as time to grow in."""
        if self._epoch is not None:
            self._epoch += seconds

    def grown(self, window: int, acknowledged: int, now: float, srtt: float) -> int:
        """The window after a SACK acknowledging `acknowledged` bytes in congestion avoidance
        with the window `window` bytes in use (sections 4.2-4.5)."""
        cwnd = window / self.packet
        if self._epoch is None:
            self._epoch = now
            self._origin = max(self.w_max, cwnd)
            self._k = ((self._origin - cwnd) / C) ** (1 / 3)
            self._w_est = cwnd
        acked = acknowledged / self.packet
        alpha = 1.0 if self._w_est >= self.w_max else ALPHA
        self._w_est += alpha * acked / cwnd
        elapsed = now - self._epoch
        if self._cubic(elapsed) < self._w_est:  # Reno-friendly region
            return max(window, int(self._w_est * self.packet))
        target = min(max(self._cubic(elapsed + srtt), cwnd), 1.5 * cwnd)
        return window + int((target - cwnd) / cwnd * acked * self.packet)

    def _cubic(self, elapsed: float) -> float:
        return C * (elapsed - self._k) ** 3 + self._origin
