"""What the page shows while a run connects and computes: each peer's state, path and
round-trip time, then progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..mesh import Link, PeerConnection
from ..transport import DataChannelTransport
from .jsffi import js_object
from .peer import BrowserPeerConnection

REFRESH_SECONDS = 0.5


class PeerBoard:
    """One row per other party, sent to the page's `ui.peer(j, row)` whenever it changes; the
    mesh's observer (mesh.MeshObserver)."""

    def __init__(self, ui: Any, pid: int, parties: int) -> None:
        self._ui = ui
        self._rows = {j: {"party": j, "state": Link.ABSENT.value, "path": "", "rtt": ""}
                      for j in range(parties) if j != pid}
        self._connections: dict[int, PeerConnection] = {}
        self._transports: dict[int, DataChannelTransport] = {}
        self._computing_since: float | None = None

    def show_all(self) -> None:
        for j in self._rows:
            self._ui.peer(j, js_object(self._rows[j]))

    def set(self, j: int, **fields: str) -> None:
        row = self._rows[j]
        if any(row[k] != v for k, v in fields.items()):
            row.update(fields)
            self._ui.peer(j, js_object(row))

    def link_changed(self, j: int, link: Link, pc: PeerConnection | None,
                     transport: DataChannelTransport | None) -> None:
        if link is Link.CONNECTING and pc is not None:
            self.connecting(j, pc)
        elif link is Link.UP and transport is not None:
            self.authenticated(j, transport)
        else:
            self.set(j, state=link.value)

    def connected(self, transports: dict[int, DataChannelTransport]) -> None:
        # Once every channel stands the mesh cancels its tasks, which may cut the last
        # authentication short of the board.
        for j, transport in transports.items():
            self.authenticated(j, transport)
        self.computing()

    def connecting(self, j: int, pc: PeerConnection) -> None:
        if not self._connections:
            self._ui.status("connecting", "Connecting to the other parties.")
        self._connections[j] = pc
        self._transports.pop(j, None)
        self.set(j, state=Link.CONNECTING.value, path="", rtt="")

    def authenticated(self, j: int, transport: DataChannelTransport) -> None:
        self.set(j, state=Link.UP.value)  # also after a repair, on the same transport
        if self._transports.get(j) is transport:
            return
        self._transports[j] = transport
        self.set(j, path="")
        # A task of its own: the mesh cancels its tasks once every channel stands.
        asyncio.ensure_future(self._refresh(j, self._connections[j]))

    def computing(self) -> None:
        self._computing_since = time.monotonic()
        self._ui.status("computing", "All parties connected; computing.")

    async def keep_fresh(self) -> None:
        """Refresh states, paths, round-trip times and progress until cancelled."""
        while True:
            for j, pc in list(self._connections.items()):
                await self._refresh(j, pc)
            if self._computing_since is not None:
                transports = self._transports.values()
                self._ui.progress(js_object({
                    "seconds": round(time.monotonic() - self._computing_since, 1),
                    "messages": sum(t.mpyc_writes for t in transports),
                    "bytes": sum(t.bytes_written for t in transports)}))
            await asyncio.sleep(REFRESH_SECONDS)

    async def _refresh(self, j: int, pc: BrowserPeerConnection) -> None:
        transport = self._transports.get(j)
        if transport is None:
            if self._rows[j]["state"] == Link.CONNECTING.value:
                self.set(j, path=f"ICE {pc.connection_state}")
            return
        path = await pc.selected_path()
        rtt = transport.round_trip_time or await pc.round_trip_time()
        if path is not None:
            self.set(j, path=" -> ".join(path))
        if rtt:
            self.set(j, rtt=f"{rtt * 1000:.1f} ms")
