"""The Python API: make this process's MPyC runtime `mpc` a party of a room over mpc-net.

For scripts that drive `mpc` themselves and for notebooks, which cannot pass MPyC's -M and -I
on a command line: after `setup(...)` the rest of the program is plain MPyC,
`await mpc.start()` ... `await mpc.shutdown()` (or `mpc.run(...)` of them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterable

from .auth import program_hash
from .config import ConfigError, PartyOptions, mesh_config, program_file_hash
from .mesh import Mesh
from .transport import PEER_TIMEOUT, PeerLost

logger = logging.getLogger("mpc_net.api")

_defaults = PartyOptions(parties=1, index=0)


def setup(parties: int, index: int, *, room: str, signal: str, key: str | None = None,
          roster: str | None = None, trust_room_server: bool = False,
          ice: Iterable[str] = (), relay_only: bool = False, native_only: bool = False,
          join_token: str | None = None, local_addresses: Iterable[str] | None = None,
          peer_timeout: float = PEER_TIMEOUT, outage_limit: float = _defaults.outage_limit,
          connect_timeout: float = _defaults.connect_timeout,
          join_timeout: float = _defaults.join_timeout, threshold: int | None = None,
          program: str | bytes | None = None, allow_different_programs: bool = False):
    """Make MPyC's runtime `mpc` party `index` of `parties` in `room` on room server `signal`.

    Call it before `mpc.start()`, which then joins the room and connects to every other party
    over authenticated WebRTC data channels; `mpc.shutdown()` closes them. The keyword
    arguments are those of `mpc-net run` (`key` and `roster` are file names, `ice` a list of
    URLs; $MPC_NET_ICE and $MPC_NET_JOIN_TOKEN count as there), with the same defaults;
    `threshold` is MPyC's -T (default: (parties - 1) // 2). Raises ConfigError, with the
    message `mpc-net run` would print, for options that cannot work.

    Every party must run the same program, which the handshake checks by a hash of its text
    (auth.program_hash; never of the arguments): by default the file of the `__main__` module,
    the script that Python runs. Where there is none (a notebook, `python -c`), pass the text
    all parties agree on as `program` (e.g. the code of the cells they run).
    `allow_different_programs` accepts parties with another program, as `mpc-net run
    --allow-different-programs` does.

    Returns `mpc`, for convenience.
    """
    if not isinstance(parties, int) or parties < 1:
        raise ConfigError(f"-M must be a positive number: {parties!r}")
    if not isinstance(index, int):
        raise ConfigError(f"-I must be a whole number: {index!r}")
    if isinstance(ice, str):
        ice = [ice]  # one URL
    options = PartyOptions(
        parties=parties, index=index, room=room, signal=signal, key=key, roster=roster,
        trust_room_server=trust_room_server, ice=list(ice), relay_only=relay_only,
        native_only=native_only, join_token=join_token,
        local_addresses=None if local_addresses is None else list(local_addresses),
        peer_timeout=peer_timeout, outage_limit=outage_limit, connect_timeout=connect_timeout,
        join_timeout=join_timeout, program_hash=_program_hash(program),
        allow_different_programs=allow_different_programs)
    config = mesh_config(options)
    from mpyc.runtime import mpc

    from .runtime import portable

    _check_mpc(mpc, parties, index)
    # MPyC's own --mix32-64bit (or $MPYC_MIX32_64BIT) wins over native_only; the handshake
    # compares what MPyC really does.
    config.mix32_64bit = not native_only or portable(mpc.options)
    _become_party(mpc, parties, index, config.mix32_64bit, threshold)
    _install_mesh(config)
    return mpc


def _install_mesh(config) -> None:
    """Have `mpc.start()` connect to the other parties, as `config` says."""
    from .native.peer import NativePeerConnection, quiet_internal_errors
    from .native.signaling import SignalingClient
    from .runtime import install

    for name in ("aioice", "aiortc", "websockets"):
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:  # MPyC logs at INFO level: these would chatter
            library.setLevel(logging.WARNING)
    on_lost = _LostParty(script_style=not _loop_running())

    async def connect() -> Mesh:
        quiet_internal_errors(asyncio.get_running_loop())
        mesh = Mesh(config, NativePeerConnection, on_lost, SignalingClient)
        await mesh.connect()
        return mesh

    install(connect)


def _check_mpc(mpc, parties: int, index: int) -> None:
    """Raise ConfigError unless MPyC's runtime may still become party `index` of `parties`."""
    from .runtime import refused_option

    if mpc.start_time is not None:
        raise ConfigError("mpc has been started already: call mpc_net.setup() before "
                          "mpc.start()")
    refusal = refused_option(mpc.options)
    if refusal is not None:
        raise ConfigError(refusal)
    if len(mpc.parties) > 1 and (len(mpc.parties), mpc.pid) != (parties, index):
        raise ConfigError(f"MPyC was set up as party {mpc.pid} of {len(mpc.parties)} (-M, -I "
                          f"on the command line), not as party {index} of {parties}")


