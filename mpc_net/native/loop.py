"""A native party's event loop: asyncio's, with a long run of ready callbacks cut into turns
that let the network in between.

asyncio runs, in one turn of its loop, every callback that was ready when the turn began, and
only then looks at sockets and timers. MPyC starts thousands of tasks at once (a vectorized
comparison, a sort), so one turn can hold seconds of computation; meanwhile this party sends no
keepalive, no SACK and no data, and on a loaded machine its peers heard nothing for longer than
their peer timeout and gave it up ("nothing received for 10 s"). Here a turn runs about
TURN_BUDGET seconds of the ready callbacks, in their order; the rest wait, ahead of anything
scheduled meanwhile, as they would have run anyway, while the network and due timers
(keepalives, retransmissions, SACKs) get their turn. A browser party's ready queue
(`browser/loop.py`) bounds its batches the same way, for the page's sake.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

# Seconds of ready callbacks a turn runs before the network and timers are looked at.
TURN_BUDGET = 0.02
# Turns with fewer ready callbacks run whole, unmeasured: the common case (an MPyC round's
# message or two) costs nothing more than asyncio's own turn.
FEW = 8
# Weight of the latest turn in the running estimate of a callback's cost.
_NEWEST_WEIGHT = 0.25


class PartyEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector event loop, with turns bounded to about TURN_BUDGET seconds."""

    _ready: deque[asyncio.Handle]  # asyncio's queue of callbacks to run this turn

    def __init__(self) -> None:
        super().__init__()
        self._seconds_per_callback = 0.0  # estimated from turns of many callbacks

    def _run_once(self) -> None:
        ready = self._ready
        waiting = len(ready)
        if waiting <= FEW:
            super()._run_once()
            return
        share = min(waiting, self.turn_limit())
        # The callbacks beyond this turn's share are set aside and put back ahead of those the
        # turn schedules, so they run in the order asyncio would have run them.
        later = [ready.pop() for _ in range(waiting - share)]
        began = time.perf_counter()
        super()._run_once()
        estimate = (time.perf_counter() - began) / share
        ready.extendleft(later)
        self._seconds_per_callback = (estimate if not self._seconds_per_callback else
                                      _NEWEST_WEIGHT * estimate
                                      + (1 - _NEWEST_WEIGHT) * self._seconds_per_callback)

    def turn_limit(self) -> int:
        """How many of the ready callbacks the next turn runs."""
        if not self._seconds_per_callback:
            return FEW  # unknown yet: a small first turn measures them
        return max(1, int(TURN_BUDGET / self._seconds_per_callback))
