"""Run one party of an MPyC program in this process, connected over WebRTC."""

from __future__ import annotations

import gc
import logging
import os
import runpy
import sys
import traceback
from typing import NoReturn

from .mesh import Mesh, MeshConfig, MeshError
from .runtime import RunFailure, install

logger = logging.getLogger("mpc_net.party")


def run_party(argv: list[str], config: MeshConfig | None) -> int:
    """Run the program `argv[0]` with MPyC's command line `argv` (runtime.mpyc_argv), as party
    `config.pid` of `config.parties` (alone, or MPyC's help, if config is None).

    Returns the exit code. The program's stdout is untouched; mpc-net reports on stderr.
    """
    script = argv[0]
    # MPyC reads its options from sys.argv when mpyc.runtime is first imported.
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    failure = RunFailure()
    if config is not None:
        from mpyc.runtime import mpc

        from .rtc.native import NativePeerConnection, quiet_internal_errors

        install(lambda: Mesh(config, NativePeerConnection, failure))
        quiet_internal_errors(mpc._loop)
    gc.freeze()  # imported objects live until exit: no collection, nor the last, walks them
    gc.enable()  # off while cli.py imported
    try:
        runpy.run_path(script, run_name="__main__")
    except MeshError as exc:
        logger.error("%s", exc)
        _abandon_process()
    except SystemExit as exc:
        if failure.error is not None:
            _abandon_process()
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as Python does for sys.exit("message")
        return 1
    except BaseException:
        if failure.error is None:
            traceback.print_exc()
        # Otherwise the loop was stopped on purpose, and the reason is already logged.
        _abandon_process()
    finally:
        sys.stdout.flush()
    if failure.error is not None:
        _abandon_process()
    return 0


def _abandon_process() -> NoReturn:
    """Exit with code 1 at once after a failed run.

    Peer connections torn down halfway (a stopped loop, tasks never finished) can crash aiortc's
    native finalizers during interpreter shutdown; the run has failed and said why already.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
