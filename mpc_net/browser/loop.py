"""Ready callbacks run together in one browser task, chains of them included.

Pyodide's event loop (WebLoop) runs each `call_soon` callback as a browser task of its own: a
message posted to schedule it, a proxy made for it, and an entry into Python. In Chromium such a
hop costs 0.1 to 0.2 ms, against a microsecond in asyncio's own loops, and MPyC takes several in
a row for each message it receives (the future's callback wakes a task, whose step resolves
another future, ...): most of a browser party's time per round went there. ReadyQueue keeps the
callbacks in a queue of its own and runs them in one task of the loop, including those that the
running callbacks schedule, until the queue is empty or BUDGET_SECONDS have passed (then the
browser delivers data channel messages, timers and input before the rest). Timers stay the
loop's.

In a page each batch is entered by a plain call (`jsffi.plain_scheduler`), not as the loop's
`call_soon` enters its callbacks (through `callPromising`, which costs a stack of its own, so
that a callback may suspend Python under JavaScript Promise integration). So no callback of a
batch suspends, and a batch ends when the queue is empty, past its budget, or when an exception
that asyncio lets through (SystemExit) leaves a callback: only in the last two cases is a
further task scheduled for the rest.

A data channel's message is entered once: its listener gives the bytes to the transport and MPyC
inside `run_after`, which runs the callbacks that made ready (MPyC's reaction to the message,
its replies' writes and flush) before the listener returns, rather than posting a task to run
them in a second entry. A page's message then costs one browser task and one entry into Python.

Importable outside Pyodide: it needs nothing but the loop's `call_soon` and `time`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from typing import Any

# Longest stretch of callbacks in one browser task: long enough for a round of MPyC's, short
# enough that the page stays responsive and messages are not held up.
BUDGET_SECONDS = 0.01


class ReadyQueue:
    """`call_soon` for `loop`, whose callbacks run in batches, each one task of `schedule`,
    which must enter its callback so that it cannot suspend Python (a suspended batch would
    hold the queue)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 schedule: Callable[[Callable[[], None]], object]) -> None:
        self._loop = loop
        self._schedule = schedule
        self._ready: deque[asyncio.Handle] = deque()
        self._scheduled = False
        self._running = False  # what callbacks schedule joins the running batch

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
        if not (self._scheduled or self._running):
            self._scheduled = True
            self._schedule(self._run_ready)

    def run_after(self, work: Callable[[], None]) -> None:
        """`work` (an event listener's, entered from the browser), then, in the same entry, the
        callbacks it made ready, as one batch. Inside a running batch (an event the browser
        dispatches while Python calls it), `work` only: the running batch takes its callbacks."""
        if self._running:
            work()
            return
        self._running = True  # what `work` schedules waits for the batch below, not a task
        try:
            work()
        finally:
            self._run_batch()

    def _run_ready(self) -> None:
        self._scheduled = False
        self._run_batch()

    def _run_batch(self) -> None:
        self._running = True
        ready = self._ready
        deadline = self._loop.time() + BUDGET_SECONDS
        try:
            while ready:
                handle = ready.popleft()
                if not handle.cancelled():
                    handle._run()
                if self._loop.time() > deadline:
                    break
        finally:
            self._running = False
            if ready:
                self._wake()
