"""Run one party of an MPyC program in this process, connected over WebRTC."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import runpy
import sys
import traceback
from typing import NoReturn

from ..mesh import Mesh, MeshConfig, MeshError
from ..runtime import RunFailure, install
from ..stats import ExitReason, RunStats, write

logger = logging.getLogger("mpc_net.party")


@dataclasses.dataclass(frozen=True)
class Outcome:
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
    if config is not None:
        from mpyc.runtime import mpc

        from .peer import NativePeerConnection, quiet_internal_errors
        from .signaling import SignalingClient

        install(lambda: stats.watch(Mesh(config, NativePeerConnection, failure,
                                         SignalingClient)),
                on_connected=stats.connected)
        quiet_internal_errors(mpc._loop)
    gc.freeze()  # imported objects live until exit: no collection, nor the last, walks them
    gc.enable()  # off while cli.py imported
    try:
        outcome = _run_program(script, failure)
    finally:
        sys.stdout.flush()
    code = outcome.code
    if stats_json is not None:
        code = _write_report(stats_json, stats, outcome) or code
    if outcome.abandon:
        _abandon_process(code)
    return code


def _run_program(script: str, failure: RunFailure) -> Outcome:
    try:
        runpy.run_path(script, run_name="__main__")
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
        traceback.print_exc()
        return Outcome(1, ExitReason.INTERRUPTED, "interrupted (Ctrl-C)", abandon=True)
    except BaseException as exc:
        if failure.error is not None:
            # The loop was stopped on purpose, and the reason is already logged.
            return _lost(failure)
        traceback.print_exc()
        return Outcome(1, ExitReason.PROGRAM_ERROR, f"{type(exc).__name__}: {exc}", abandon=True)
    if failure.error is not None:
        return _lost(failure)
    return Outcome(0, ExitReason.OK)


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
