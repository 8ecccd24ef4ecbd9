"""Run MPyC over a Mesh: replace what `Runtime.start` and `Runtime.shutdown` do.

MPyC stays unforked: its `MessageExchanger`, PRSS key exchange, byte counts and shutdown
barrier all run as they do over TCP; only the way connections are made and unmade changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Callable

from .mesh import Mesh
from .transport import PeerLost

logger = logging.getLogger("mpc_net.runtime")

# Every mpc-net party uses MPyC's portable program-counter hop. The default hop is
# `hash(tuple)`, which differs between 64-bit CPython and 32-bit Pyodide; with one rule for all
# parties, native and browser parties can always share a room.
MPYC_FLAGS = ["--mix32-64bit"]


class RunFailure:
    """Stops the event loop when a party is lost, so `mpc.run` returns instead of waiting forever
    for messages that will never come. The caller reports `error` and exits non-zero."""

    def __init__(self) -> None:
        self.error: PeerLost | None = None

    def __call__(self, error: PeerLost) -> None:
        if self.error is None:
            self.error = error
            logger.error("%s", error)
            asyncio.get_running_loop().stop()


def install(make_mesh: Callable[[], Mesh]) -> None:
    """Hook the MPyC runtime `mpc` (already set up from sys.argv) to connect over a Mesh."""
    from mpyc import asyncoro
    from mpyc.runtime import Runtime, mpc

    mesh: Mesh | None = None

    async def start(rt: Runtime) -> None:
        nonlocal mesh
        # MPyC cached the loop at import; under asyncio.run() that is not the running one.
        rt._loop = asyncio.get_running_loop()
        if len(rt.parties) == 1:
            return await Runtime.start(rt)
        logging.info(f"Start MPyC runtime v{rt.version}")
        for peer in rt.parties:
            peer.protocol = rt._loop.create_future() if peer.pid == rt.pid else None
        mesh = make_mesh()
        transports = await mesh.connect()
        for peer_pid, transport in transports.items():
            # As over TCP, the lower pid plays the client: it sends its pid and PRSS keys.
            client = peer_pid > rt.pid
            transport.attach(asyncoro.MessageExchanger(rt, peer_pid if client else None))
        await rt.parties[rt.pid].protocol
        logging.info(f"All {len(rt.parties)} parties connected via WebRTC.")
        rt.start_time = time.time()

    async def shutdown(rt: Runtime) -> None:
        await Runtime.shutdown(rt)
        if mesh is not None:
            await mesh.close()

    mpc.start = types.MethodType(start, mpc)
    mpc.shutdown = types.MethodType(shutdown, mpc)
