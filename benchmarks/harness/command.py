"""The command line of the bench and the whole run: `mpc-net bench` or
`python benchmarks/bench.py`."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from mpc_net.argtypes import positive_int

from .machine import describe_machine, machine
from .processes import progress
from .programs import PROGRAMS, run_programs
from .targets import targets, targets_table
from .transport import run_transport

# -- command line -----------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}"
                                         ) from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"party counts must be at least 2: {text!r}")
    return values


def _program_list(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    known = [p.name for p in PROGRAMS]
    unknown = [x for x in names if x not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown programs {unknown}; choose from "
                                         f"{','.join(known)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = parser.description or (
        "Benchmark mpc-net against MPyC's own TCP transport on this machine: MPyC programs "
        "(our demos and workloads) and transport figures, interleaved per repetition. Tables "
        "go to stdout, progress to stderr. Needs a checkout of mpc-net (demos/, benchmarks/).")
    parser.add_argument("--only", choices=["programs", "transport"],
                        help="run only the MPyC programs or only the transport figures")
    parser.add_argument("--parties", type=_int_list, default=[3, 5], metavar="M,...",
                        help="party counts for the programs (default 3,5)")
    parser.add_argument("--programs", type=_program_list, metavar="NAME,...",
                        help="run only these programs (default all: "
                             f"{','.join(p.name for p in PROGRAMS)})")
    parser.add_argument("--connect-parties", type=_int_list, metavar="M,...",
                        help="party counts for the connection time (default 3,5,8,16; "
                             "with --quick 3)")
    parser.add_argument("--reps", type=positive_int, default=3, metavar="N",
                        help="repetitions of every measurement (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that everything runs; the figures mean little")
    parser.add_argument("--timeout", type=positive_int, default=120, metavar="SECONDS",
                        help="stop any single run after this long (default %(default)s)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")


def command_line(options: argparse.Namespace) -> str:
    """The `mpc-net bench` command that repeats this run."""
    words = ["mpc-net", "bench"]
    if options.only:
        words += ["--only", options.only]
    if options.only != "transport":
        words += ["--parties", ",".join(map(str, options.parties))]
        if options.programs:
            words += ["--programs", ",".join(options.programs)]
    if options.only != "programs" and options.connect_parties:
        words += ["--connect-parties", ",".join(map(str, options.connect_parties))]
    words += ["--reps", str(options.reps)]
    words += ["--quick"] if options.quick else []
    words += ["--timeout", str(options.timeout)] if options.timeout != 120 else []
    words += ["--json", options.json] if options.json else []
    return shlex.join(words)


def _load(values: Iterable[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def run(options: argparse.Namespace) -> int:
    """Run the benchmarks; 0 if every run succeeded, 1 if any failed."""
    info = machine()
    command = command_line(options)
    print(describe_machine(info))
    print(f"Command: {command}")
    print(f"Repetitions: {options.reps}, interleaved; ratios are mpc-net / TCP per repetition, "
          "median [min-max]")
    report: dict = {"format": "mpc-net-bench/1", "machine": info, "command": command,
                    "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "quick": options.quick, "reps": options.reps}
    # SIGTERM ends the bench through SystemExit, so the run in progress is cleaned up too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report["load_before"] = os.getloadavg()
    ok = True
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mpc-net-bench-") as work:
        if options.only != "transport":
            ok &= run_programs(options, Path(work), report)
        if options.only != "programs":
            ok &= run_transport(options, Path(work), report)
    report["targets"] = targets(report.get("demos", {}), report.get("transport", {}))
    if report["targets"]:
        print("\nSpeed targets\n\n" + targets_table(report["targets"]))
    report["duration_s"] = time.perf_counter() - started
    report["load_after"] = os.getloadavg()
    print(f"\nLoad average (1, 5, 15 min) before: {_load(report['load_before'])}; after: "
          f"{_load(report['load_after'])}; {report['duration_s']:.0f} s in all")
    progress(f"done in {report['duration_s']:.0f} s" + ("" if ok else "; some runs FAILED "
                                                         "(see above)"))
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=1) + "\n")
        progress(f"figures written to {options.json}")
    return 0 if ok else 1


def main(argv: list[str], prog: str,
         parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> int:
    """The bench as a command named `prog`, with the arguments `argv`; the exit code."""
    parser = parser_class(prog=prog)
    add_arguments(parser)
    return run(parser.parse_args(argv))
