"""Start-up and end: a party's imports against MPyC's own, and the end of a local-mode run.

Imports: each variant runs in fresh processes (interleaved, so that a busy machine slows all
alike); the table shows medians of the import's wall-clock time and of its CPU time (steadier
when other processes share the cores), and how much more than `import mpyc.runtime` that is.
Bytecode caches are written on a first, untimed run, as on a user's machine after the first
start.

End: `mpc-net run demos/auction.py -M3` (local mode), from MPyC's "Stop MPyC" line on party 0's
output to the exit of the command (every party has ended, the room server has closed).

Launch: what a user waits for before the program runs, imports or not. From a process's launch
to its program's first line after `from mpyc.runtime import mpc`: `python PROGRAM` (MPyC alone)
against a party, `mpc-net run PROGRAM -M2 -I0` with a room server on loopback (its checks, key,
room join and the imports in its thread included; party 1 never comes, the program exits there).
Wall-clock time, and the process's CPU time by then (all its threads).

Where the time goes: with --where, `python -X importtime` of a party's imports after
`import mpyc.runtime`, the self time of each package summed (medians over --runs processes).

Before and after: with --baseline DIR (another checkout of mpc-net, e.g. `git worktree add
--detach DIR main`), the variants that import mpc-net also run from DIR, interleaved with the
others, and show as "(baseline)" rows; repeated (one checkout per step), as "(DIR)" rows.

"party beyond mpyc.runtime, in one process" times only what a party imports after MPyC, in the
process that imported MPyC first: steadier under load than the difference of two medians.

Run: python benchmarks/startup.py [--runs 10] [--end-runs 5] [--launch-runs 10] [--where]
[--baseline DIR ...]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What `mpc-net run -I i` imports before its first connection: its command line's parser (made
# as cli.main makes it: "module:function" calls the function), party.py, mesh/, aiortc.
PARTY = ("mpc_net.cli", "mpc_net.cli:_parser", "mpc_net.ice", "mpc_net.native.identity",
         "mpc_net.signaling.protocol", "mpc_net.mesh", "mpc_net.native.signaling",
         "mpc_net.native.party", "mpyc.runtime", "mpc_net.native.peer")

# The modules, whether the cyclic garbage collector is off while importing them, and how many of
# them are imported before the clocks start (0: all timed).
VARIANTS = {
    "mpyc.runtime": (("mpyc.runtime",), False),
    "party": (PARTY, True),  # as `mpc-net run` imports (cli.py)
    # Only what a party imports beyond MPyC, timed in the process that imported MPyC: steadier
    # on a busy machine than the difference of two rows (its columns are that difference).
    "party beyond mpyc.runtime, in one process": (("mpyc.runtime", *PARTY), True, 1),
    # With PyAV loaded, as aiortc's media modules would without their stand-ins.
    "party, with PyAV": (("av", *PARTY), True),
    # As at first: what rtc/lean.py and mpc-net defer or stand in for imported first (aiortc
    # whole, with its codecs and pylibsrtp), collector on.
    "party, nothing deferred, collector on": (("av", "aiortc", "aioice", "importlib.metadata",
                                               "urllib.request", "tempfile", *PARTY), False),
    "aiortc alone": (("aiortc",), False),
}

_MEASURE = """
import gc, importlib, sys, time
if sys.argv[1] == "off":
    gc.disable()

def load(name):
    module, _, function = name.partition(":")
    module = importlib.import_module(module)
    if function:
        getattr(module, function)()

untimed = int(sys.argv[2])
for name in sys.argv[3:3 + untimed]:
    load(name)
