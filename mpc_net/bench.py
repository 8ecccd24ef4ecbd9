"""`mpc-net bench`: MPyC's own TCP transport and mpc-net side by side, on this machine.

Everything runs as separate processes on loopback, interleaved per repetition (TCP, mpc-net,
TCP, mpc-net, ...): on a shared, noisy machine the speed drifts by 2-3x over minutes, so only
runs made next to each other are compared. Each ratio is mpc-net / TCP per repetition, and the
tables give the median of those ratios with their range.

Two parts:
- programs: our demos and the workloads in benchmarks/ run as `python PROGRAM -M m -B b` (MPyC
  over TCP, on a free range of ports) and `mpc-net run PROGRAM -M m` (local mode: real WebRTC
  between m processes); MPyC's own elapsed time (party 0's "Stop MPyC" line) and the wall
  time of the whole run;
- transport: ping-pong, throughput, small-message rate and memory (benchmarks/transport.py),
  and the time until all parties are connected (benchmarks/connect.py).

Progress goes to stderr, the tables (Markdown) to stdout; `--json FILE` keeps every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

# demos/ and benchmarks/ live beside the package in a checkout of mpc-net.
ROOT = Path(__file__).resolve().parent.parent

TCP, MPC_NET = "tcp", "mpc-net"

# Speed targets, quoted next to the figures.
TARGET_MEDIAN_DEMO_RATIO = 1.1
TARGET_MAX_DEMO_RATIO = 1.5
TARGET_PINGPONG_VS_UDP = 2.0
TARGET_THROUGHPUT_MB_S = 50.0
TARGET_CONNECT_M8_S = 0.3
TARGET_MEMORY_PER_CONNECTION_MB = 5.0


@dataclasses.dataclass(frozen=True)
class Program:
    name: str
    path: str  # relative to ROOT
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    kind: str  # "demo" (ours, in demos/) or "workload" (benchmarks/)


PROGRAMS = (
    Program("auction", "demos/auction.py", (), (), "demo"),
    Program("stats", "demos/stats.py", (), (), "demo"),
    Program("sort", "demos/sort.py", (), (), "demo"),
    Program("secretsanta", "demos/secretsanta.py", (), (), "demo"),
    Program("comparisons", "demos/comparisons.py", ("300",), ("20",), "demo"),
    Program("rounds", "benchmarks/rounds.py", (), ("--rounds", "20", "--comparisons", "4"),
            "workload"),
    Program("bulk", "benchmarks/bulk.py", (), ("2000",), "workload"),
    Program("mix", "benchmarks/mix.py", (), ("100", "--top", "4"), "workload"),
)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Message counts of the transport tests (full run, or --quick)."""

    pingpong: int
    # Per link, enough for about half a second or more of transfer.
    stream_bytes: dict[str, int]
    small: dict[str, int]
    memory_pairs: int


FULL = Sizes(pingpong=2000,
             # aiortc alone (rtc-raw) manages about 2-3 MB/s and 2000 messages/s here.
             stream_bytes={TCP: 256 << 20, "rtc": 16 << 20, "rtc-raw": 2 << 20},
             small={TCP: 100_000, "rtc": 100_000, "rtc-raw": 3000},
             memory_pairs=10)
