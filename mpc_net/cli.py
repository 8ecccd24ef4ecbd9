"""The `mpc-net` command."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
from urllib.parse import urlsplit

from . import __version__
from .transport import PEER_TIMEOUT

logger = logging.getLogger("mpc_net")

RUN_DESCRIPTION = """\
Run an unmodified MPyC program with its parties connected over WebRTC data channels.

Local mode (-M m without -I): an embedded room server on loopback and all m parties as
separate processes on this machine. Party 0 writes to this terminal, the others to log files
whose paths are printed. The exit code is non-zero if any party fails.

Distributed mode (-M m -I i): this process is party i of m; every party names the same room
and room server (start one with `mpc-net signal`).

The options below may also follow SCRIPT. Every other argument after SCRIPT goes to the program
and to MPyC, so MPyC's own flags (-T, -L, -K, --no-prss, --no-barrier, --log-level, ...) work
as usual. Standard output is exactly the program's; mpc-net reports on standard error."""

RUN_EPILOG = """\
examples:
  mpc-net run demos/secretsanta.py -M3
  mpc-net signal --port 8765                                   # on a reachable host
  mpc-net run demos/auction.py -M3 -I 0 --room lab --signal ws://HOST:8765   # one per party"""


class _Parser(argparse.ArgumentParser):
    """Bad input ends in one line and exit code 2, never a usage dump or a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return parse


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-M", dest="parties", type=_positive(int), metavar="m",
                        help="number of parties (default 1: run alone, no network)")
    parser.add_argument("-I", dest="index", type=int, metavar="i",
                        help="index of this party, 0 <= i < m (distributed mode)")
    parser.add_argument("--room", metavar="NAME",
                        help="room name shared by all parties (distributed mode); "
                             "letters, digits, '.', '_' and '-', at most 64")
    parser.add_argument("--signal", metavar="URL",
                        help="room server, ws://HOST:PORT or wss://HOST:PORT (distributed mode)")
    parser.add_argument("--local-address", action="append", type=_address, metavar="ADDR",
                        help="offer host candidates only on this local address (repeatable); "
                             "default: every non-loopback address, or only 127.0.0.1 when the "
                             "room server is on loopback or the machine has no other address")
    parser.add_argument("--peer-timeout", type=_positive(float), default=PEER_TIMEOUT,
                        metavar="SECONDS",
                        help="declare a party lost after this long without a word from it "
                             "(default %(default)g)")
    parser.add_argument("--connect-timeout", type=_positive(float), default=20.0,
                        metavar="SECONDS",
                        help="give up on a peer that is in the room but cannot be reached "
                             "within this time (default %(default)g)")
    parser.add_argument("--join-timeout", type=_positive(float), default=300.0,
                        metavar="SECONDS",
                        help="give up when not every party has joined the room within this "
                             "time (default %(default)g)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help="local mode: where the output of parties 1..m-1 goes "
                             "(default: a new temporary directory)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more mpc-net detail on stderr (-vv: also aiortc's)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only errors from mpc-net on stderr")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpc-net", description="Run MPyC secure multiparty computations "
                     "between parties connected peer-to-peer over WebRTC data channels.")
    parser.add_argument("--version", action="version", version=f"mpc-net {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    run = commands.add_parser("run", help="run an MPyC program over WebRTC",
                              description=RUN_DESCRIPTION, epilog=RUN_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_options(run)
    run.add_argument("script", metavar="SCRIPT", help="the MPyC program (a .py file)")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments for the program and for MPyC")

    signal = commands.add_parser(
        "signal", help="run a room server (signaling only, never MPC data)",
        description="Run a room server: parties meet in rooms and exchange session descriptions "
                    "through it. It never sees MPC data. Stop it with Ctrl-C or SIGTERM.")
    signal.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s; 0.0.0.0 for all)")
    signal.add_argument("--port", type=int, default=8765,
                        help="TCP port to listen on (default %(default)s)")
    signal.add_argument("-v", "--verbose", action="count", default=0,
                        help="log every join, leave and error")
    return parser


def _split_run_arguments(run: argparse.ArgumentParser, options: argparse.Namespace) -> list[str]:
    """Take mpc-net's own options out of the arguments that follow SCRIPT."""
    trailing = _Parser(prog="mpc-net run", add_help=False, allow_abbrev=False)
    _add_run_options(trailing)
    for action in trailing._actions:
        action.default = argparse.SUPPRESS
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    ours, rest = trailing.parse_known_args(args)
    for name, value in vars(ours).items():
        if isinstance(value, list):
            value = (getattr(options, name) or []) + value
        setattr(options, name, value)
    return rest


