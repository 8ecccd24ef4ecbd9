"""Run MPyC over a Mesh: replace what `Runtime.start` and `Runtime.shutdown` do.

MPyC stays unforked: its `MessageExchanger`, PRSS key exchange, byte counts and shutdown
barrier all run as they do over TCP; only the way connections are made and unmade changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import sys
import time
import types
from collections.abc import Awaitable, Callable
from typing import NoReturn

from .mesh import Mesh
from .transport import PeerLost

logger = logging.getLogger("mpc_net.runtime")

# MPyC options that mpc-net replaces or cannot honour, and what it does instead.
REFUSED_MPYC_OPTIONS = {
    "ssl": ("--ssl", "every mpc-net channel is encrypted (DTLS) and authenticated against the "
                     "roster already"),
    "parties": ("-P", "parties find each other through the room server (--room, --signal)"),
    "config": ("-C/--config", "parties find each other through the room server (--room, "
                              "--signal)"),
    "base_port": ("-B/--base-port", "parties connect over WebRTC, not to TCP ports"),
    "output_file": ("--output-file", "local mode writes the output of parties 1..m-1 to files "
                                     "(kept with --log-dir)"),
    "output_windows": ("--output-windows", "local mode writes the output of parties 1..m-1 to "
                                           "files (kept with --log-dir)"),
}


class MpycOptionError(ValueError):
    """Program arguments that would make MPyC run other than as mpc-net's party."""


def mpyc_argv(script: str, program_args: list[str], parties: int, pid: int | None,
              mix32_64bit: bool) -> list[str]:
    """The command line MPyC reads (its sys.argv): our flags first, so that a `--` among the
    program's arguments cannot hide them from MPyC's parser.

    By default parties use MPyC's portable program-counter hop and array transfers: the
    default hop is `hash(tuple)`, which differs between 64-bit CPython and 32-bit Pyodide, so
    native and browser parties can always share a room. A room of native parties only (local
    mode, or `--native-only`) keeps MPyC's defaults: numpy arrays then travel pickled, which
    costs less time.
    """
    ours = ["-M", str(parties), *(["-I", str(pid)] if pid is not None else []),
            *(["--mix32-64bit"] if mix32_64bit else [])]
    return [script, *ours, *program_args]


def import_mpyc(argv: list[str], *, runs_here: bool = True) -> None:
    """Import MPyC, which reads sys.argv at import (logging, worker threads, numpy, gmpy2).

    A process that will run the program (runs_here) sets sys.argv to `argv` first; one that
    only checks arguments (local mode's supervisor) keeps MPyC quiet. A bad value for one of
    MPyC's flags raises MpycOptionError with MPyC's own one-line reason, not its usage text.
    """
    saved = sys.argv
    if "mpyc" in sys.modules:
        sys.argv = argv if runs_here else saved
        return
    sys.argv = argv if runs_here else [argv[0], "--no-log", *argv[1:]]
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            import mpyc  # noqa: F401
    except SystemExit:
        lines = err.getvalue().strip().splitlines() or ["bad arguments for MPyC"]
        raise MpycOptionError(f"MPyC: {lines[-1].partition('error: ')[2] or lines[-1]}"
                              ) from None
    finally:
        if not runs_here:
            sys.argv = saved


def check_mpyc_argv(argv: list[str], program_args: list[str]) -> argparse.Namespace:
    """MPyC's own reading of `argv` (mpyc_argv's, ending in `program_args`), refused if the
    program's arguments set -M or -I (mpc-net's) or an option mpc-net replaces. Needs
    import_mpyc first."""
    import mpyc

    parser = mpyc._get_arg_parser()

    def error(message: str) -> NoReturn:
        raise MpycOptionError(f"MPyC: {message}")

    parser.error = error  # type: ignore[method-assign]
    theirs, _ = parser.parse_known_args(program_args)
    if theirs.M is not None or theirs.index is not None:
        raise MpycOptionError("-M and -I (--index) are mpc-net's: give them before any `--` "
                              "(after it they go to MPyC, and contradict mpc-net's)")
    options, _ = parser.parse_known_args(argv[1:])
    refusal = refused_option(options)
    if refusal is not None:
        raise MpycOptionError(refusal)
    return options


