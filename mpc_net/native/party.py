"""Run one party of an MPyC program in this process, connected over WebRTC."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import runpy
import sys
import threading
import traceback
from collections.abc import Callable
from typing import NoReturn

from ..mesh import Mesh, MeshConfig, MeshError, PeerConnection
from ..runtime import RunFailure, install
from ..stats import ExitReason, RunStats, write
from ..values import Value
from .loop import PartyEventLoop

logger = logging.getLogger("mpc_net.party")


class Outcome(Value):
    """How the program ended; `abandon`: exit at once (see _abandon_process)."""

    code: int
    reason: ExitReason
    message: str | None = None
    peer: int | None = None
    abandon: bool = False


def run_party(argv: list[str], config: MeshConfig | None, stats_json: str | None = None) -> int:
    """Run the program `argv[0]` with MPyC's command line `argv` (runtime.mpyc_argv), as party
    `config.pid` of `config.parties` (alone, or MPyC's help, if config is None), and write the
    run report to `stats_json` at the end if given (stats.py).

    Returns the exit code. The program's stdout is untouched; mpc-net reports on stderr.
    """
    script = argv[0]
    # MPyC reads its options from sys.argv when mpyc.runtime is first imported.
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    failure = RunFailure()
    stats = RunStats(0, 1, None) if config is None else RunStats(config.pid, config.parties,
                                                                  config.room)
    early = None if config is None or config.parties == 1 else EarlyMesh(config, failure, stats)
    try:
        outcome = _run_program(script, early, failure)
    finally:
        sys.stdout.flush()
    code = outcome.code
    if stats_json is not None:
        code = _write_report(stats_json, stats, outcome) or code
    if outcome.abandon:
        _abandon_process(code)
    return code


class EarlyMesh:
    """This party's mesh, begun as the process starts: the room is joined while aiortc is
    imported in a thread, the peer connections are made and connect while MPyC's runtime is,
    and the event loop goes on in a thread of its own (the lender) while the program runs up to
    its first use of the loop, which takes it back: MPyC's start (runtime.install) then takes up
    the connect under way. Meanwhile the peers' checks, handshakes and keepalives are answered,
    however long the program takes to start MPyC."""

    def __init__(self, config: MeshConfig, failure: RunFailure, stats: RunStats) -> None:
        from .signaling import SignalingClient  # websockets: before the thread's imports

        self._loop = PartyEventLoop()
        self.mesh = Mesh(config, _new_peer_connection, failure, SignalingClient)
        self._failure = failure
        self._stats = stats
        self._connecting: asyncio.Future[object] | None = None
        self._taken = False
        self._lender: threading.Thread | None = None

    def begin(self) -> None:
        """Import aiortc and MPyC's runtime while joining the room, then lend the loop to a
        thread of its own until the program uses it (a failed join is raised here)."""
        asyncio.set_event_loop(self._loop)  # MPyC's runtime takes this loop (_import_runtime)
        self._loop.run_until_complete(self._begin())
        from mpyc.runtime import mpc

        from .peer import quiet_internal_errors

        install(self._take, on_connected=self._stats.connected)
        quiet_internal_errors(mpc._loop)
        self._take_back_on_first_use(mpc)
        self._lender = threading.Thread(target=self._loop.run_forever, name="mpc-net early",
                                        daemon=True)
        self._lender.start()

    async def _begin(self) -> None:
        aiortc: asyncio.Future[None] = self._loop.create_future()
        imports = self._loop.run_in_executor(None, _import_runtime, self._loop, aiortc)
        self._stats.watch(self.mesh)  # the report's connect_s counts from here
        self._connecting = asyncio.ensure_future(self.mesh.connect(ready=aiortc))
        waiting = asyncio.ensure_future(imports)
        await asyncio.wait({self._connecting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if self._connecting.done() and not waiting.done():
            try:
                self._connecting.result()  # connected already, or failed
            except BaseException:
                waiting.cancel()
                raise
        await waiting

    def take_back(self) -> None:
        """The loop back in the main thread (from the lender, if it still has it)."""
        lender, self._lender = self._lender, None
        if lender is not None:
            if lender.is_alive():  # (a lost peer may have stopped the loop: runtime.RunFailure)
                self._loop.call_soon_threadsafe(self._loop.stop)
            lender.join()

    def _take_back_on_first_use(self, mpc) -> None:
        """The program's first use of the loop takes it back: `mpc.run`, or asyncio's loop
        functions in the main thread (asyncio.run() gets this loop, where the connect is
        under way; `get_event_loop().run_until_complete` finds it idle)."""
        run = mpc.run
        policy = asyncio.get_event_loop_policy()
        new_event_loop, get_event_loop = policy.new_event_loop, policy.get_event_loop

        def mpc_run(f):
            self.take_back()
            return run(f)

        def this_loop(made: Callable[[], asyncio.AbstractEventLoop]
                      ) -> Callable[[], asyncio.AbstractEventLoop]:
            def loop() -> asyncio.AbstractEventLoop:
                if threading.current_thread() is not threading.main_thread():
                    return made()
                del policy.new_event_loop, policy.get_event_loop  # once: the policy's own
                self.take_back()
                return self._loop
            return loop

        mpc.run = mpc_run
        policy.new_event_loop = this_loop(new_event_loop)  # type: ignore[method-assign]
        policy.get_event_loop = this_loop(get_event_loop)  # type: ignore[method-assign]

    async def _take(self) -> Mesh:
        """MPyC's start: the mesh, once connected."""
        self._taken = True
        await self._connecting
        if self._failure.error is not None:
            raise self._failure.error  # a channel lost before the program got here
        return self.mesh

    def leave_unless_taken(self) -> None:
        """After the program: if it never started MPyC, stop connecting (which leaves the room)
        and close what was made meanwhile, so the peers see this party go at once."""
        self.take_back()
        if self._taken or self._connecting is None or self._loop.is_closed():
            return
        self._connecting.cancel()
        self._loop.run_until_complete(asyncio.gather(self._connecting, return_exceptions=True))
        self._loop.run_until_complete(self.mesh.peers.abandon())


def _import_runtime(loop: asyncio.AbstractEventLoop, aiortc: asyncio.Future[None]) -> None:
    """Import aiortc, say so (`aiortc`: peer connections can be made), then MPyC's runtime (in a
    worker thread). MPyC's Runtime caches the event loop it finds when it is made at import; in
    this thread that is `loop`, the party's."""
    try:
        from . import peer  # noqa: F401
    except BaseException as exc:
        loop.call_soon_threadsafe(aiortc.set_exception, exc)
        raise
    loop.call_soon_threadsafe(aiortc.set_result, None)
    asyncio.set_event_loop(loop)
    try:
        import mpyc.runtime  # noqa: F401
    finally:
        asyncio.set_event_loop(None)


def _new_peer_connection(*args, **kwargs) -> PeerConnection:
    from .peer import NativePeerConnection  # imported by then (_import_runtime)

    return NativePeerConnection(*args, **kwargs)


def _run(script: str, early: EarlyMesh | None) -> None:
    try:
        if early is not None:
            early.begin()
        gc.freeze()  # imported objects live until exit: no collection, nor the last, walks them
        gc.enable()  # off since cli.main, while the party imported
        runpy.run_path(script, run_name="__main__")
    finally:
        if early is not None:
            early.leave_unless_taken()


def _run_program(script: str, early: EarlyMesh | None, failure: RunFailure) -> Outcome:
    try:
        _run(script, early)
    except MeshError as exc:
        logger.error("%s", exc)
        return Outcome(1, ExitReason.MESH_ERROR, str(exc), abandon=True)
    except SystemExit as exc:
        if failure.error is not None:
            return _lost(failure)
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
            return Outcome(code, ExitReason.OK if code == 0 else ExitReason.PROGRAM_EXIT,
                           None if code == 0 else f"the program exited with code {code}")
        print(exc.code, file=sys.stderr)  # as Python does for sys.exit("message")
        return Outcome(1, ExitReason.PROGRAM_EXIT, str(exc.code))
    except KeyboardInterrupt:
        if failure.error is not None:
            return _lost(failure)
        _print_error(script)
        return Outcome(1, ExitReason.INTERRUPTED, "interrupted (Ctrl-C)", abandon=True)
    except BaseException as exc:
        if failure.error is not None:
            # The loop was stopped on purpose, and the reason is already logged.
            return _lost(failure)
        _print_error(script)
        return Outcome(1, ExitReason.PROGRAM_ERROR, f"{type(exc).__name__}: {exc}", abandon=True)
    if failure.error is not None:
        return _lost(failure)
    return Outcome(0, ExitReason.OK)


def _print_error(script: str) -> None:
    """The exception being handled, as Python shows a program's: from the program's first frame
    (mpc-net's and runpy's before it are noise), or only its lines if the program has none (a
    syntax error)."""
    _, exc, tb = sys.exc_info()
    program = os.path.abspath(script)
    first = tb
    while first is not None and os.path.abspath(first.tb_frame.f_code.co_filename) != program:
        first = first.tb_next
    traceback.print_exception(type(exc), exc, first if first or isinstance(exc, SyntaxError)
                              else tb)


def _lost(failure: RunFailure) -> Outcome:
    error = failure.error
    return Outcome(1, ExitReason.PEER_LOST, str(error), error.peer_pid, abandon=True)


def _write_report(path: str, stats: RunStats, outcome: Outcome) -> int | None:
    """Write the run report; a failure to is a failed run (exit code 1), said in one line."""
    report = stats.report(outcome.reason, outcome.code, outcome.message, outcome.peer)
    try:
        write(path, report)
    except OSError as exc:
        logger.error("cannot write the run report to %s: %s", path, exc.strerror or exc)
        return 1
    return None


def _abandon_process(code: int) -> NoReturn:
    """Exit at once after a failed run.

    Peer connections torn down halfway (a stopped loop, tasks never finished) can crash aiortc's
    native finalizers during interpreter shutdown; the run has failed and said why already.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 1)