wall, cpu = time.perf_counter(), time.process_time()
for name in sys.argv[3 + untimed:]:
    load(name)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def measure(variant: tuple, env: dict[str, str], checkout: Path = ROOT) -> tuple[float, float]:
    modules, collector_off, *untimed = variant
    # `-c` puts the working directory first on sys.path: it picks the checkout's mpc_net.
    done = subprocess.run([sys.executable, "-c", _MEASURE, "off" if collector_off else "on",
                           str(sum(untimed)), *modules], env={**env, "PYTHONPATH": str(checkout)},
                          cwd=checkout, capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.split()[-2:]  # after anything the imports print
    return float(wall), float(cpu)


def where(runs: int, env: dict[str, str]) -> None:
    """The largest self import times, by package, of what a party imports beyond MPyC."""
    # import statements: importlib.import_module's own module gets no line of -X importtime.
    steps = []
    for name in PARTY:
        module, _, function = name.partition(":")
        steps.append(f"import {module}" + (f"; {module}.{function}()" if function else ""))
    code = "import gc; gc.disable(); import mpyc.runtime; " + "; ".join(steps)
    samples: list[collections.Counter[str]] = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                              env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                              capture_output=True, text=True, check=True)
        lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        start = next(i for i, line in enumerate(lines) if line.endswith("| mpyc.runtime"))
        by_package: collections.Counter[str] = collections.Counter()
        for line in lines[start + 1:]:
            own, _, name = line.removeprefix("import time:").split("|")
            name = name.strip()
            parts = name.split(".")
            by_package[".".join(parts[:2]) if parts[0] == "mpc_net" else parts[0]] += int(own)
        samples.append(by_package)
    packages = set().union(*samples)
    median = {p: statistics.median(s[p] for s in samples) / 1e6 for p in packages}
    total = statistics.median(sum(s.values()) for s in samples) / 1e6
    print(f"\nImports beyond mpyc.runtime, self time by package (-X importtime, median of "
          f"{runs}; total {total:.3f} s)\n")
    print("| package | s |\n|---|---|")
    for package in sorted(median, key=median.get, reverse=True)[:15]:
        print(f"| {package} | {median[package]:.3f} |")


def end_of_run(env: dict[str, str]) -> float:
    """Seconds from party 0's "Stop MPyC" to the exit of a local-mode run."""
    command = [sys.executable, "-m", "mpc_net", "run", "demos/auction.py", "-M3"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as proc:
        stopped = None
        for line in proc.stdout:
            if "Stop MPyC" in line:
                stopped = time.perf_counter()
    if proc.returncode != 0 or stopped is None:
        raise SystemExit(f"the local-mode run failed (exit code {proc.returncode})")
    return time.perf_counter() - stopped


_LAUNCHED = """
import os, time
from mpyc.runtime import mpc
print("launched", time.time() - float(os.environ["STARTUP_LAUNCHED_AT"]), time.process_time())
os._exit(0)  # (a party: party 1 never comes)
"""


def launch(runs: int, env: dict[str, str], checkouts: dict[str, Path]) -> None:
    """Launch to the program's first line, MPyC alone and a party from each checkout."""
    env = {n: v for n, v in env.items() if not n.lower().endswith("_proxy")}  # loopback only
    with tempfile.TemporaryDirectory() as directory:
        program, key, roster = (Path(directory, name) for name in ("launched.py", "0.key",
                                                                    "roster.json"))
        program.write_text(_LAUNCHED)
        mpc_net = [sys.executable, "-m", "mpc_net"]
        keys = [subprocess.run([*mpc_net, "keygen", "--out", f"{directory}/{i}.key"], cwd=ROOT,
                               env=env, capture_output=True, text=True, check=True).stdout.strip()
                for i in range(2)]
        subprocess.run([*mpc_net, "roster", *keys, "--out", str(roster)], cwd=ROOT, env=env,
                       capture_output=True, check=True)
        log = Path(directory, "signal.log")
        with log.open("w") as sink, subprocess.Popen([*mpc_net, "signal", "--port", "0"],
                                                     cwd=ROOT, env=env, stderr=sink) as server:
            try:
                url = _listening(log)
                party = [*mpc_net, "run", str(program), "-M2", "-I0", "--signal", url, "--key",
                         str(key), "--roster", str(roster)]
                commands = {"MPyC alone": ([sys.executable, str(program)], ROOT)}
                commands.update({f"party{label}": (party, checkout)
                                 for label, checkout in checkouts.items()})
                times = _launches(runs, env, commands)
            finally:
                server.terminate()
    base_wall, base_cpu = (statistics.median(t[i] for t in times[next(iter(times))])
                           for i in (0, 1))
    print(f"\nLaunch to the program's first line after `from mpyc.runtime import mpc`, MPyC alone "
          f"(`python PROGRAM`) and a party (`mpc-net run PROGRAM -M2 -I0`, a room server on "
          f"loopback), median of {runs} (s)\n")
    print("| process | wall | CPU | wall - MPyC alone | CPU - MPyC alone |\n|---|---|---|---|---|")
    for name, samples in times.items():
        wall, cpu = (statistics.median(t[i] for t in samples) for i in (0, 1))
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall - base_wall:+.3f} | "
              f"{cpu - base_cpu:+.3f} |")