QUICK = Sizes(pingpong=100, stream_bytes={TCP: 4 << 20, "rtc": 1 << 20, "rtc-raw": 1 << 20},
              small={TCP: 5000, "rtc": 5000, "rtc-raw": 500}, memory_pairs=2)


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


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
    parser.add_argument("--reps", type=_positive_int, default=3, metavar="N",
                        help="repetitions of every measurement (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks that everything runs; the figures mean little")
    parser.add_argument("--timeout", type=_positive_int, default=120, metavar="SECONDS",
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


# -- running processes ------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class Finished:
    command: list[str]
    returncode: int | None  # None: stopped at the timeout
    stdout: str
    stderr: str
    launched: float  # time.time() just before the launch, to compare with log timestamps
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def failure(self) -> str:
        status = "timed out" if self.returncode is None else f"exit code {self.returncode}"
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        return f"{status}: {' | '.join(tail)}"


def run_process(command: list[str], cwd: Path, timeout: float) -> Finished:
    """Run to completion; the wall time is launch to exit of the process we started."""
    launched = time.time()
    start = time.perf_counter()
    # A session of its own: the parties it starts (MPyC spawns parties 1..m-1 itself) share its
    # process group, so a failed run can be cleaned up completely.
    proc = subprocess.Popen(command, cwd=cwd, env=checkout_environment(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        returncode = None
    except BaseException:  # Ctrl-C, or SIGTERM (see run): leave no parties behind
        _kill_group(proc.pid)
        raise
    wall_s = time.perf_counter() - start
    if returncode != 0:
        _kill_group(proc.pid)  # MPyC's parties 1..m-1 outlive a failed party 0
    return Finished(command, returncode, stdout, stderr, launched, wall_s)


def checkout_environment() -> dict[str, str]:
    """The environment for every process of the bench: `mpc_net` is this checkout's, whatever
    the working directory and whichever copy of mpc-net pip installed last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def free_base_port(count: int) -> int:
    """A base port b with b..b+count-1 free now, for MPyC's `-B b`: on its default ports
    (11365+i) a TCP run could meet the parties of another MPyC run on this machine."""
    for _ in range(200):
        # Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
        base = random.randrange(20000, 32000 - count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("found no free range of TCP ports for MPyC")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("", port))  # MPyC listens on every interface
        except OSError:
            return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters for this network namespace: datagrams sent, and datagrams
    dropped because a receive buffer was full. WebRTC is the only UDP traffic of a run."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
    except OSError:
        return {"datagrams": 0, "drops": 0}
    values = dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))
    return {"datagrams": values["OutDatagrams"], "drops": values["RcvbufErrors"]}


# -- MPyC's and mpc-net's log lines -----------------------------------------------------------

_STOP = re.compile(r"Stop MPyC -- elapsed time: (\d+):(\d+):([\d.]+)\|bytes sent: (\d+)")
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")
_MESH = re.compile(r"party \d+ connected to all \d+ peers in ([\d.]+) s")
# mpc-net's end-of-run summary, one line per peer of every party.
_TRAFFIC = re.compile(r"(\d+) MPyC messages, \d+ bytes, in (\d+) data channel messages")


def parse_stop(stdout: str) -> tuple[float, int] | None:
    """MPyC's elapsed time and bytes sent, from party 0's `Stop MPyC` line."""
    match = _STOP.search(stdout)
    if match is None:
        return None
    hours, minutes, seconds, sent = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds), int(sent)


def traffic(texts: Iterable[str]) -> tuple[int, int] | None:
    """MPyC messages and data channel messages sent, summed over every party and peer."""
    found = [m.groups() for text in texts for m in _TRAFFIC.finditer(text)]
    if not found:
        return None
    return sum(int(a) for a, _ in found), sum(int(b) for _, b in found)


def program_output(stdout: str) -> list[str]:
    """What the program printed itself: stdout without MPyC's timestamped log lines."""
    return [line for line in stdout.splitlines() if not _LOG_LINE.match(line)]


def log_times(text: str) -> tuple[float | None, float | None]:
    """Wall-clock times of a party's "Start MPyC runtime" and "All m parties connected"."""
    start = connected = None
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if match.group(2).startswith("Start MPyC runtime"):
            start = stamp
        elif re.match(r"All \d+ parties connected", match.group(2)):
            connected = stamp
    return start, connected


# -- statistics and tables --------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratios(numerators: list[float | None], denominators: list[float | None]) -> list[float]:
    """Per-repetition ratios (runs of one repetition ran next to each other)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)
            if a is not None and b]


def summarize_ratios(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": values}


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_ratio(summary: dict | None) -> str:
    if summary is None:
        return "-"
    if len(summary["values"]) == 1:
        return f"{summary['median']:.2f}"
    return f"{summary['median']:.2f} [{summary['min']:.2f}-{summary['max']:.2f}]"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


# -- the machine ------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    import importlib.metadata  # here: `mpc-net run` imports this module too, and needs it not

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run([git, "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def machine() -> dict:
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in
                     ("mpc-net", "mpyc", "aiortc", "aioice", "numpy", "gmpy2", "uvloop")},
        "checkout": str(ROOT),  # the mpc-net that is measured
        "commit": _git_commit(),
    }


def describe_machine(info: dict) -> str:
    memory = f"{info['memory_gib']:.1f} GiB" if info["memory_gib"] else "? GiB"
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    missing = ", ".join(k for k, v in info["packages"].items() if not v)
    return (f"Machine: {info['cpu']}, {info['cores']} cores, {memory} memory, {info['system']}\n"
            f"Python: {info['python']}; {packages}" + (f"; not installed: {missing}"
                                                         if missing else "")
            + f"\nmpc-net measured: {info['checkout']}"
            + (f" (commit {info['commit']})" if info["commit"] else ""))


# -- part 1: MPyC programs --------------------------------------------------------------------


class ProgramBench:
    """Every program at every party count, its variants run back to back per repetition."""

    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.programs = [p for p in PROGRAMS
                         if options.programs is None or p.name in options.programs]
        self.variants = [TCP, MPC_NET]
        # (program name, m) -> variant -> one record per repetition
        self.runs: dict[tuple[str, int], dict[str, list[dict]]] = {}

    def args_of(self, program: Program) -> list[str]:
        return list(program.quick_args if self.options.quick else program.args)

    def command(self, variant: str, program: Program, parties: int) -> list[str]:
        script = str(ROOT / program.path)
        args = [*self.args_of(program), "-M", str(parties)]
        if variant == TCP:
            ports = ["-B", str(free_base_port(parties))]
            return [sys.executable, script, *args, *ports]
        # `python -m mpc_net` is the `mpc-net` command, wherever the console script went.
        logs = self.workdir / "logs"
        return [sys.executable, "-m", "mpc_net", "run", "--log-dir", str(logs), script, *args]

    def run(self) -> bool:
        cells = [(p, m) for p in self.programs for m in self.options.parties]
        total = len(cells) * len(self.variants) * self.options.reps
        done, all_ok = 0, True
        for rep in range(self.options.reps):
            for program, parties in cells:
                for variant in self.variants:
                    done += 1
                    record = self.run_one(variant, program, parties)
                    self.runs.setdefault((program.name, parties), {}).setdefault(
                        variant, []).append(record)
                    all_ok &= record["ok"]
                    progress(f"[{done}/{total}] {program.name} m={parties} rep {rep + 1} "
                             f"{variant}: " + (f"elapsed {fmt(record['elapsed_s'])} s, wall "
                                               f"{fmt(record['wall_s'], 2)} s" if record["ok"]
                                               else f"FAILED ({record['error']})"))
        return all_ok

    def run_one(self, variant: str, program: Program, parties: int) -> dict:
        logs = self.workdir / "logs"
        for old in logs.glob("party*.log"):
            old.unlink()
        udp = udp_counters()
        finished = run_process(self.command(variant, program, parties), ROOT,
                               self.options.timeout)
        udp_after = udp_counters()
        stop = parse_stop(finished.stdout) if finished.ok else None
        record = {"ok": finished.ok and stop is not None, "wall_s": finished.wall_s,
                  "elapsed_s": stop[0] if stop else None,
                  "bytes_sent": stop[1] if stop else None,
                  "udp_datagrams": udp_after["datagrams"] - udp["datagrams"],
                  "udp_drops": udp_after["drops"] - udp["drops"],
                  "output": program_output(finished.stdout)}
        if variant == MPC_NET:
            texts = [finished.stderr, *(f.read_text() for f in logs.glob("party*.log"))]
            sent = traffic(texts)
            record["mpyc_messages"], record["channel_messages"] = sent or (None, None)
        if not finished.ok:
            record["error"] = finished.failure()
        elif stop is None:
            record["error"] = "no 'Stop MPyC' line on party 0's stdout"
        return record

    def results(self) -> list[dict]:
        out = []
        for program in self.programs:
            for parties in self.options.parties:
                runs = self.runs.get((program.name, parties))
                if runs:
                    out.append(self.summarize(program, parties, runs))
        return out

    def summarize(self, program: Program, parties: int, runs: dict[str, list[dict]]) -> dict:
        def column(variant: str, key: str) -> list[float | None]:
            return [r.get(key) if r["ok"] else None for r in runs.get(variant, [])]

        reference = next((r["output"] for r in runs[TCP] if r["ok"]), None)
        summary = {
            "program": program.name, "path": program.path, "kind": program.kind,
            "args": self.args_of(program),
            "parties": parties,
            "median": {v: {key: median(column(v, key)) for key in _PROGRAM_FIGURES
                           if any(key in r for r in runs[v])} for v in runs},
            "ratio": {
                "elapsed": summarize_ratios(ratios(column(MPC_NET, "elapsed_s"),
                                                   column(TCP, "elapsed_s"))),
                "wall": summarize_ratios(ratios(column(MPC_NET, "wall_s"), column(TCP, "wall_s"))),
            },
            "same_output": all(r["output"] == reference for v in runs for r in runs[v]
                               if r["ok"]) if reference is not None else None,
            "failures": sum(not r["ok"] for v in runs for r in runs[v]),
            "runs": {v: [{k: r[k] for k in r if k != "output"} for r in rs]
                     for v, rs in runs.items()},
        }
        return summary


_PROGRAM_FIGURES = ("elapsed_s", "wall_s", "bytes_sent", "udp_datagrams", "udp_drops",
                    "mpyc_messages", "channel_messages")


# MPyC prints its elapsed time in milliseconds; a run of a few milliseconds is a handful of
# round trips, and its ratio is mostly noise and rounding.
SHORT_RUN_S = 0.05


def _is_short(result: dict) -> bool:
    tcp = result["median"].get(TCP, {}).get("elapsed_s")
    return tcp is not None and tcp < SHORT_RUN_S


def demo_summary(results: list[dict]) -> dict:
    """The demo figures of the speed targets: median and largest elapsed-time ratio over
    demos and m, over all of them and over those not too short to compare."""
    demo = [r for r in results if r["kind"] == "demo" and r["ratio"]["elapsed"]]
    if not demo:
        return {}
    summary = _ratio_spread(demo)
    longer = [r for r in demo if not _is_short(r)]
    if longer:
        summary["long"] = _ratio_spread(longer)
    return summary


def _ratio_spread(results: list[dict]) -> dict:
    worst = max(results, key=lambda r: r["ratio"]["elapsed"]["median"])
    return {"median_ratio": statistics.median(r["ratio"]["elapsed"]["median"] for r in results),
            "max_ratio": worst["ratio"]["elapsed"]["median"],
            "max_ratio_at": f"{worst['program']} m={worst['parties']}", "cells": len(results)}


def programs_table(results: list[dict]) -> str:
    headers = ["program", "m", "TCP elapsed s", "mpc-net elapsed s", "elapsed ratio"]
    headers += ["TCP wall s", "mpc-net wall s", "wall ratio", "bytes sent (TCP / mpc-net)",
                "same output"]
    rows = []
    for r in results:
        tcp, ours = r["median"].get(TCP, {}), r["median"].get(MPC_NET, {})
        row = [r["program"], str(r["parties"]), fmt(tcp.get("elapsed_s")),
               fmt(ours.get("elapsed_s")),
               fmt_ratio(r["ratio"]["elapsed"]) + (" (short)" if _is_short(r) else "")]
        sent = [tcp.get("bytes_sent"), ours.get("bytes_sent")]
        row += [fmt(tcp.get("wall_s"), 2), fmt(ours.get("wall_s"), 2),
                fmt_ratio(r["ratio"]["wall"]),
                " / ".join("-" if s is None else f"{s:,.0f}" for s in sent),
                {True: "yes", False: "NO", None: "-"}[r["same_output"]]
                + (f" ({r['failures']} failed)" if r["failures"] else "")]
        rows.append(row)
    return markdown_table(headers, rows)


def _per(count: float | None, unit: float | None) -> float | None:
    return count / unit if count is not None and unit else None


def traffic_table(results: list[dict]) -> str:
    """What one mpc-net run put on the wire: batching (data channel messages per MPyC
    message) and what SCTP adds to it (UDP datagrams, with acknowledgements)."""
    rows = []
    for r in results:
        ours = r["median"].get(MPC_NET, {})
        mpyc, channel = ours.get("mpyc_messages"), ours.get("channel_messages")
        datagrams = ours.get("udp_datagrams")
        rows.append([r["program"], str(r["parties"]), fmt(mpyc, 0), fmt(channel, 0),
                     fmt(datagrams, 0), fmt(_per(channel, mpyc), 2),
                     fmt(_per(datagrams, mpyc), 2), fmt(ours.get("udp_drops"), 0)])
    return markdown_table(["program", "m", "MPyC messages", "data channel messages",
                           "UDP datagrams", "DC messages per MPyC message",
                           "datagrams per MPyC message", "UDP drops"], rows)


# -- part 2: transport figures ----------------------------------------------------------------


def _helper(name: str) -> str:
    return str(ROOT / "benchmarks" / name)


class TransportBench:
    """Micro-benchmarks (benchmarks/transport.py) and connection times (benchmarks/connect.py),
    each link or transport run next to the others per repetition."""

    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.sizes = QUICK if options.quick else FULL
        self.connect_parties = options.connect_parties or ([3] if options.quick
                                                           else [3, 5, 8, 16])
        self.runs: dict[str, dict[str, list[dict]]] = {}  # test -> link -> per repetition
        self.failures: list[str] = []

    def tests(self) -> list[tuple[str, list[tuple[str, Callable[[], dict | None]]]]]:
        """(test name, [(link, measure)]) in the order they run in each repetition."""
        s = self.sizes

        def micro(test: str, link: str, count: int, size: int, burst: int = 1000):
            return lambda: self.micro(test, link, count, size, burst)

        links = (TCP, "rtc", "rtc-raw")
        # 256 KiB written per loop tick, in 1 KiB or 64 KiB messages.
        stream = [(f"stream-{size // 1024}k", [
            (link, micro("stream", link, s.stream_bytes[link] // size, size,
                         max(1, (256 << 10) // size))) for link in links])
            for size in (1024, 65536)]
        tests = [("pingpong", [(link, micro("pingpong", link, s.pingpong, 100))
                               for link in (TCP, "udp", "rtc", "rtc-raw")]),
                 *stream,
                 ("small", [(link, micro("small", link, s.small[link], 32)) for link in links])]
        for parties in self.connect_parties:
            tests.append((f"connect-{parties}", [
                (variant, lambda v=variant, m=parties: self.connect(v, m))
                for variant in (TCP, MPC_NET)]))
        tests.append(("memory", [(link, micro("memory", link, s.memory_pairs, 0))
                                 for link in (TCP, "rtc")]))
        tests.append(("imports", [("mpc-net", lambda: self.micro_plain(["imports"]))]))
        return tests

    def run(self) -> bool:
        tests = self.tests()
        total = self.options.reps * sum(len(links) for _, links in tests)
        done = 0
        for rep in range(self.options.reps):
            for test, links in tests:
                for link, measure in links:
                    done += 1
                    figures = measure()
                    self.runs.setdefault(test, {}).setdefault(link, []).append(figures)
                    progress(f"[{done}/{total}] {test} {link} rep {rep + 1}: "
                             + (_headline(test, figures) if figures else "FAILED"))
        return not self.failures

    def micro(self, test: str, link: str, count: int, size: int, burst: int) -> dict | None:
        args = [test, "--link", link, "--count", str(count)]
        if test != "memory":
            args += ["--size", str(size), "--burst", str(burst)]
        return self.micro_plain(args)

    def micro_plain(self, args: list[str]) -> dict | None:
        finished = run_process([sys.executable, _helper("transport.py"), *args], ROOT,
                               self.options.timeout)
        if not finished.ok:
            self.failures.append(f"transport.py {' '.join(args)}: {finished.failure()}")
            return None
        return json.loads(finished.stdout.strip().splitlines()[-1])

    def connect(self, variant: str, parties: int) -> dict | None:
        """Launch connect.py with m parties; the figures come from every party's log lines."""
        logs = Path(tempfile.mkdtemp(prefix=f"connect-{variant}-{parties}-", dir=self.workdir))
        script = _helper("connect.py")
        if variant == TCP:
            # MPyC writes the output of parties 1..m-1 to party{m}_{i}.log in the working
            # directory with --output-file (otherwise to /dev/null).
            command = [sys.executable, script, "-M", str(parties), "-B",
                       str(free_base_port(parties)), "--output-file"]
            files = [logs / f"party{parties}_{i}.log" for i in range(1, parties)]
        else:
            command = [sys.executable, "-m", "mpc_net", "run", "--log-dir", str(logs), script,
                       "-M", str(parties)]
            files = [logs / f"party{i}.log" for i in range(1, parties)]
        finished = run_process(command, logs, self.options.timeout)
        if not finished.ok:
            self.failures.append(f"connect {variant} m={parties}: {finished.failure()}")
            return None
        texts = [finished.stdout + finished.stderr] + [f.read_text() for f in files]
        figures = connect_figures(finished, texts)
        if figures is None:
            self.failures.append(f"connect {variant} m={parties}: a party did not log both "
                                 "'Start MPyC runtime' and 'All m parties connected'")
        return figures

    def results(self) -> dict:
        out: dict[str, dict] = {}
        for test, links in self.runs.items():
            out[test] = {link: {"runs": runs, "median": _medians(runs)}
                         for link, runs in links.items()}
        return out


def connect_figures(finished: Finished, texts: list[str]) -> dict | None:
    times = [log_times(text) for text in texts]
    if any(start is None or connected is None for start, connected in times):
        return None
    starts = [s for s, _ in times]
    connected = [c for _, c in times]
    mesh = [float(m.group(1)) for text in texts for m in _MESH.finditer(text)]
    return {
        # From the last party's "Start MPyC runtime" until every party is connected: the cost
        # of connecting once everyone is there.
        "after_last_start_s": max(connected) - max(starts),
        # Each party's Start -> connected, the largest (includes waiting for later parties).
        "max_party_s": max(c - s for s, c in times),
        # From launching the command until every party is connected.
        "launch_s": max(connected) - finished.launched,
        "mesh_s": max(mesh) if mesh else None,  # mpc-net's own figure, the largest
        "wall_s": finished.wall_s,
    }


def _medians(runs: list[dict | None]) -> dict:
    present = [r for r in runs if r]
    if not present:
        return {}
    keys = [k for k, v in present[0].items() if isinstance(v, int | float)
            and not isinstance(v, bool)]
    return {k: median(r.get(k) for r in present) for k in keys}


def _headline(test: str, figures: dict) -> str:
    if test == "pingpong":
        return f"{figures['rtt_us']:.0f} us round trip"
    if test.startswith("stream"):
        return f"{figures['mb_per_s']:.1f} MB/s"
    if test == "small":
        return f"{figures['messages_per_s'] / 1e3:.0f} k messages/s"
    if test.startswith("connect"):
        return f"{figures['after_last_start_s']:.3f} s after the last start"
    if test == "memory":
        return f"{figures['bytes_per_peer_connection'] / 1e6:.2f} MB per peer connection"
    return f"mpyc {figures['mpyc_s']:.2f} s, + mpc-net {figures['mpc_net_s']:.2f} s"


def _per_rep(runs: dict[str, dict], a: str, b: str, key: str, invert: bool = False) -> dict | None:
    """Per-repetition ratio a/b of one figure (b/a with invert, for rates: slowdown)."""
    x = [r and r.get(key) for r in runs[a]["runs"]]
    y = [r and r.get(key) for r in runs[b]["runs"]]
    return summarize_ratios(ratios(y, x) if invert else ratios(x, y))


def transport_tables(results: dict) -> list[str]:
    tables = []
    if "pingpong" in results:
        pp = results["pingpong"]
        rows = []
        for link in pp:
            med = pp[link]["median"]
            rows.append([link, fmt(med.get("rtt_us"), 0), fmt_ratio(_per_rep(pp, link, TCP,
                         "rtt_us")), fmt_ratio(_per_rep(pp, link, "udp", "rtt_us")),
                         fmt(med.get("udp_datagrams_per_message"), 2),
                         fmt(med.get("cpu_us_per_message"), 0)])
        tables.append("Ping-pong, 100-byte messages, two processes (median round trip)\n\n"
                      + markdown_table(["link", "round trip us", "x TCP", "x UDP",
                                        "UDP datagrams per round trip",
                                        "CPU us per round trip (one end)"], rows))
    rows = []
    for test, label, key, unit in (("stream-1k", "throughput, 1 KiB writes", "mb_per_s", "MB/s"),
                                   ("stream-64k", "throughput, 64 KiB writes", "mb_per_s", "MB/s"),
                                   ("small", "32-byte messages, 1000 per loop tick",
                                    "messages_per_s", "messages/s")):
        if test not in results:
            continue
        r = results[test]

        def value(link: str, figure: str = key, r: dict = r) -> float | None:
            return r.get(link, {}).get("median", {}).get(figure)

        rows.append([label, unit, fmt(value(TCP), 1), fmt(value("rtc"), 1),
                     fmt_ratio(_per_rep(r, "rtc", TCP, key, invert=True)),
                     fmt(value("rtc-raw"), 1),
                     fmt(value("rtc", "udp_datagrams_per_message"), 3),
                     fmt(value("rtc-raw", "udp_datagrams_per_message"), 3)])
    if rows:
        tables.append("One-way transfer, two processes (rtc: DataChannelTransport on aiortc; "
                      "rtc-raw: one aiortc send per message)\n\n"
                      + markdown_table(["test", "unit", "TCP", "mpc-net (rtc)",
                                        "TCP / mpc-net", "rtc-raw",
                                        "UDP datagrams per message (rtc)",
                                        "UDP datagrams per message (rtc-raw)"], rows))
    connect = sorted((int(t.split("-")[1]), r) for t, r in results.items()
                     if t.startswith("connect-"))
    if connect:
        rows = []
        for parties, r in connect:
            tcp, ours = r[TCP]["median"], r[MPC_NET]["median"]
            rows.append([str(parties), fmt(tcp.get("after_last_start_s")),
                         fmt(ours.get("after_last_start_s")), fmt(tcp.get("max_party_s")),
                         fmt(ours.get("max_party_s")), fmt(ours.get("mesh_s")),
                         fmt(tcp.get("launch_s"), 2), fmt(ours.get("launch_s"), 2)])
        tables.append("Time until all parties are connected (s, from MPyC's log lines of every "
                      "party)\n\n" + markdown_table(
                          ["m", "TCP after last start", "mpc-net after last start",
                           "TCP max Start->connected", "mpc-net max Start->connected",
                           "mpc-net mesh (max)", "TCP launch->all", "mpc-net launch->all"],
                          rows))
    if "memory" in results:
        r = results["memory"]
        rows = [[link, fmt(r[link]["median"].get("bytes_per_peer_connection", 0) / 1e6, 3),
                 fmt(r[link]["median"].get("bytes_per_pair", 0) / 1e6, 3),
                 fmt(r[link]["median"].get("setup_ms_per_pair"), 1)] for link in r
                if r[link]["median"]]
        tables.append("Memory (RSS growth of one process holding both ends of k used "
                      "connections)\n\n" + markdown_table(
                          ["link", "MB per peer connection", "MB per pair",
                           "setup ms per pair (in-process)"], rows))
    if "imports" in results:
        med = results["imports"]["mpc-net"]["median"]
        tables.append("Process start: `import mpyc.runtime` takes "
                      f"{fmt(med.get('mpyc_s'))} s; mpc-net's party code (aiortc, ...) adds "
                      f"{fmt(med.get('mpc_net_s'))} s per party process.")
    return tables


# -- targets ----------------------------------------------------------------------------------


def targets(demos: dict, transport: dict) -> list[dict]:
    """Each speed target with the measured figure, where this run measured it."""
    out = []

    def add(name: str, goal: str, value: float | None, met: bool | None, unit: str) -> None:
        out.append({"target": name, "goal": goal, "measured": value, "unit": unit, "met": met})

    for key, which in ((None, "all demos"), ("long", "demos not (short)")):
        d = demos.get(key) if key else demos
        if d:
            add(f"median demo elapsed ratio, {which}", f"<= {TARGET_MEDIAN_DEMO_RATIO}",
                d["median_ratio"], d["median_ratio"] <= TARGET_MEDIAN_DEMO_RATIO, "x")
            add(f"largest demo elapsed ratio, {which} ({d['max_ratio_at']})",
                f"<= {TARGET_MAX_DEMO_RATIO}", d["max_ratio"],
                d["max_ratio"] <= TARGET_MAX_DEMO_RATIO, "x")
    pp = transport.get("pingpong", {})
    if "rtc" in pp and "udp" in pp:
        vs_udp = _per_rep(pp, "rtc", "udp", "rtt_us")
        if vs_udp:
            add("ping-pong vs raw UDP", f"<= {TARGET_PINGPONG_VS_UDP}", vs_udp["median"],
                vs_udp["median"] <= TARGET_PINGPONG_VS_UDP, "x")
    for test in ("stream-1k", "stream-64k"):
        value = transport.get(test, {}).get("rtc", {}).get("median", {}).get("mb_per_s")
        if value is not None:
            add(f"throughput per channel ({test})", f">= {TARGET_THROUGHPUT_MB_S}", value,
                value >= TARGET_THROUGHPUT_MB_S, "MB/s")
    value = transport.get("connect-8", {}).get(MPC_NET, {}).get("median", {}).get(
        "after_last_start_s")
    if value is not None:
        add("m = 8 connected (after the last party started)", f"<= {TARGET_CONNECT_M8_S}",
            value, value <= TARGET_CONNECT_M8_S, "s")
    value = transport.get("memory", {}).get("rtc", {}).get("median", {}).get(
        "bytes_per_peer_connection")
    if value is not None:
        add("memory per peer connection", f"<= {TARGET_MEMORY_PER_CONNECTION_MB}", value / 1e6,
            value / 1e6 <= TARGET_MEMORY_PER_CONNECTION_MB, "MB")
    return out


def targets_table(rows: list[dict]) -> str:
    return markdown_table(["target", "goal", "measured", "met"], [
        [r["target"], f"{r['goal']} {r['unit']}", f"{r['measured']:.3g} {r['unit']}",
         "yes" if r["met"] else "no"] for r in rows])


# -- entry point ------------------------------------------------------------------------------


def _load(values: Iterable[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _check_checkout() -> str | None:
    for needed in ("demos", "benchmarks/transport.py", "benchmarks/connect.py"):
        if not (ROOT / needed).exists():
            return ("it needs a checkout of mpc-net's sources (it runs demos/ and benchmarks/ "
                    f"beside the package, and there is no {ROOT / needed}): `git clone` the "
                    "repository, `pip install -e .` in it and run `mpc-net bench` there")
    return None


def run(options: argparse.Namespace) -> int:
    """Run the benchmarks; 0 if every run succeeded, 1 if any failed, 2 if it cannot start."""
    problem = _check_checkout()
    if problem:
        print(f"mpc-net bench: error: {problem}", file=sys.stderr)
        return 2
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
            bench = ProgramBench(options, Path(work))
            ok &= bench.run()
            results = bench.results()
            report["programs"] = results
            report["demos"] = demo_summary(results)
            print("\nMPyC programs: MPyC elapsed time of party 0 and wall time of the whole run "
                  "(medians)\n")
            print(programs_table(results))
            print("\nmpc-net traffic per run, all parties together (medians)\n")
            print(traffic_table(results))
            print(f"\n- (short): TCP elapsed under {SHORT_RUN_S * 1000:.0f} ms, a few round "
                  "trips measured in whole milliseconds: mostly noise.")
            for key, label in ((None, "all demos"), ("long", "demos not (short)")):
                d = report["demos"].get(key) if key else report["demos"]
                if d:
                    print(f"- Elapsed ratio over {label} ({d['cells']} demo x m): median "
                          f"{d['median_ratio']:.2f}, largest {d['max_ratio']:.2f} "
                          f"({d['max_ratio_at']})")
        if options.only != "programs":
            bench_t = TransportBench(options, Path(work))
            ok &= bench_t.run()
            report["transport"] = bench_t.results()
            report["transport_failures"] = bench_t.failures
            for table in transport_tables(report["transport"]):
                print("\n" + table)
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
