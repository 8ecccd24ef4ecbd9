"""One browser task per round of ready callbacks, not one per callback.

Pyodide's event loop (WebLoop) runs each `call_soon` callback as a browser task of its own: a
proxy made for it, a message posted to schedule it, and under JavaScript Promise integration a
stack switch to enter Python. MPyC schedules tens of callbacks per round of messages (every
task step and every future's callback is one), so that bookkeeping, not the computation, was
most of a browser party's time. ReadyQueue keeps the callbacks in a queue of its own, as
asyncio's own loops do, and has the loop run the whole queue as one task: what is ready when
that task starts runs in it, and what those callbacks schedule runs in the next task, so the
browser still delivers data channel messages and timers between rounds. Timers stay the loop's.

Importable outside Pyodide: it needs nothing but the loop's `call_soon`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from typing import Any


class ReadyQueue:
    """`call_soon` for `loop`, batched into tasks of the loop's own `call_soon`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._schedule = loop.call_soon  # the loop's own: one browser task each
        self._ready: deque[asyncio.Handle] = deque()
        self._scheduled = False

    def install(self) -> None:
        """Take over the loop's `call_soon` (asyncio's tasks and futures look it up on the
        loop object at each call)."""
        self._loop.call_soon = self.call_soon  # type: ignore[method-assign]

    def uninstall(self) -> None:
        """Give `call_soon` back; callbacks still queued run in the task already scheduled."""
        if self._loop.__dict__.get("call_soon") == self.call_soon:
            del self._loop.call_soon

    def call_soon(self, callback: Callable[..., Any], *args: Any,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self._loop, context=context)
        self._ready.append(handle)
        self._wake()
        return handle

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self._run_ready)

    def _run_ready(self) -> None:
        self._scheduled = False
        ready = self._ready
        for _ in range(len(ready)):
            handle = ready.popleft()
            if ready:
                # Should this callback block (mpc.run under JavaScript Promise integration
                # suspends Python), the rest go on in the next task rather than wait for it.
                self._wake()
            if not handle.cancelled():
                handle._run()
