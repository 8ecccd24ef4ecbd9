"""Run one MPyC program in the page as party i, connected over the browser's WebRTC.

The browser's counterpart of `party.run_party`: the same runtime hooks, Mesh and handshake,
with the browser backend, the browser signaling client and `BrowserRun` for `mpc.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import runpy
import sys
from collections.abc import Callable
from typing import Any

from ..mesh import Mesh, MeshConfig
from ..runtime import BrowserRun, check_mpyc_argv, install, mpyc_argv
from .jsffi import listener_entry, plain_scheduler
from .loop import ReadyQueue
from .peer import BrowserPeerConnection
from .signaling import BrowserSignalingClient
from .status import PeerBoard

# The standard library's modules that MPyC imports, which the bundle's memory snapshot holds
# (mpc_net/snapshot.mjs imports them): a restored page's first run imported them with MPyC,
# 1.5 s and more; later runs keep them, as only MPyC is imported afresh. A page that starts
# Python afresh imports them in its first run, as before, rather than before it is ready.
MPYC_STANDARD_LIBRARY = ("argparse", "configparser", "datetime", "decimal", "fractions",
                         "gettext", "hashlib", "hmac", "numbers", "pickle", "platform", "secrets",
                         "statistics")


class LineWriter(io.TextIOBase):
    """A text stream that hands each complete line to `emit`."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def close(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""
        super().close()


def _fresh_mpyc() -> None:
    """Forget a previous run's MPyC: `mpyc.runtime` sets itself up from sys.argv on import,
    and its logging from `logging.basicConfig`, which does nothing while handlers exist."""
    for name in [n for n in sys.modules if n == "mpyc" or n.startswith("mpyc.")]:
        del sys.modules[name]
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)


async def run_program(script: str, args: list[str], config: MeshConfig, ui: Any,
                      run: BrowserRun, stdin: str = "") -> None:
    """Run `script` with `args` as party `config.pid`, reading `stdin` as its standard input;
    its output goes to `ui.output`, logs and standard error to `ui.log`. Raises what the
    program or the connections raise (MpycOptionError for arguments that are MPyC's)."""
    board = PeerBoard(ui, config.pid, config.parties)
    board.show_all()
    connections: list[BrowserPeerConnection] = []
    loop = asyncio.get_running_loop()
    ready = ReadyQueue(loop, plain_scheduler(loop))
    # A message received runs MPyC's reaction to it in the listener's own entry into Python.
    entry = listener_entry(loop, ready)

    def new_peer_connection(ice_servers: list[dict], *, relay_only: bool = False,
                            host_addresses: list[str] | None = None) -> BrowserPeerConnection:
        connections.append(BrowserPeerConnection(ice_servers, relay_only=relay_only,
                                                 host_addresses=host_addresses, entry=entry))
        return connections[-1]

    async def connect() -> Mesh:
        mesh = Mesh(config, new_peer_connection, run, BrowserSignalingClient, observer=board)
        await mesh.connect()
        return mesh

    _fresh_mpyc()
    sys.argv = mpyc_argv(script, args, config.parties, config.pid, config.mix32_64bit)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(contextlib.closing(LineWriter(ui.output)))
        log = stack.enter_context(contextlib.closing(LineWriter(ui.log)))
        stack.enter_context(contextlib.redirect_stderr(log))
        with contextlib.redirect_stdout(log):
            # MPyC sets itself up from sys.argv, and sends its log lines to this stdout.
            import mpyc.runtime  # noqa: F401
        check_mpyc_argv(sys.argv, args)
        stack.callback(setattr, sys, "stdin", sys.stdin)
        sys.stdin = io.StringIO(stdin)
        stack.enter_context(contextlib.redirect_stdout(out))
        install(connect)
        run.install()
        ready.install()
        stack.callback(ready.uninstall)
        refreshing = asyncio.ensure_future(board.keep_fresh())
        try:
            runpy.run_path(script, run_name="__main__")
            await run.finish()
        finally:
            refreshing.cancel()
            for pc in connections:
                await pc.close()