def _listening(log: Path) -> str:
    """The room server's URL, from the line it logs first."""
    for _ in range(200):
        found = re.search(r"listening on (\S+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise SystemExit(f"the room server did not start: {log.read_text().strip()}")


def _launches(runs: int, env: dict[str, str], commands: dict[str, tuple[list[str], Path]]
              ) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    rooms = iter(range(1 << 30))
    for run in range(runs + 1):  # the first: bytecode caches
        for name, (command, checkout) in commands.items():
            if "mpc_net" in command:
                command = [*command, "--room", f"launch{next(rooms)}"]
            done = subprocess.run(command, cwd=checkout, capture_output=True, text=True,
                                  env={**env, "STARTUP_LAUNCHED_AT": repr(time.time())})
            line = next((line for line in done.stdout.splitlines()
                         if line.startswith("launched ")), None)
            if line is None:
                raise SystemExit(f"{name} did not start its program: {done.stderr.strip()}")
            if run:
                wall, cpu = line.split()[1:]
                times[name].append((float(wall), float(cpu)))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per variant")
    parser.add_argument("--end-runs", type=int, default=5, help="local-mode runs for the end")
    parser.add_argument("--launch-runs", type=int, default=10,
                        help="launches to the program's first line, MPyC alone and a party")
    parser.add_argument("--where", action="store_true",
                        help="also where a party's import time goes, by package")
    parser.add_argument("--baseline", type=Path, metavar="DIR", action="append", default=[],
                        help="another checkout of mpc-net to compare with, interleaved "
                             "(repeatable)")
    options = parser.parse_args()
    for baseline in options.baseline:
        if not (baseline / "mpc_net").is_dir():
            parser.error(f"--baseline: no mpc_net package in {baseline}")
    runs = options.runs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    runners = {name: (variant, ROOT) for name, variant in VARIANTS.items()}
    for baseline in options.baseline:
        label = "baseline" if len(options.baseline) == 1 else str(baseline)
        runners.update({f"{name} ({label})": (variant, baseline.resolve())
                        for name, variant in VARIANTS.items() if "mpc_net.cli" in variant[0]})
    for variant, checkout in runners.values():
        measure(variant, env, checkout)  # writes the bytecode caches
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, (variant, checkout) in runners.items():
            times[name].append(measure(variant, env, checkout))
    base_wall, base_cpu = (statistics.median(t[i] for t in times["mpyc.runtime"]) for i in (0, 1))
    print(f"Import time, median of {runs} fresh processes (s)\n")
    print("| imports | wall | CPU | wall - mpyc | CPU - mpyc |")
    print("|---|---|---|---|---|")
    for name, samples in times.items():
        wall = statistics.median(t[0] for t in samples)
        cpu = statistics.median(t[1] for t in samples)
        if len(runners[name][0]) > 2:  # timed beyond MPyC already
            print(f"| {name} | | | {wall:+.3f} | {cpu:+.3f} |")
        else:
            print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall - base_wall:+.3f} | "
                  f"{cpu - base_cpu:+.3f} |")
    if options.where:
        where(runs, env)
    if options.launch_runs:
        checkouts = {"": ROOT}
        checkouts.update({f" ({'baseline' if len(options.baseline) == 1 else b})": b.resolve()
                          for b in options.baseline})
        launch(options.launch_runs, env, checkouts)
    if options.end_runs:
        ends = [end_of_run(env) for _ in range(options.end_runs)]
        print(f"\nEnd of a local-mode run (auction, -M3), \"Stop MPyC\" to exit: median "
              f"{statistics.median(ends):.3f} s of {options.end_runs} "
              f"({', '.join(f'{e:.2f}' for e in ends)})")


if __name__ == "__main__":
    main()