def refused_option(options: argparse.Namespace) -> str | None:
    """Why MPyC's `options` (as its parser makes them) cannot run under mpc-net, if so."""
    for name, (flag, instead) in REFUSED_MPYC_OPTIONS.items():
        if getattr(options, name):
            return f"MPyC's {flag} does not apply under mpc-net: {instead}"
    return None


def portable(options: argparse.Namespace) -> bool:
    """Whether MPyC runs with its portable hop (--mix32-64bit, or $MPYC_MIX32_64BIT=1), which
    all parties must agree on: the handshake compares it."""
    return bool(options.mix32_64bit) or os.getenv("MPYC_MIX32_64BIT") == "1"


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


class SyncStyleError(RuntimeError):
    """A program that needs a blocking `mpc.run` where the browser cannot block."""


class _Settled:
    """What a task came to, boxed: a value crossing into JavaScript and back unboxed changes
    type (a float 3.0 becomes the JavaScript number 3, then the int 3), an object does not."""

    def __init__(self, value: object = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error


async def _settled(task: asyncio.Future) -> _Settled:
    try:
        return _Settled(await task)
    except BaseException as exc:  # CancelledError too: a lost party
        return _Settled(error=exc)


class BrowserRun:
    """`mpc.run` for Pyodide, and the Mesh's `on_lost` there.

    Pyodide's event loop always reports running, so stock `mpc.run` would busy-wait forever
    with more than one party. With JS Promise integration (JSPI: Chrome/Edge >= 137, Python
    entered through `callPromising` or `runPythonAsync`) `run_sync` blocks properly, so
    programs that call `mpc.run` at module level work unchanged. Without it `mpc.run` can only
    start the work: that suits a program whose single `mpc.run(main())` is its last statement
    (`finish()` then waits for it); a second call while the first is unfinished means the
    program wanted a result it cannot have, and it is refused with a message that says so.
    A lost party cancels whatever `mpc.run` is waiting for, so the run ends instead of hanging.
    """

    def __init__(self) -> None:
        self.error: PeerLost | None = None
        self._started: list[asyncio.Future] = []

    def install(self) -> None:
        from mpyc.runtime import mpc

        mpc.run = self.run

    def run(self, f):
        from pyodide.ffi import can_run_sync, run_sync

        task = asyncio.ensure_future(f)
        if not can_run_sync() and any(not t.done() for t in self._started):
            task.cancel()
            raise SyncStyleError(
                "this program calls mpc.run() again before its first call has finished "
                "(the synchronous style); that needs a browser with JavaScript Promise "
                "integration (Chrome or Edge 137 or later), or the program written as one "
                "`async def main()` run by a single mpc.run(main())")
        self._started.append(task)
        if self.error is not None:
            task.cancel()
        if not can_run_sync():
            return task
        # An exception that crosses into JavaScript gets printed there as a traceback; this
        # one is the program's own, so it goes across in the box and is raised here.
        outcome = run_sync(_settled(task))
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    async def finish(self) -> None:
        """Wait for what `mpc.run` started (without JSPI, that is the whole program)."""
        for task in self._started:
            await task

    def __call__(self, error: PeerLost) -> None:
        if self.error is None:
            self.error = error
            logger.error("%s", error)
            for task in self._started:
                task.cancel()


def install(connect: Callable[[], Awaitable[Mesh]],
            on_connected: Callable[[], None] = lambda: None) -> None:
    """Hook the MPyC runtime `mpc` (already set up from sys.argv) to connect over a Mesh that
    `connect()` returns connected (a native party's is under way already: party.py);
    `on_connected` is called once every channel is open and authenticated."""
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
        mesh = await connect()
        on_connected()
        for peer_pid, transport in mesh.transports.items():
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
