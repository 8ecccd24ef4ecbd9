"""The browser parties' ReadyQueue, on asyncio's own loop: the same callbacks in the same order
as the loop's `call_soon`, in far fewer tasks of the loop (for Pyodide's loop: browser tasks)."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from mpc_net.browser import loop as browser_loop
from mpc_net.browser.loop import ReadyQueue


class CountingLoop(asyncio.SelectorEventLoop):
    """asyncio's loop, counting the callbacks it is given (for Pyodide's: browser tasks)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks = 0

    def call_soon(self, *args, **kwargs):
        self.tasks += 1
        return super().call_soon(*args, **kwargs)


def run_batched(main) -> tuple[object, int]:
    loop = CountingLoop()
    try:
        queue = ReadyQueue(loop, loop.call_soon)
        queue.install()
        result = loop.run_until_complete(main())
        queue.uninstall()
        return result, loop.tasks
    finally:
        loop.close()


def test_callbacks_run_in_order_with_args_and_context_in_one_task():
    seen = []
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(var.set, "theirs")
        before = loop.tasks
        for i in range(50):
            loop.call_soon(seen.append, i)
        loop.call_soon(lambda: seen.append(var.get()), context=context)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return loop.tasks - before

    tasks, _ = run_batched(main)
    assert seen == [*range(50), "theirs"]
    assert tasks <= 4  # 51 callbacks and this coroutine's own steps


def test_what_callbacks_schedule_runs_in_the_same_task_after_what_was_ready():
    """A chain of callbacks, each scheduling the next (a future waking a task whose step
    resolves another future), takes one task of the loop, not one per link, and keeps asyncio's
    order."""
    order = []

    async def main():
        loop = asyncio.get_running_loop()

        def link(n: int) -> None:
            order.append(n)
            if n < 100:
                loop.call_soon(link, n + 1)

        loop.call_soon(lambda: (order.append("a"), loop.call_soon(order.append, "c")))
        loop.call_soon(order.append, "b")
        before = loop.tasks
        loop.call_soon(link, 0)
        for _ in range(3):
            await asyncio.sleep(0)
        return loop.tasks - before

    tasks, _ = run_batched(main)
    assert order == ["a", "b", 0, "c", *range(1, 101)]  # as asyncio orders them
    assert tasks <= 6


def test_a_long_stretch_of_callbacks_leaves_the_rest_to_a_later_task(monkeypatch):
    """Past the budget the browser gets its turn (messages, timers), and the rest run later."""
    monkeypatch.setattr(browser_loop, "BUDGET_SECONDS", 0.0)
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        before = loop.tasks
        for i in range(10):
            loop.call_soon(seen.append, i)
        while len(seen) < 10:
            await asyncio.sleep(0)
        return loop.tasks - before

    tasks, _ = run_batched(main)
    assert seen == list(range(10))
    assert tasks >= 5


def test_a_callback_that_never_returns_leaves_the_rest_scheduled():
    """Under JavaScript Promise integration a callback may suspend Python, and the task running
    the queue with it: the callbacks after it still run, in another task. Here the callback
    leaves by SystemExit, which asyncio's loop lets through as Pyodide's suspension would."""
    seen = []

    def leave():
        raise SystemExit

    loop = CountingLoop()
    try:
        queue = ReadyQueue(loop, loop.call_soon)
        queue.install()
        loop.call_soon(seen.append, 1)
        loop.call_soon(leave)
        loop.call_soon(seen.append, 2)
        with pytest.raises(SystemExit):
            loop.run_until_complete(asyncio.sleep(0.01))
        assert seen == [1]
        loop.run_until_complete(asyncio.sleep(0.01))
        assert seen == [1, 2]
    finally:
        loop.close()


def test_cancelled_callbacks_do_not_run_and_errors_stay_in_their_callback():
    seen, errors = [], []

    def fail():
        raise ValueError("boom")

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        loop.call_soon(seen.append, 1).cancel()
        loop.call_soon(fail)
        loop.call_soon(seen.append, 2)
        await asyncio.sleep(0)

    run_batched(main)
    assert seen == [2]
    assert [str(e) for e in errors] == ["boom"]


def test_asyncio_tasks_and_futures_use_it():
    """Tasks that pass futures back and forth, as MPyC's do: each step is a callback, and they
    take a task of the loop per round of steps, not one per step."""

    async def worker(inbox: asyncio.Queue, outbox: asyncio.Queue) -> None:
        while (item := await inbox.get()) is not None:
            await outbox.put(item + 1)
        await outbox.put(None)

    async def main():
        queues = [asyncio.Queue(maxsize=1) for _ in range(4)]
        workers = [asyncio.create_task(worker(queues[i], queues[i + 1])) for i in range(3)]

        async def feed() -> None:
            for i in [*range(100), None]:
                await queues[0].put(i)

        feeding = asyncio.create_task(feed())
        out = []
        while (item := await queues[3].get()) is not None:
            out.append(item)
        await asyncio.gather(feeding, *workers)
        return out

    batched, tasks = run_batched(main)
    loop = CountingLoop()
    try:
        plain = loop.run_until_complete(main())
    finally:
        loop.close()
    assert batched == plain == [i + 3 for i in range(100)]
    assert tasks * 2 < loop.tasks


def test_a_batch_takes_one_task_of_the_loop():
    """Callbacks scheduled together, and those they schedule, run in one task of the loop and
    leave none behind (a task that finds the queue empty still costs a page a Python entry)."""
    seen = []
    loop = CountingLoop()
    try:
        queue = ReadyQueue(loop, loop.call_soon)
        queue.install()
        for i in range(3):
            loop.call_soon(lambda i=i: (seen.append(i), loop.call_soon(seen.append, -i)))
        before = loop.tasks
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert seen == [0, 1, 2, 0, -1, -2]
        assert loop.tasks - before == 0  # the batch was scheduled with the first callback
        loop.run_until_complete(asyncio.sleep(0))
        assert loop.tasks - before == 1  # sleep(0)'s own step, in one more batch
    finally:
        loop.close()


def test_uninstall_gives_call_soon_back():
    loop = CountingLoop()
    try:
        queue = ReadyQueue(loop, loop.call_soon)
        queue.install()
        assert loop.call_soon == queue.call_soon
        queue.uninstall()
        assert loop.call_soon.__func__ is CountingLoop.call_soon
    finally:
        loop.close()


def test_what_an_event_makes_ready_runs_before_its_listener_returns():
    """A data channel's message resolves a future that MPyC's task awaits: the task's step
    runs in the listener's own entry (`run_after`), not in a task posted for it, which in a
    page is a second browser task and a second entry into Python per message."""
    seen = []
    loop = CountingLoop()
    try:
        queue = ReadyQueue(loop, loop.call_soon)
        queue.install()
        message = loop.create_future()

        async def receiver():
            seen.append(await message)
            loop.call_soon(seen.append, "replied")

        loop.create_task(receiver())
        loop.run_until_complete(asyncio.sleep(0))  # the receiver awaits its message
        before = loop.tasks

        def listener():  # entered by the browser, as a timer is by the loop
            try:
                queue.run_after(lambda: message.set_result("message"))
                seen.append("listener returned")
            finally:
                loop.stop()

        loop.call_later(0, listener)
        loop.run_forever()
        assert seen == ["message", "replied", "listener returned"]
        assert loop.tasks == before
    finally:
        loop.close()
