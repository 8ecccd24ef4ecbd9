"""MPyC over TCP and `mpc-net run` side by side across an emulated wide-area network.

Each party runs in a network namespace of its own, the room server in a "public" one, all
joined by wan_emulator.py (delay, bandwidth cap, seeded loss). For every network condition and
every program, runs alternate: MPyC's own TCP transport (`-P` addresses), then
`mpc-net run --native-only` (WebRTC, the same network), so that only runs made next to each
other are compared. The figure is MPyC's own elapsed time of party 0 ("Stop MPyC" line), and
the ratio mpc-net / TCP per repetition; the table gives their medians.

Needs root (namespaces, TUN devices), or runs itself in a user namespace otherwise. Everything
happens inside a private mount and network namespace: nothing is left on the machine.

    sudo .venv/bin/python benchmarks/wan.py                      # the standard set
    sudo .venv/bin/python benchmarks/wan.py --condition rtt=80,loss=0.5 \\
        --program 'my_program.py --my-option 5' --reps 5 --plot wan.svg

Progress goes to stderr, the tables (Markdown) to stdout; `--json FILE` keeps every figure.
The tables name TCP's congestion control; `--tcp-congestion cubic` (or reno) compares with a
loss-based TCP where the machine's default is BBR.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness.figures import log_times, parse_stop  # beside this script
from harness.tcp_congestion import check as tcp_congestion_check
from wan_plot import draw, pyplot

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
EMULATOR = HERE / "wan_emulator.py"
TCP_CONGESTION = HERE / "harness" / "tcp_congestion.py"
SANDBOXED = "MPC_NET_WAN_SANDBOX"

SERVER_NS, SERVER = "pub", "10.77.0.1"
SIGNAL_PORT = 8765
ECHO_PORT = 9000
FIRST_TCP_PORT = 20000
TIMEOUT_S = 300.0

DEFAULT_PROGRAMS = ("demos/auction.py", "demos/sort.py", "demos/comparisons.py 300",
                    "benchmarks/rounds.py", "benchmarks/bulk.py", "benchmarks/mix.py")
DEFAULT_CONDITIONS = ("rtt=0", "rtt=10", "rtt=40", "rtt=40,bw=50", "rtt=40,loss=1")


@dataclasses.dataclass(frozen=True)
class Condition:
    rtt_ms: float = 0.0
    bandwidth_mbit: float | None = None
    loss_percent: float = 0.0

    @property
    def label(self) -> str:
        parts = [f"{self.rtt_ms:g} ms"]
        if self.bandwidth_mbit:
            parts.append(f"{self.bandwidth_mbit:g} Mbit/s")
        if self.loss_percent:
            parts.append(f"{self.loss_percent:g} % loss")
        return ", ".join(parts)

    def emulator_options(self) -> list[str]:
        options = ["--rtt-ms", str(self.rtt_ms), "--loss", str(self.loss_percent / 100)]
        if self.bandwidth_mbit:
            options += ["--bandwidth-mbit", str(self.bandwidth_mbit)]
        return options


def condition(text: str) -> Condition:
    """`rtt=MS[,bw=MBIT][,loss=PERCENT]` (argparse type)."""
    fields = {"rtt": "rtt_ms", "bw": "bandwidth_mbit", "loss": "loss_percent"}
    values = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if key not in fields or number < 0 or (key == "loss" and number >= 100):
            raise argparse.ArgumentTypeError(
                f"not a condition: {text!r} (rtt=MS[,bw=MBIT][,loss=PERCENT], e.g. rtt=40,loss=1)")
        values[fields[key]] = number
    return Condition(**values)


def program(text: str) -> list[str]:
    """`PATH ARGS`: PATH relative to the current directory, or else to the checkout."""
    words = shlex.split(text)
    for base in (Path.cwd(), ROOT):
        if words and (base / words[0]).is_file():
            return [str((base / words[0]).resolve()), *words[1:]]
    raise argparse.ArgumentTypeError(f"no such program: {text!r}")


def shown(path: str) -> str:
    """A program's path as the tables show it: relative to the checkout when inside it."""
    return str(Path(path).relative_to(ROOT)) if Path(path).is_relative_to(ROOT) else path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="MPyC TCP and mpc-net side by side across an emulated wide-area network.")
    parser.add_argument("--condition", type=condition, action="append", metavar="SPEC",
                        help="rtt=MS[,bw=MBIT][,loss=PERCENT] (repeatable; default: "
                             + "; ".join(DEFAULT_CONDITIONS) + ")")
    parser.add_argument("--program", type=program, action="append", metavar="'PATH ARGS'",
                        help="an MPyC program and its arguments, as one string (repeatable; "
                             "default: our demos and workloads)")
    parser.add_argument("-M", dest="parties", type=int, default=3, choices=range(2, 9),
                        metavar="m", help="number of parties (default 3)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="loss pattern of repetition 1")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="draw the ratios here (needs matplotlib)")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another mpc-net checkout (a commit to compare against), run as a "
                             "third variant interleaved with the other two")
    parser.add_argument("--tcp-congestion", metavar="NAME",
                        help="TCP's congestion control for MPyC's TCP runs, e.g. cubic "
                             "(Linux's default) or bbr (default: the kernel's default; the "
                             "tables name it)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep every party's output (stdout and stderr) and a trace of "
                             "every packet in this directory")
    options = parser.parse_args()
    options.condition = options.condition or [condition(c) for c in DEFAULT_CONDITIONS]
    options.program = options.program or [program(p) for p in DEFAULT_PROGRAMS]
    if options.reps < 1:
        parser.error("--reps must be at least 1")
    if options.baseline and not (options.baseline / "mpc_net" / "__init__.py").is_file():
        parser.error(f"--baseline: no mpc-net checkout in {options.baseline}")
    if options.baseline:
        options.baseline = options.baseline.resolve()
    if options.plot:
        pyplot()  # before an hour of runs: say at once that matplotlib is missing
    return options


