"""`mpc-net run`: its options, how SCRIPT and its arguments are told apart from them, and
the run: the program alone, all parties on this machine (local mode), or one party of a room."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import logging
import os
import sys
from typing import NoReturn

from .argtypes import Parser, number, positive_float, positive_int
from .config import ConfigError, PartyOptions

logger = logging.getLogger("mpc_net")

RUN_DESCRIPTION = """\
Run an unmodified MPyC program with its parties connected over WebRTC data channels.

Local mode (-M m without -I): an embedded room server on loopback and all m parties as
separate processes on this machine. Party 0 writes to this terminal, the others to log files
whose paths are printed (removed at exit unless --log-dir is given; the end of a failed party's
log is shown). The exit code is non-zero if any party fails.

Distributed mode (-M m -I i): this process is party i of m; every party names the same room
and room server (start one with `mpc-net signal`), its own key (`mpc-net keygen`) and the same
roster of all parties' public keys (`mpc-net roster`). Every channel is authenticated against
the roster before MPyC sends anything, so neither the room server nor anything on the network
can pose as a party. Local mode makes throwaway keys and a roster by itself.

The options below may also follow SCRIPT, up to a `--`. Every other argument after SCRIPT,
and everything after `--`, goes to the program and to MPyC, so MPyC's own flags (-T, -L, -K,
--no-prss, --no-barrier, --log-level, ...) work as usual; -M and -I are mpc-net's, and MPyC's
--ssl, -P, -C, -B, --output-file and --output-windows are refused (mpc-net does their job its
own way). Standard output is exactly the program's; mpc-net reports on standard error."""

RUN_EPILOG = """\
examples:
  mpc-net run demos/secretsanta.py -M3
  mpc-net signal --host 0.0.0.0 --port 8765                    # on a reachable host
  mpc-net keygen --out me.key                                  # each party, once
  mpc-net roster ed25519:AAA... ed25519:BBB... ed25519:CCC... --out roster.json
  mpc-net run demos/auction.py -M3 -I 0 --room lab --signal ws://HOST:8765 \\
      --key me.key --roster roster.json                        # one per party"""


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _add_options(parser: argparse.ArgumentParser) -> None:
    """The options of `mpc-net run`, which may also follow SCRIPT (see _program_arguments)."""
    _add_room_options(parser)
    _add_network_options(parser)
    _add_time_and_report_options(parser)


def _add_room_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-M", dest="parties", type=positive_int, metavar="m",
                        help="number of parties (default 1: run alone, no network)")
    parser.add_argument("-I", "--index", dest="index", type=int, metavar="i",
                        help="index of this party, 0 <= i < m (distributed mode)")
    parser.add_argument("--room", metavar="NAME",
                        help="room name shared by all parties (distributed mode); "
                             "letters, digits, '.', '_' and '-', at most 64")
    parser.add_argument("--signal", metavar="URL",
                        help="room server, ws://HOST:PORT or wss://HOST:PORT (distributed mode); "
                             "a comma-separated list of processes sharing rooms (--redis) "
                             "is tried in order, at every (re)join")
    parser.add_argument("--key", metavar="FILE",
                        help="this party's private identity key (from `mpc-net keygen`)")
    parser.add_argument("--roster", metavar="FILE",
                        help="all parties' public keys in party order (from `mpc-net roster`)")
    parser.add_argument("--trust-room-server", action="store_true",
                        help="weaker: no roster, trust the public keys the room server relays "
                             "(it could pose as any party); prints a code to compare by voice")


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ice", action="append", metavar="URL",
                        help="STUN or TURN server: stun:HOST[:PORT], "
                             "turn:USER:PASS@HOST[:PORT][?transport=udp|tcp], "
                             "turns:USER:PASS@HOST[:PORT] (repeatable; also from $MPC_NET_ICE "
                             "and from the room server). aiortc uses only the first STUN and "
                             "the first TURN server. Default: none (host candidates only)")
    parser.add_argument("--relay-only", action="store_true",
                        help="offer and use only TURN relay candidates, so that peers never "
                             "learn each other's addresses (needs a TURN server)")
    parser.add_argument("--native-only", action="store_true",
                        help="every party is a native mpc-net party: keep MPyC's own program-"
                             "counter hop and numpy transfers (faster for arrays) instead of the "
                             "portable --mix32-64bit mode browser parties need; all parties must "
                             "agree, which the handshake checks; local mode does this by itself")
    parser.add_argument("--allow-different-programs", action="store_true",
                        help="take part even with parties whose program differs from SCRIPT "
                             "(the handshake compares SHA-256 hashes of the program texts, not "
                             "of their arguments, and refuses a difference by default); each "
                             "party decides for itself, and a difference is logged")
    parser.add_argument("--join-token", metavar="TOKEN",
                        help="token for a room server that requires one (mpc-net signal "
                             "--join-token); also from $MPC_NET_JOIN_TOKEN")
    parser.add_argument("--local-address", action="append", type=_address, metavar="ADDR",
                        help="offer host candidates only on this local address (repeatable); "
                             "default: every non-loopback address, or only 127.0.0.1 when the "
                             "room server is on loopback or the machine has no other address")


