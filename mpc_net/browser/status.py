"""What the page shows while a run connects and computes: each peer's state, path and
round-trip time, then progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..mesh import Mesh, MeshError
from ..rtc.browser import BrowserPeerConnection
from ..transport import DataChannelTransport
from .jsffi import js_object

REFRESH_SECONDS = 0.5


class PeerBoard:
    """One row per other party, sent to the page's `ui.peer(j, row)` whenever it changes."""

    def __init__(self, ui: Any, pid: int, parties: int) -> None:
        self._ui = ui
        self._rows = {j: {"party": j, "state": "not in the room yet", "path": "", "rtt": ""}
                      for j in range(parties) if j != pid}
        self._connections: dict[int, BrowserPeerConnection] = {}
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

    def connecting(self, j: int, pc: BrowserPeerConnection) -> None:
        if not self._connections:
            self._ui.status("connecting", "Connecting to the other parties.")
        self._connections[j] = pc
        self._transports.pop(j, None)
        self.set(j, state="connecting", path="", rtt="")

    def authenticated(self, j: int, transport: DataChannelTransport) -> None:
        if self._transports.get(j) is transport:
            return
        self._transports[j] = transport
        self.set(j, state="connected, authenticated", path="")
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
            if self._rows[j]["state"] == "connecting":
                self.set(j, path=f"ICE {pc.connection_state}")
            return
        path = await pc.selected_path()
        rtt = transport.round_trip_time or await pc.round_trip_time()
        if path is not None:
            self.set(j, path=" -> ".join(path))
        if rtt:
            self.set(j, rtt=f"{rtt * 1000:.1f} ms")


class ObservedMesh(Mesh):
    """A Mesh that reports each peer's progress to a PeerBoard.

    It hooks the Mesh's own steps (presence, a new peer connection, authentication); a public
    observer hook in Mesh would make these overrides unnecessary.
    """

    def __init__(self, *args: Any, board: PeerBoard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._board = board

    async def connect(self) -> dict[int, DataChannelTransport]:
        transports = await super().connect()
        # Once every channel stands the Mesh cancels its tasks, which may cut the last
        # _authenticate short of the board.
        for j, transport in transports.items():
            self._board.authenticated(j, transport)
        self._board.computing()
        return transports

    def _peer_present(self, j: int, key: str | None) -> None:
        if j not in self.transports:
            self._board.set(j, state="in the room")
        super()._peer_present(j, key)

    def _peer_gone(self, j: int) -> None:
        if j not in self.transports:
            self._board.set(j, state="left the room")
        super()._peer_gone(j)

    def _replace_peer(self, j: int) -> BrowserPeerConnection:
        pc = super()._replace_peer(j)
        self._board.connecting(j, pc)
        return pc

    async def _authenticate(self, j: int, pc: BrowserPeerConnection,
                            transport: DataChannelTransport) -> None:
        self._board.set(j, state="authenticating")
        try:
            await super()._authenticate(j, pc, transport)
        except MeshError:
            self._board.set(j, state="authentication failed")
            raise
        if self.transports.get(j) is transport:
            self._board.authenticated(j, transport)