def progress(message: str) -> None:
    print(f"[wan] {message}", file=sys.stderr, flush=True)


def sandbox() -> None:
    """Run this script again inside a private mount and network namespace (and a user
    namespace when not root), with its own /run for `ip netns`: nothing outside ever sees
    the namespaces, and they go when the script ends."""
    userns = ["--user", "--map-root-user"] if os.geteuid() != 0 else []
    argv = ["unshare", *userns, "--mount", "--net", "sh", "-c",
            'mount -t tmpfs -o mode=0755 tmpfs /run && ip link set lo up && exec "$@"', "sh",
            sys.executable, *sys.argv]
    env = dict(os.environ, **{SANDBOXED: "1"})
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    try:
        sys.exit(subprocess.run(argv, env=env).returncode)
    except KeyboardInterrupt:
        sys.exit(130)


def party_ns(i: int) -> str:
    return f"p{i}"


def party_address(i: int) -> str:
    return f"10.77.0.{10 + i}"


def in_ns(namespace: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def tcp_congestion(name: str | None) -> str:
    """The congestion control of the TCP runs: `name` if this process may set it on a socket
    (else a usage error), or the kernel's default, which a namespace inherits. A machine's
    default need not be Linux's CUBIC: with BBR, which does not take random loss for
    congestion, TCP keeps its window through a lossy link where a loss-based sender cannot."""
    if name is None:
        return subprocess.run(["sysctl", "-n", "net.ipv4.tcp_congestion_control"],
                              capture_output=True, text=True, check=True).stdout.strip()
    problem = tcp_congestion_check(name)
    if problem is not None:
        print(f"wan.py: error: --tcp-congestion {name}: {problem}", file=sys.stderr)
        sys.exit(2)
    return name


def kernel_drops(parties: int) -> dict[str, int]:
    """Datagrams the parties' own kernels dropped so far, summed over their namespaces: for a
    full socket receive buffer (Udp RcvbufErrors), a full send queue (SndbufErrors: UDP counts
    a full device queue there and reports no error), and at the TUN devices (/proc/net/dev).
    Losses the emulator did not make; a TCP connection cannot suffer the first (its window
    stops the sender instead)."""
    totals = {"receive buffer": 0, "send buffer": 0, "device": 0}
    for i in range(parties):
        snmp, dev = (subprocess.run(in_ns(party_ns(i), ["cat", f"/proc/net/{name}"]),
                                    capture_output=True, text=True, check=True).stdout
                     for name in ("snmp", "dev"))
        names, values = [line.split()[1:] for line in snmp.splitlines()
                         if line.startswith("Udp:")]
        udp = dict(zip(names, map(int, values), strict=True))
        totals["receive buffer"] += udp["RcvbufErrors"]
        totals["send buffer"] += udp["SndbufErrors"]
        for line in dev.splitlines()[2:]:
            fields = line.split(":", 1)[1].split()
            totals["device"] += int(fields[3]) + int(fields[11])  # receive, transmit drops
    return totals


def sctp_events(text: str) -> Counter[str]:
    """The loss-recovery counters an mpc-net party prints per association as it closes, with
    MPC_NET_SCTP_TRACE=1 (rtc/sctp.py), summed."""
    total: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("sctp: ") and " chunks sent, {" in line:
            sent, rest = line[len("sctp: "):].split(" chunks sent, ", 1)
            events, late = rest.split("}, ", 1)
            total.update(ast.literal_eval(events + "}"))
            total["chunks sent"] += int(sent)
            total["late timers"] += int(late.split()[0])
    return total


class Network:
    """The emulator for one condition, and the room server behind it."""

    def __init__(self, cond: Condition, parties: int, workdir: Path,
                 trace: Path | None = None) -> None:
        links = [f"{SERVER_NS}={SERVER}",
                 *(f"{party_ns(i)}={party_address(i)}" for i in range(parties))]
        options = cond.emulator_options() + (["--trace", str(trace)] if trace else [])
        self.emulator = subprocess.Popen(
            [sys.executable, str(EMULATOR), "forward", *options, *links],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask(None, "ready")
        self.processes: list[subprocess.Popen] = []
        log = open(workdir / "room-server.err", "w")
        server = self.spawn(SERVER_NS, [sys.executable, "-m", "mpc_net", "signal", "--host",
                                        SERVER, "--port", str(SIGNAL_PORT)], stderr=log)
        deadline = time.monotonic() + 30
        while "listening on" not in (workdir / "room-server.err").read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the room server did not start: "
                                   + (workdir / "room-server.err").read_text())
            time.sleep(0.05)
        self.url = f"ws://{SERVER}:{SIGNAL_PORT}"

    def spawn(self, namespace: str, argv: list[str], checkout: Path = ROOT,
              **kwargs) -> subprocess.Popen:
        """Run `argv` in `namespace`, importing mpc_net from `checkout`."""
        env = dict(os.environ, PYTHONPATH=str(checkout)) if checkout != ROOT else None
        proc = subprocess.Popen(in_ns(namespace, argv), cwd=checkout, stdin=subprocess.DEVNULL,
                                env=env, **kwargs)
        self.processes.append(proc)
        return proc

    def ask(self, command: str | None, expect: str | None = None) -> str:
        if command is not None:
            self.emulator.stdin.write(command + "\n")
            self.emulator.stdin.flush()
        answer = self.emulator.stdout.readline().strip()
        if not answer or (expect and answer != expect):
            raise RuntimeError(f"the emulator answered {answer!r} to {command!r}")
        return answer

    def measured_rtt_ms(self) -> float:
        """A UDP round trip between party 0 and party 1 through the emulator (median of 40)."""
        echo = self.spawn(party_ns(1), [sys.executable, str(EMULATOR), "echo", str(ECHO_PORT)],
                          stdout=subprocess.PIPE, text=True)
        echo.stdout.readline()
        done = subprocess.run(in_ns(party_ns(0), [sys.executable, str(EMULATOR), "ping",
                                                   party_address(1), str(ECHO_PORT), "40"]),
                              capture_output=True, text=True, timeout=60, check=True)
        echo.kill()
        echo.wait()
        return float(done.stdout)

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
        self.emulator.stdin.close()
        self.emulator.wait()


class Bench:
    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.parties = options.parties
        self.credentials = self.make_credentials()
        self.port = FIRST_TCP_PORT
        self.rooms = 0
        self.runs_kept = 0
        if options.keep:
            options.keep.mkdir(parents=True, exist_ok=True)

    def make_credentials(self) -> list[list[str]]:
        public = []
        for i in range(self.parties):
            key = self.workdir / f"party{i}.key"
            done = subprocess.run([sys.executable, "-m", "mpc_net", "keygen", "--out", str(key)],
                                  capture_output=True, text=True, check=True)
            public.append(done.stdout.strip())
        roster = self.workdir / "roster.json"
        subprocess.run([sys.executable, "-m", "mpc_net", "roster", *public, "--out", str(roster)],
                       capture_output=True, check=True)
        return [["--key", str(self.workdir / f"party{i}.key"), "--roster", str(roster)]
                for i in range(self.parties)]

    def commands(self, variant: str, words: list[str]) -> list[list[str]]:
        m = self.parties
        if variant == "tcp":
            self.port += 1
            addresses = [a for i in range(m) for a in ("-P", f"{party_address(i)}:{self.port}")]
            congestion = self.options.tcp_congestion
            wrapper = [str(TCP_CONGESTION), congestion] if congestion else []
            return [[sys.executable, *wrapper, *words, f"-M{m}", "-I", str(i), *addresses]
                    for i in range(m)]
        self.rooms += 1
        return [[sys.executable, "-m", "mpc_net", "run", *words, f"-M{m}", "-I", str(i),
                 "--room", f"wan{self.rooms}", "--signal", self.network.url, "--native-only",
                 "--local-address", party_address(i), *self.credentials[i]] for i in range(m)]

    def run_one(self, variant: str, words: list[str], seed: int, counters: Counter[str]
                ) -> tuple[float | None, float | None, float | None, float]:
        """Party 0's elapsed time, the set-up time: from the last party's "Start MPyC runtime"
        to the last "All m parties connected", and from the last party's launch to that (what
        work before MPyC's start, imports and a room visit, adds or hides; None: the run
        failed), and the CPU time of all parties together (user and system, start-up
        included: on a machine with fewer cores than parties, what the rounds wait for).
        Packets dropped by the parties' kernels and mpc-net's SCTP counters are added to
        `counters`."""
        self.network.ask(f"seed {seed}", "ok")
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the parties are waited for below
        drops_before = kernel_drops(self.parties)
        outputs = [self.workdir / f"party{i}.{variant}.out" for i in range(self.parties)]
        procs, launched = [], 0.0
        checkout = self.options.baseline if variant == "baseline" else ROOT
        for i, argv in enumerate(self.commands(variant, words)):
            launched = time.time()  # the wall clock, as MPyC's log lines
            with open(outputs[i], "w") as out:
                procs.append(self.network.spawn(party_ns(i), argv, checkout, stdout=out,
                                                stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = used.ru_utime + used.ru_stime - usage.ru_utime - usage.ru_stime
        drops = {key: value - drops_before[key]
                 for key, value in kernel_drops(self.parties).items() if value > drops_before[key]}
        if drops:
            progress(f"  {variant}: the parties' kernels dropped packets: {drops}")
        counters.update({f"kernel drops, {key}": value for key, value in drops.items()})
        for output in outputs:
            counters.update(sctp_events(output.read_text(errors="replace")))
        if self.options.keep:
            self.runs_kept += 1
            for i, output in enumerate(outputs):
                shutil.copy(output, self.options.keep / f"{self.runs_kept:03d}-{variant}-{i}.out")
        failed = [i for i, proc in enumerate(procs) if proc.returncode != 0]
        if failed:
            tail = outputs[failed[0]].read_text(errors="replace")[-1500:]
            progress(f"  {variant}: party {failed[0]} failed (exit {procs[failed[0]].returncode})"
                     f":\n{tail}")
            return None, None, None, cpu
        texts = [output.read_text(errors="replace") for output in outputs]
        stop = parse_stop(texts[0])
        times = [log_times(text) for text in texts]
        setup = launch = None
        if all(start and connected for start, connected in times):
            setup = max(c for _, c in times) - max(s for s, _ in times)
            launch = max(c for _, c in times) - launched
        return None if stop is None else stop[0], setup, launch, cpu

    def run(self) -> list[dict]:
        results = []
        for cond in self.options.condition:
            progress(f"network: {cond.label}")
            trace = None
            if self.options.keep:
                # A file name from the label: "40 ms, 50 Mbit/s" -> "40ms,50Mbit-s".
                name = cond.label.replace(' ', '').replace('/', '-')
                trace = self.options.keep / f"packets-{name}.log"
            self.network = Network(cond, self.parties, self.workdir, trace)
            try:
                measured = self.network.measured_rtt_ms()
                progress(f"  UDP round trip {measured:.2f} ms (configured {cond.rtt_ms:g} ms)")
                for words in self.options.program:
                    name = " ".join([shown(words[0]), *words[1:]])
                    variants = ["tcp", "mpc-net"] + (["baseline"] if self.options.baseline
                                                     else [])
                    runs: dict[str, list[float | None]] = {v: [] for v in variants}
                    setups: dict[str, list[float | None]] = {v: [] for v in variants}
                    launches: dict[str, list[float | None]] = {v: [] for v in variants}
                    counters: dict[str, Counter[str]] = {v: Counter() for v in variants}
                    cpus: dict[str, list[float]] = {v: [] for v in variants}
                    before = json.loads(self.network.ask("stats"))
                    for rep in range(self.options.reps):
                        for variant in runs:
                            elapsed, setup, launch, cpu = self.run_one(
                                variant, words, self.options.seed + rep, counters[variant])
                            cpus[variant].append(cpu)
                            runs[variant].append(elapsed)
                            setups[variant].append(setup)
                            launches[variant].append(launch)
                            progress(f"  {name} rep {rep + 1} {variant}: "
                                     + ("failed" if elapsed is None else f"{elapsed:.3f} s")
                                     + ("" if setup is None else f", set-up {setup:.3f} s")
                                     + ("" if launch is None else
                                        f", launch to connected {launch:.3f} s")
                                     + f", parties' CPU {cpu:.2f} s")
                    after = json.loads(self.network.ask("stats"))
                    drops = {key: after[key] - before[key] for key in ("lost", "queue_drops")}
                    results.append(summarize(cond, measured, name, runs, setups, launches,
                                             drops) | {"counters": counters, "cpu_s": cpus})
            finally:
                self.network.close()
        return results


def ratios_to_tcp(runs: dict[str, list[float | None]], variant: str) -> list[float]:
    return [n / t for n, t in zip(runs[variant], runs["tcp"], strict=True) if n and t]


def summarize(cond: Condition, measured: float, name: str, runs: dict[str, list[float | None]],
              setups: dict[str, list[float | None]], launches: dict[str, list[float | None]],
              drops: dict[str, int]) -> dict:
    ratios = ratios_to_tcp(runs, "mpc-net")
    baseline = ratios_to_tcp(runs, "baseline") if "baseline" in runs else []
    return {"baseline_s": median(runs.get("baseline", [])),
            "baseline_ratio": statistics.median(baseline) if baseline else None,
            "condition": dataclasses.asdict(cond), "label": cond.label,
            "measured_rtt_ms": measured, "program": name, "runs": runs,
            "lost_packets": drops["lost"], "queue_drops": drops["queue_drops"],
            "tcp_s": median(runs["tcp"]), "mpc_net_s": median(runs["mpc-net"]),
            "ratio": statistics.median(ratios) if ratios else None,
            "ratio_range": [min(ratios), max(ratios)] if ratios else None,
            "setups": setups, "tcp_setup_s": median(setups["tcp"]),
            "mpc_net_setup_s": median(setups["mpc-net"]), "launches": launches,
            "tcp_launch_s": median(launches["tcp"]),
            "mpc_net_launch_s": median(launches["mpc-net"])}


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "failed" if value is None else f"{value:.{digits}f}"


def tables(results: list[dict]) -> str:
    """One table of ratios (programs by conditions), then the overhead check, seconds, and the
    counters of dropped packets and (with MPC_NET_SCTP_TRACE=1) mpc-net's loss recovery,
    summed over the repetitions of each variant."""
    labels = list(dict.fromkeys(r["label"] for r in results))
    programs = list(dict.fromkeys(r["program"] for r in results))
    cell = {(r["program"], r["label"]): r for r in results}
    lines = ["| program | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name in programs:
        lines.append(f"| {name} | " + " | ".join(fmt(cell[name, label]["ratio"])
                                                 for label in labels) + " |")
    measured = {r["label"]: (r["condition"]["rtt_ms"], r["measured_rtt_ms"]) for r in results}
    lines += ["", "| network | configured RTT ms | measured UDP RTT ms | emulator overhead ms |",
              "|---|---|---|---|"]
    for label, (configured, got) in measured.items():
        lines.append(f"| {label} | {configured:g} | {got:.2f} | {got - configured:+.2f} |")
    lines += ["", "| network | program | TCP elapsed s | mpc-net elapsed s | ratio (range) "
              "| packets lost / dropped by the queue |", "|---|---|---|---|---|---|"]
    for r in results:
        spread = "" if not r["ratio_range"] else " ({:.2f}-{:.2f})".format(*r["ratio_range"])
        lines.append(f"| {r['label']} | {r['program']} | {fmt(r['tcp_s'], 3)} | "
                     f"{fmt(r['mpc_net_s'], 3)} | {fmt(r['ratio'])}{spread} | "
                     f"{r['lost_packets']} / {r['queue_drops']} |")
    if any("baseline" in r["runs"] for r in results):
        lines += ["", "| network | program | baseline elapsed s | baseline ratio | mpc-net "
                  "elapsed s | ratio |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['label']} | {r['program']} | {fmt(r['baseline_s'], 3)} | "
                  f"{fmt(r['baseline_ratio'])} | {fmt(r['mpc_net_s'], 3)} | {fmt(r['ratio'])} |"
                  for r in results]
    counted = [(r, variant, counts) for r in results
               for variant, counts in r.get("counters", {}).items() if counts]
    if counted:
        keys = sorted({key for _, _, counts in counted for key in counts})
        lines += ["", "| network | program | variant | " + " | ".join(keys) + " |",
                  "|---" * (len(keys) + 3) + "|"]
        lines += [f"| {r['label']} | {r['program']} | {variant} | "
                  + " | ".join(str(counts.get(key, 0)) for key in keys) + " |"
                  for r, variant, counts in counted]
    lines += ["", "| network | program | TCP set-up s | mpc-net set-up s | mpc-net set-up in "
              "measured round trips | last launch to connected, TCP / mpc-net s |",
              "|---|---|---|---|---|---|"]
    for r in results:
        rtt_s = r["measured_rtt_ms"] / 1000
        trips = fmt(r["mpc_net_setup_s"] / rtt_s, 1) if r["mpc_net_setup_s"] and rtt_s > 0.005 \
            else "-"
        lines.append(f"| {r['label']} | {r['program']} | {fmt(r['tcp_setup_s'], 3)} | "
                     f"{fmt(r['mpc_net_setup_s'], 3)} | {trips} | "
                     f"{fmt(r['tcp_launch_s'], 3)} / {fmt(r['mpc_net_launch_s'], 3)} |")
    lines += ["", "| network | program | " + " | ".join(f"{variant} parties' CPU s"
                                                     for variant in results[0]["cpu_s"])
              + " |", "|---" * (len(results[0]["cpu_s"]) + 2) + "|"]
    lines += [f"| {r['label']} | {r['program']} | "
              + " | ".join(fmt(median(cpus)) for cpus in r["cpu_s"].values()) + " |"
              for r in results]
    return "\n".join(lines)


def main() -> None:
    options = parse_args()
    if os.environ.get(SANDBOXED) != "1":
        sandbox()
    with tempfile.TemporaryDirectory(prefix="mpc-net-wan-") as directory:
        workdir = Path(directory)
        for i in range(options.parties):
            subprocess.run(["ip", "netns", "add", party_ns(i)], check=True)
        congestion = tcp_congestion(options.tcp_congestion)
        progress(f"TCP congestion control: {congestion}")
        subprocess.run(["ip", "netns", "add", SERVER_NS], check=True)
        results = [r | {"tcp_congestion": congestion} for r in Bench(options, workdir).run()]
    print(f"TCP's congestion control: {congestion}\n")
    print(tables(results))
    if options.json:
        options.json.write_text(json.dumps(results, indent=1) + "\n")
    if options.plot:
        draw(results, options.plot)
        progress(f"picture: {options.plot}")


if __name__ == "__main__":
    main()
