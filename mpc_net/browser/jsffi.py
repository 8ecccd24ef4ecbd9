"""Small helpers around `pyodide.ffi` that the browser modules share."""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from js import MessageChannel, Object
from pyodide.ffi import JsProxy, create_proxy, to_js

from .loop import ReadyQueue

logger = logging.getLogger("mpc_net.browser")


def js_object(value: Any) -> Any:
    """A Python dict (nested lists and dicts too) as a plain JavaScript object."""
    return to_js(value, dict_converter=Object.fromEntries)


def enter_loop(loop: Any) -> None:
    """What Pyodide's loop does before each callback it runs, for an entry into Python that
    runs the loop's callbacks: asyncio finds the running loop on the thread state, which a
    suspended stack may have had as its own."""
    loop._install_running_loop()
    loop._install_asyncgen_hooks()


@functools.cache  # one for the page's loop, whose proxy lives as long as the page
def plain_scheduler(loop: Any) -> Callable[[Callable[[], None]], None]:
    """`schedule(callback)`: `callback` in a browser task of its own, entered by a plain call of
    one long-lived proxy, for ReadyQueue's batches.

    Under JSPI the loop's `call_soon` enters each callback through `callPromising`, so that it
    may suspend Python; each such entry makes and switches to a stack of its own, hundreds of
    microseconds in a page (in Node, 0.7 ms against 2 us for a plain call), and before it
    Pyodide posts one more message. What suspends in a run is the step running the program's
    top level (`mpc.run`), which started before ReadyQueue took over `call_soon` and goes on
    on its own stack; the callbacks of a batch (MPyC's tasks and futures, the transports)
    never suspend, so they need no such entry.
    """
    channel = MessageChannel.new()
    pending: deque[Callable[[], None]] = deque()

    def enter(_event: Any) -> None:
        enter_loop(loop)
        pending.popleft()()

    channel.port1.onmessage = create_proxy(enter)
    post = channel.port2.postMessage

    def schedule(callback: Callable[[], None]) -> None:
        pending.append(callback)
        post(0)

    return schedule


def listener_entry(loop: Any, ready: ReadyQueue) -> Callable[[Callable[[], None]], None]:
    """`Handlers`' entry for listeners whose work feeds MPyC (a data channel's events): the
    work, then the callbacks it made ready, in the listener's own entry into Python."""

    def entry(work: Callable[[], None]) -> None:
        enter_loop(loop)
        ready.run_after(work)

    return entry


class Handlers:
    """Python functions as event listeners of JavaScript objects, and taken off again.

    Listeners, not `on<event>` attributes: Firefox's RTCPeerConnection (implemented in
    JavaScript) never calls a proxy set as its `on<event>` handler, so its gathering and
    connection state changes went unseen; as a listener it is called, in every browser.
    An exception in a handler would reach the page as an uncaught error; it is logged instead.
    `clear()` removes every listener before destroying its proxy, so the browser never calls a
    destroyed proxy (which would be an uncaught error too). `entry(work)`, if given, runs each
    handler's work (a ReadyQueue's `run_after`: what the handler makes ready runs in the same
    entry into Python).
    """

    def __init__(self, entry: Callable[[Callable[[], None]], None] | None = None) -> None:
        self._installed: list[tuple[JsProxy, str, JsProxy]] = []
        self._entry = entry

    def on(self, target: JsProxy, event: str, handler: Callable[[Any], None]) -> None:
        def run(event_object: Any) -> None:
            try:
                handler(event_object)
            except Exception:
                logger.exception("error in the %s handler", event)

        def guarded(event_object: Any = None) -> None:
            if self._entry is None:
                run(event_object)
            else:
                self._entry(lambda: run(event_object))

        proxy = create_proxy(guarded)
        target.addEventListener(event, proxy)
        self._installed.append((target, event, proxy))

    def clear(self) -> None:
        installed, self._installed = self._installed, []
        for target, event, proxy in installed:
            target.removeEventListener(event, proxy)
            proxy.destroy()