def _program_hash(program: str | bytes | None) -> bytes:
    """The hash of `program` (text), or else of the `__main__` module's file."""
    if isinstance(program, str):
        program = program.encode()
    if isinstance(program, bytes):
        return program_hash(program)
    if program is not None:
        raise ConfigError(f"program must be the program's text (str or bytes), not "
                          f"{type(program).__name__}")
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not os.path.isfile(path):
        raise ConfigError("this program is not a file (a notebook? python -c?): pass its text, "
                          "the same on every party, as program=... so that the parties can "
                          "check that they run the same program")
    return program_file_hash(path)


def _become_party(mpc, parties: int, index: int, mix32_64bit: bool,
                  threshold: int | None) -> None:
    """Turn `mpc`, set up by MPyC from this process's command line, into party `index` of
    `parties`, as `python PROGRAM -M parties -I index [--mix32-64bit] [-T threshold]` would
    have; the options MPyC read from the command line (-L, -K, --no-prss, ...) stay.

    MPyC's setup() builds that runtime; `mpc` takes over its party-dependent state, because
    programs hold on to `mpc` itself (`from mpyc.runtime import mpc`).
    """
    from mpyc import runtime

    if (len(mpc.parties), mpc.pid) == (parties, index) and threshold is None and (
            mpc.options.mix32_64bit or not mix32_64bit):
        return  # MPyC was told so on the command line
    argv = sys.argv
    sys.argv = [argv[0], "-M", str(parties), "-I", str(index),
                *(["--mix32-64bit"] if mix32_64bit else []),
                *(["-T", str(threshold)] if threshold is not None else [])]
    # setup() points MPyC's modules at the runtime it makes; they must keep using `mpc`.
    users = [m for name, m in list(sys.modules.items())
             if name.startswith("mpyc") and getattr(m, "runtime", None) is mpc]
    try:
        fresh = runtime.setup()  # also MPyC's portable hop, with --mix32-64bit
    except AssertionError as exc:  # MPyC's check of the threshold
        raise ConfigError(f"-T: {exc}") from None
    finally:
        sys.argv = argv
        for module in users:
            module.runtime = mpc
    for name in ("M", "index", "no_async", "mix32_64bit", "threshold"):
        setattr(mpc.options, name, getattr(fresh.options, name))
    mpc.pid, mpc.parties = fresh.pid, fresh.parties
    mpc._program_counter, mpc._pc_level = fresh._program_counter, fresh._pc_level
    mpc.threshold = fresh.threshold  # makes the PRSS keys for these parties


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _LostParty:
    """What a lost party means in process. A script (set up outside any running loop) stops
    the loop, so that its `mpc.run` or `asyncio.run` ends with an error instead of waiting
    forever, as under `mpc-net run`. A notebook's loop belongs to the notebook and must go
    on: there, as with MPyC's own TCP connections, the computation waits until the cell is
    interrupted, and the log says why."""

    def __init__(self, *, script_style: bool) -> None:
        self.script_style = script_style
        self.error: PeerLost | None = None

    def __call__(self, error: PeerLost) -> None:
        if self.error is not None:
            return
        self.error = error
        if self.script_style:
            logger.error("%s", error)
            asyncio.get_running_loop().stop()
        else:
            logger.error("%s; the computation cannot go on: interrupt it, and start over",
                         error)
