"""The `mpc-net` command."""

from __future__ import annotations

import argparse
import gc
import os
import sys

from . import __version__
from .argtypes import Parser


def _parser() -> argparse.ArgumentParser:
    """The command line; each command's options are added when that command is chosen (or
    its help asked for): `mpc-net run` makes and imports only its own."""
    from . import run_command

    parser = Parser(prog="mpc-net", description="Run MPyC secure multiparty computations "
                    "between parties connected peer-to-peer over WebRTC data channels.")
    parser.add_argument("--version", action="version", version=f"mpc-net {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=Parser)

    commands.add_parser("run", help="run an MPyC program over WebRTC",
                              usage="%(prog)s [OPTIONS] SCRIPT [ARGS ...] [-- ARGS ...]",
                              description=run_command.RUN_DESCRIPTION,
                              epilog=run_command.RUN_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              options=run_command.add_arguments)
    commands.add_parser(
        "keygen", help="make an identity key", options=_keygen_options,
        description="Write a new Ed25519 private key (readable by you only) and print its "
                    "public key as one line, for the roster.")
    commands.add_parser(
        "roster", help="make or show a roster of the parties' public keys",
        options=_roster_options,
        description="Write a roster: the public keys of all parties in party order (party 0 "
                    "first), each optionally named NAME=KEY. A key is the line `mpc-net keygen` "
                    "printed, or a file holding it, or a private key file. Every party must use "
                    "the same roster; its session id identifies it.")

    # Listed here only: main() hands everything after `bench` to the harness's own parser.
    commands.add_parser("bench", add_help=False, help="measure mpc-net against MPyC's own TCP "
                        "transport (in a checkout of mpc-net; see 'mpc-net bench --help')")

    commands.add_parser(
        "web", help="serve the browser app and a room server on one port",
        options=_web_options,
        description="Serve the browser app and a room server on one port: people take part in "
                    "a computation by opening a link. The first start builds the app's bundle "
                    "for the installed mpc-net into a per-user cache (needs npm and the package "
                    "registries once; --bundle DIR serves a bundle built elsewhere).")
    commands.add_parser(
        "signal", help="run a room server (signaling only, never MPC data)",
        options=_signal_options,
        description="Run a room server: parties meet in rooms and exchange session descriptions "
                    "through it. It never sees MPC data. Stop it with Ctrl-C or SIGTERM.")
    return parser


def _keygen_options(keygen: argparse.ArgumentParser) -> None:
    keygen.add_argument("--out", default="mpc-net.key", metavar="FILE",
                        help="where to write the private key (default %(default)s)")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")


def _roster_options(roster: argparse.ArgumentParser) -> None:
    roster.add_argument("keys", nargs="*", metavar="[NAME=]KEY",
                        help="public key, or file with one, per party in party order")
    roster.add_argument("--out", metavar="FILE", help="where to write the roster")
    roster.add_argument("--force", action="store_true", help="replace an existing file")
    roster.add_argument("--show", metavar="FILE",
                        help="print the parties and the session id of a roster file")


def _web_options(web: argparse.ArgumentParser) -> None:
    from . import web_arguments  # not web.py: the room server loads only for `mpc-net web`

    web_arguments.add_arguments(web)


def _signal_options(signal: argparse.ArgumentParser) -> None:
    from .signaling.arguments import add_signal_arguments

    add_signal_arguments(signal)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return parser._subparsers._group_actions[0].choices[name]


def _web_module():
    from . import web

    return web


def _bench(arguments: list[str]) -> int:
    """`mpc-net bench`: the harness in benchmarks/ of the checkout this package is in."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    harness = root / "benchmarks" / "harness"
    if not (harness / "__init__.py").is_file():
        print("mpc-net bench: error: it needs a checkout of mpc-net's sources (it runs demos/ "
              f"and benchmarks/ beside the package, and there is no {harness}): `git clone` the "
              "repository, `pip install -e .` in it and run `mpc-net bench` there",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(harness.parent))
    return importlib.import_module("harness").main(arguments, "mpc-net bench", Parser)


def _keygen(options: argparse.Namespace) -> int:
    from .native.identity import FileIdentity, KeyFileError

    identity = FileIdentity.generate()
    try:
        identity.save(options.out, force=options.force)
    except KeyFileError as exc:
        print(f"mpc-net keygen: error: {exc}", file=sys.stderr)
        return 2
    print(identity.public_text)
    print(f"mpc-net: private key written to {options.out} (keep it secret); the line above is "
          "the public key to share", file=sys.stderr)
    return 0


def _roster(options: argparse.Namespace) -> int:
    from .auth import Roster, RosterError, encode_public_key, split_roster_entry
    from .native.identity import KeyFileError, load_roster, public_key_of, write_roster

    def fail(message: str) -> int:
        print(f"mpc-net roster: error: {message} (see 'mpc-net roster --help')", file=sys.stderr)
        return 2

    try:
        if options.show:
            if options.keys or options.out:
                return fail("--show takes no keys and no --out")
            roster = load_roster(options.show)
        else:
            if not options.keys or not options.out:
                return fail("give the parties' public keys in party order and --out FILE")
            names, keys = [], []
            for item in options.keys:
                name, source = split_roster_entry(item)
                names.append(name)
                keys.append(public_key_of(source))
            roster = Roster.of(keys, names)
            write_roster(roster, options.out, force=options.force)
    except (KeyFileError, RosterError) as exc:
        return fail(str(exc))
    for i in range(len(roster)):
        print(f"party {i}: {encode_public_key(roster.keys[i])} {roster.names[i]}".rstrip())
    print(f"session id: {roster.session_id.hex()}")
    return 0


def _signal(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    from .ice import IceConfigError, TurnRest, parse_urls
    from .signaling.arguments import limits_from, start_logging, tls_from
    from .signaling.server import RoomServer, serve_until_signal

    signal = parser._subparsers._group_actions[0].choices["signal"]
    secret = options.turn_secret or os.environ.get("MPC_NET_TURN_SECRET")
    if bool(options.turn_url) != bool(secret):
        signal.error("--turn-url and --turn-secret go together")
    try:
        ice_servers = parse_urls(options.ice or [])
        turn = TurnRest(options.turn_url, secret, options.turn_ttl) if secret else None
        limits = limits_from(options)
        tls = tls_from(options)
    except (IceConfigError, ValueError) as exc:
        signal.error(str(exc))
    if turn is not None and not limits.join_tokens and not options.turn_open_relay:
        signal.error("--turn-secret without --join-token would hand TURN credentials to anyone "
                     "(an open relay); require a join token, or accept that with "
                     "--turn-open-relay")

    import asyncio

    start_logging(options)
    try:
        asyncio.run(serve_until_signal(RoomServer(options.host, options.port,
                                                  ice_servers=ice_servers, turn=turn,
                                                  limits=limits,
                                                  open_relay=options.turn_open_relay,
                                                  tls=tls, redis=options.redis)))
    except OSError as exc:
        print(f"mpc-net signal: error: cannot listen on {options.host}:{options.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    # Imports make many objects but no garbage: the collector stays off while a party imports
    # (it is turned on, after gc.freeze(), once the imports are done: native/party.py, and
    # run_command.py for local mode); the other commands turn it on once parsed.
    gc.disable()
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if argv[:1] == ["bench"]:  # the harness (in a checkout, not here) reads its arguments
        options = argparse.Namespace(command="bench", arguments=argv[1:])
    else:
        options, unknown = parser.parse_known_args(argv)
        if unknown:  # named by the command they were given to, whose help lists its options
            _subparser(parser, options.command).error(
                f"unrecognized arguments: {' '.join(unknown)}")
    if options.command != "run":
        gc.enable()
    from . import run_command

    try:
        commands = {"run": lambda: run_command.run(_subparser(parser, "run"), options),
                    "signal": lambda: _signal(parser, options),
                    "keygen": lambda: _keygen(options), "roster": lambda: _roster(options),
                    "bench": lambda: _bench(options.arguments),
                    "web": lambda: _web_module().run(options)}
        code = commands[options.command]()
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
