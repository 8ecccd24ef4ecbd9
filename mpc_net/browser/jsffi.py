"""Small helpers around `pyodide.ffi` that the browser modules share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from js import Object
from pyodide.ffi import JsProxy, create_proxy, to_js

logger = logging.getLogger("mpc_net.browser")


def js_object(value: Any) -> Any:
    """A Python dict (nested lists and dicts too) as a plain JavaScript object."""
    return to_js(value, dict_converter=Object.fromEntries)


class Handlers:
    """Python functions as event listeners of JavaScript objects, and taken off again.

    Listeners, not `on<event>` attributes: Firefox's RTCPeerConnection (implemented in
    JavaScript) never calls a proxy set as its `on<event>` handler, so its gathering and
    connection state changes went unseen; as a listener it is called, in every browser.
    An exception in a handler would reach the page as an uncaught error; it is logged instead.
    `clear()` removes every listener before destroying its proxy, so the browser never calls a
    destroyed proxy (which would be an uncaught error too).
    """

    def __init__(self) -> None:
        self._installed: list[tuple[JsProxy, str, JsProxy]] = []

    def on(self, target: JsProxy, event: str, handler: Callable[[Any], None]) -> None:
        def guarded(event_object: Any = None) -> None:
            try:
                handler(event_object)
            except Exception:
                logger.exception("error in the %s handler", event)

        proxy = create_proxy(guarded)
        target.addEventListener(event, proxy)
        self._installed.append((target, event, proxy))

    def clear(self) -> None:
        installed, self._installed = self._installed, []
        for target, event, proxy in installed:
            target.removeEventListener(event, proxy)
            proxy.destroy()
