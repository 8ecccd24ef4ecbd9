"""The channel's events on their way to the transport, for both peer-connection backends."""

from __future__ import annotations

from collections.abc import Callable

from ..transport import ChannelEvents

Event = Callable[[ChannelEvents], None]


class ChannelEventRelay:
    """Hands each event to the bound transport; events from before `bind` wait and are replayed
    in order (a channel may open and receive before the mesh has made its transport)."""

    def __init__(self) -> None:
        self._transport: ChannelEvents | None = None
        self._backlog: list[Event] = []

    def bind(self, transport: ChannelEvents) -> None:
        self._transport = transport
        backlog, self._backlog = self._backlog, []
        for event in backlog:
            event(transport)

    def forward(self, event: Event) -> None:
        if self._transport is None:
            self._backlog.append(event)
        else:
            event(self._transport)