def _setup_logging(verbose: int, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mpc-net: %(message)s"))
    logger.addHandler(handler)
    # MPyC's own log lines go to stdout through the root logger; ours stay on stderr.
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    # The room server embedded in local mode chats about every join; that is noise here.
    logging.getLogger("mpc_net.signaling").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("aioice", "aiortc", "websockets"):
        library = logging.getLogger(name)
        library.addHandler(handler)
        library.propagate = False
        library.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    run = parser._subparsers._group_actions[0].choices["run"]
    rest = _split_run_arguments(run, options)
    _setup_logging(options.verbose, options.quiet)
    if not os.path.isfile(options.script):
        run.error(f"no such program: {options.script}")
    parties = options.parties or 1
    if options.index is None:
        if options.room or options.signal:
            run.error("--room and --signal need -I (distributed mode)")
        if parties == 1:
            from .party import run_party
            return run_party(options.script, rest, None)
        from .local import run_local
        party_options = [f"--peer-timeout={options.peer_timeout}",
                         f"--connect-timeout={options.connect_timeout}",
                         *(["-v"] * options.verbose), *(["-q"] if options.quiet else [])]
        return asyncio.run(run_local(options.script, rest, parties, party_options,
                                     options.log_dir, options.peer_timeout + 5))
    return _run_distributed(run, options, rest, parties)


def _run_distributed(run: argparse.ArgumentParser, options: argparse.Namespace, rest: list[str],
                     parties: int) -> int:
    from .mesh import MeshConfig
    from .party import run_party
    from .rtc.native import use_host_addresses
    from .signaling.protocol import ProtocolError, validate_room

    if options.parties is None:
        run.error("-I needs -M (the number of parties)")
    if not 0 <= options.index < parties:
        run.error(f"-I {options.index} is out of range for -M {parties} (0 <= i < m)")
    if options.room is None or options.signal is None:
        run.error("distributed mode (-I) needs --room NAME and --signal ws://HOST:PORT")
    try:
        validate_room(options.room)
    except ProtocolError as exc:
        run.error(exc.message)
    url = urlsplit(options.signal)
    if url.scheme not in ("ws", "wss") or not url.hostname:
        run.error(f"--signal must be ws://HOST:PORT or wss://HOST:PORT, not {options.signal!r}")
    if options.local_address:
        use_host_addresses(options.local_address)
    elif _is_loopback(url.hostname):
        use_host_addresses(["127.0.0.1"])
    config = MeshConfig(signaling_url=options.signal, room=options.room, pid=options.index,
                        parties=parties, join_timeout=options.join_timeout,
                        connect_timeout=options.connect_timeout,
                        peer_timeout=options.peer_timeout)
    return run_party(options.script, rest, config)


def _signal(options: argparse.Namespace) -> int:
    from .signaling.server import serve_until_signal

    level = logging.DEBUG if options.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        asyncio.run(serve_until_signal(options.host, options.port))
    except OSError as exc:
        print(f"mpc-net signal: error: cannot listen on {options.host}:{options.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        if options.command == "run":
            code = _run(parser, options)
        else:
            code = _signal(options)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
