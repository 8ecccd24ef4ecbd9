"""Timers whose deadline moves later without a new timer (the SACK timer, T3).

Cancelling a timer and making another leaves a cancelled handle in the event loop's heap until
its time; moving a deadline per packet or per SACK that way was a noticeable part of the CPU
per packet. Instead the owner records the new deadline, and the timer, when it fires before it,
waits again until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def wait_again(loop: asyncio.AbstractEventLoop, fired: asyncio.TimerHandle | None,
               due: float | None, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
    """The timer that runs `callback` at `due`, if the timer `fired` went off before that
    deadline (None: it fired on time, or there is no moved deadline)."""
    if due is None or fired is None or due <= fired.when():
        return None
    return loop.call_at(due, callback)