def _add_time_and_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer-timeout", type=positive_float, default=PartyOptions.peer_timeout,
                        metavar="SECONDS",
                        help="declare a party lost after this long without a word from it "
                             "(default %(default)g)")
    parser.add_argument("--outage-limit", type=number(float, 0),
                        default=PartyOptions.outage_limit, metavar="SECONDS",
                        help="let a connection that breaks mid-run (network down, address "
                             "change) come back within this time: the lower index rebuilds it "
                             "through the room server and the stream resumes where it stopped "
                             "(default 0: a broken connection ends the run)")
    parser.add_argument("--connect-timeout", type=positive_float,
                        default=PartyOptions.connect_timeout,
                        metavar="SECONDS",
                        help="give up on a peer that is in the room but cannot be reached "
                             "within this time (default %(default)g)")
    parser.add_argument("--join-timeout", type=positive_float,
                        default=PartyOptions.join_timeout,
                        metavar="SECONDS",
                        help="give up when not every party has joined the room within this "
                             "time (default %(default)g)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="local mode: where the output of parties 1..m-1 goes "
                             "(default: a new temporary directory)")
    parser.add_argument("--stats-json", metavar="FILE",
                        help="at the end of the run, failed or not, write a JSON report of it "
                             "to FILE (see README); local mode: one per party, stats.json -> "
                             "stats.0.json, stats.1.json, ...")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more mpc-net detail on stderr (-vv: also aiortc's)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only errors from mpc-net on stderr")


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The options and the SCRIPT [ARGS] of `mpc-net run`."""
    _add_options(run)
    # The raw rest of the command line: argparse's own handling of `--` differs between
    # Python versions, so SCRIPT and its arguments are taken apart in _program_arguments.
    run.add_argument("program", nargs=argparse.REMAINDER, metavar="SCRIPT [ARGS]",
                     help="the MPyC program (a .py file) and the arguments for it and for MPyC")


def _program_arguments(options: argparse.Namespace) -> tuple[str | None, list[str]]:
    """SCRIPT and the arguments for the program and MPyC; mpc-net's own options among those
    before the first `--` are taken out into `options`, and that `--` is dropped."""
    program = options.program[1:] if options.program[:1] == ["--"] else options.program
    if not program:
        return None, []
    script, tail = program[0], program[1:]
    end = tail.index("--") if "--" in tail else len(tail)
    trailing = Parser(prog="mpc-net run", add_help=False, allow_abbrev=False)
    _add_options(trailing)
    for action in trailing._actions:
        action.default = argparse.SUPPRESS
    ours, rest = trailing.parse_known_args(tail[:end])
    for name, value in vars(ours).items():
        if isinstance(value, list):
            value = (getattr(options, name) or []) + value
        setattr(options, name, value)
    return script, rest + tail[end + 1:]


def _setup_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mpc-net: %(message)s"))
    logger.addHandler(handler)
    # MPyC's own log lines go to stdout through the root logger; ours stay on stderr.
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    # Progress lines help a person watching; in a log file they are noise.
    shown = not quiet and (verbose or sys.stderr.isatty())
    logging.getLogger("mpc_net.progress").setLevel(logging.INFO if shown else logging.WARNING)
    # The room server embedded in local mode chats about every join; that is noise here.
    logging.getLogger("mpc_net.signaling").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("aioice", "aiortc", "websockets"):
        library = logging.getLogger(name)
        library.addHandler(handler)
        library.propagate = False
        library.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def run(run: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    """`mpc-net run`: check everything, then run the program alone, locally or as a party
    (with the collector off until the imports are done: cli.main)."""
    from .runtime import MpycOptionError, check_mpyc_argv, import_mpyc, mpyc_argv

    script, rest = _program_arguments(options)
    _setup_logging(options.verbose, options.quiet)
    if script is None:
        run.error("the following arguments are required: SCRIPT")
    if not os.path.isfile(script):
        run.error(f"no such program: {script}")
    from .rtc.patches import check_stock_sctp
    check_stock_sctp(run.error)
    parties = options.parties or 1
    local = options.index is None
    stats_json = _stats_file(run, options.stats_json, 0 if local else None)
    if local:
        if options.room or options.signal:
            run.error("--room and --signal need -I (distributed mode)")
        if options.key or options.roster or options.trust_room_server:
            run.error("--key, --roster and --trust-room-server are for distributed mode (-I); "
                      "local mode makes its own keys")
        _ice_servers(run, options)  # checked here once, rather than by every party
        config = None
    else:
        if options.parties is None:
            run.error("-I needs -M (the number of parties)")
        party = _party_options(options, _program_hash(run, script))
        config = _mesh_config(run, party)
    # Local mode checks the arguments as its party 0 will, and runs no MPyC itself.
    pid = options.index if not local else 0 if parties > 1 else None
    argv = mpyc_argv(script, rest, parties, pid, config is not None and config.mix32_64bit)
    try:
        import_mpyc(argv, runs_here=not local or parties == 1)
        mpyc_options = check_mpyc_argv(argv, rest)
    except MpycOptionError as exc:
        run.error(str(exc))
    if mpyc_options.HELP or mpyc_options.VERSION or parties == 1 and local:
        from .native.party import run_party

        if mpyc_options.HELP or mpyc_options.VERSION:
            return run_party(argv, None)
        return run_party(argv, None, stats_json)  # the program alone
    if local:
        gc.freeze()  # as in party.py: a shorter exit once the parties have ended
        gc.enable()
        return _run_local(script, rest, parties, options)
    from .native.party import run_party
    from .runtime import portable

    # MPyC's own --mix32-64bit (or $MPYC_MIX32_64BIT) wins over --native-only; the handshake
    # then compares what MPyC really does.
    config.mix32_64bit = portable(mpyc_options)
    return run_party(mpyc_argv(script, rest, parties, pid, config.mix32_64bit), config,
                     stats_json)


def _run_local(script: str, rest: list[str], parties: int,
               options: argparse.Namespace) -> NoReturn:
    """Local mode: a room server and every party here, each party a process of its own; exits
    with the run's exit code (local.run_local)."""
    from .local import run_local

    party_options = [f"--peer-timeout={options.peer_timeout}",
                     f"--outage-limit={options.outage_limit}",
                     *(f"--ice={url}" for url in options.ice or []),
                     *(["--relay-only"] if options.relay_only else []),
                     *(["--allow-different-programs"]
                       if options.allow_different_programs else []),
                     f"--connect-timeout={options.connect_timeout}",
                     "--native-only",  # every party is a process of ours
                     *(["-v"] * options.verbose), *(["-q"] if options.quiet else [])]
    code = asyncio.run(run_local(script, rest, parties, party_options, options.log_dir,
                                 options.peer_timeout + 5, options.stats_json))
    # Every party has ended and what run_local made is removed; no program ran here: exit
    # without the interpreter's teardown of all that this process imported (the room server,
    # websockets, MPyC's options), the last step of every local run.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _party_options(options: argparse.Namespace, program_hash: bytes) -> PartyOptions:
    return PartyOptions(
        parties=options.parties, index=options.index, room=options.room, signal=options.signal,
        key=options.key, roster=options.roster, trust_room_server=options.trust_room_server,
        ice=options.ice or [], relay_only=options.relay_only, native_only=options.native_only,
        join_token=options.join_token, local_addresses=options.local_address,
        peer_timeout=options.peer_timeout, outage_limit=options.outage_limit,
        connect_timeout=options.connect_timeout, join_timeout=options.join_timeout,
        program_hash=program_hash, allow_different_programs=options.allow_different_programs)


def _program_hash(run: argparse.ArgumentParser, script: str) -> bytes:
    """What the handshake says of SCRIPT: the hash of its text (never of its arguments)."""
    from .auth import short_hash
    from .config import program_file_hash

    try:
        digest = program_file_hash(script)
    except ConfigError as exc:
        run.error(str(exc))
    logger.debug("program %s: SHA-256 %s (%s in messages)", script, digest.hex(),
                 short_hash(digest))
    return digest


def _stats_file(run: argparse.ArgumentParser, path: str | None, party: int | None,
                ) -> str | None:
    """The checked --stats-json FILE of this process (local mode: of party `party`)."""
    if path is None:
        return None
    from .stats import StatsFileError, check_writable, party_file

    try:
        check_writable(path)
    except StatsFileError as exc:
        run.error(str(exc))
    return path if party is None else party_file(path, party)


def _ice_servers(run: argparse.ArgumentParser, options: argparse.Namespace) -> list[dict]:
    from .config import ice_servers

    try:
        return ice_servers(options.ice or [])
    except ConfigError as exc:
        run.error(str(exc))


def _mesh_config(run: argparse.ArgumentParser, party: PartyOptions):
    from .config import mesh_config

    try:
        return mesh_config(party)
    except ConfigError as exc:
        run.error(str(exc))
