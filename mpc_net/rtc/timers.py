"""The retransmission timer (T3) of mpc-net's associations, moved rather than made anew.

aiortc restarts T3 at every SACK that acknowledges new data (RFC 9260 6.3.2, rule R3): it
cancels the timer and makes another, one `call_later` and one cancelled handle left in the
event loop's heap per SACK, a twentieth of a sender's CPU time in a bulk transfer. Here a
restart only moves the deadline; the timer, when it fires before that deadline, waits again
until it. It expires at the same moment as aiortc's would.
"""

from __future__ import annotations

from .acks import DelayedAckSctpTransport
from .deadline import wait_again


class MovedT3SctpTransport(DelayedAckSctpTransport):
    """aiortc's association with T3 restarted by moving its deadline."""

    _t3_due: float | None = None  # loop time a restart moved the running T3 to (None: its own)

    def _t3_restart(self) -> None:
        if self._t3_handle is None:
            super()._t3_restart()
        else:
            self._t3_due = self._loop.time() + self._rto

    def _t3_start(self) -> None:
        self._t3_due = None
        super()._t3_start()

    def _t3_cancel(self) -> None:
        self._t3_due = None
        super()._t3_cancel()

    def _t3_moved(self) -> bool:
        """Whether T3 fired before the deadline a restart moved it to; then it waits again."""
        due, self._t3_due = self._t3_due, None
        later = wait_again(self._loop, self._t3_handle, due, self._t3_expired)
        if later is None:
            return False
        self._t3_handle = later
        return True
