"""Run one party of an MPyC program in this process, connected over WebRTC."""

from __future__ import annotations

import logging
import os
import runpy
import sys
import traceback

from .mesh import Mesh, MeshConfig, MeshError
from .runtime import MPYC_FLAGS, RunFailure, install

logger = logging.getLogger("mpc_net.party")


def run_party(script: str, script_args: list[str], config: MeshConfig | None) -> int:
    """Run `script` as party `config.pid` of `config.parties` (alone if config is None).

    Returns the exit code. The program's stdout is untouched; mpc-net reports on stderr.
    """
    parties = ["-M", "1"] if config is None else ["-M", str(config.parties), "-I", str(config.pid)]
    # MPyC reads its options from sys.argv when mpyc.runtime is first imported.
    sys.argv = [script, *script_args, *parties, *MPYC_FLAGS]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    failure = RunFailure()
    if config is not None:
        from mpyc.runtime import mpc

        from .rtc.native import NativePeerConnection, quiet_internal_errors

        install(lambda: Mesh(config, NativePeerConnection, failure))
        quiet_internal_errors(mpc._loop)
    try:
        runpy.run_path(script, run_name="__main__")
    except MeshError as exc:
        logger.error("%s", exc)
        return 1
    except SystemExit as exc:
        if failure.error is not None:
            return 1
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as Python does for sys.exit("message")
        return 1
    except BaseException:
        if failure.error is not None:
            return 1  # the loop was stopped on purpose; the reason is already logged
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
    return 1 if failure.error is not None else 0
