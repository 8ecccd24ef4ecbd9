"""The options of `mpc-net web`, apart from web.py, whose room server and pages a party's
command line never loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from .signaling.arguments import add_limit_arguments, add_listen_arguments

BUNDLE_VARIABLE = "MPC_NET_WEB_BUNDLE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_arguments(parser, 8000, "TCP port for the pages and the room server")
    parser.add_argument("--bundle", type=Path,
                        help="a browser bundle from `python wasm/build.py` (default: "
                             f"${BUNDLE_VARIABLE}, else one built for this installation on "
                             "first use and kept in ~/.cache/mpc-net; building needs npm and "
                             "the package registries once)")
    parser.add_argument("--program", action="append", default=[], metavar="FILE",
                        help="an MPyC program the pages offer, under its file name, which a "
                             "link names with program=NAME (repeatable)")
    add_limit_arguments(parser)
