"""Start-up and end: a party's imports against MPyC's own, and the end of a local-mode run.

Imports: each variant runs in fresh processes (interleaved, so that a busy machine slows all
alike); the table shows medians of the import's wall-clock time and of its CPU time (steadier
when other processes share the cores), and how much more than `import mpyc.runtime` that is.
Bytecode caches are written on a first, untimed run, as on a user's machine after the first
start.

End: `mpc-net run demos/auction.py -M3` (local mode), from MPyC's "Stop MPyC" line on party 0's
output to the exit of the command (every party has ended, the room server has closed).

Run: python benchmarks/startup.py [--runs 10] [--end-runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What `mpc-net run -I i` imports before its first connection (cli.py, party.py, mesh/).
PARTY = ("mpc_net.cli", "mpc_net.ice", "mpc_net.native.identity", "mpc_net.signaling.protocol",
         "mpc_net.mesh", "mpc_net.native.signaling", "mpc_net.native.party", "mpyc.runtime",
         "mpc_net.native.peer")

# The modules, and whether the cyclic garbage collector is off while importing them.
VARIANTS = {
    "mpyc.runtime": (("mpyc.runtime",), False),
    "party": (PARTY, True),  # as `mpc-net run` imports (cli.py)
    # With PyAV loaded, as aiortc's media modules would without their stand-ins.
    "party, with PyAV": (("av", *PARTY), True),
    # As at first: what rtc/patches.py defers or stands in for imported first, collector on.
    "party, nothing deferred, collector on": (("av", "aioice", "importlib.metadata", *PARTY),
                                              False),
    "aiortc alone": (("aiortc",), False),
}

_MEASURE = """
import gc, sys, time
wall, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "off":
    gc.disable()
for name in sys.argv[2:]:
    __import__(name)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def measure(variant: tuple[tuple[str, ...], bool], env: dict[str, str]) -> tuple[float, float]:
    modules, collector_off = variant
    done = subprocess.run([sys.executable, "-c", _MEASURE, "off" if collector_off else "on",
                           *modules], env=env, capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.split()[-2:]  # after anything the imports print
    return float(wall), float(cpu)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per variant")
    parser.add_argument("--end-runs", type=int, default=5, help="local-mode runs for the end")
    options = parser.parse_args()
    runs = options.runs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for variant in VARIANTS.values():
        measure(variant, env)  # writes the bytecode caches
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, variant in VARIANTS.items():
            times[name].append(measure(variant, env))
    base_wall, base_cpu = (statistics.median(t[i] for t in times["mpyc.runtime"]) for i in (0, 1))
    print(f"Import time, median of {runs} fresh processes (s)\n")
    print("| imports | wall | CPU | wall - mpyc | CPU - mpyc |")
    print("|---|---|---|---|---|")
    for name, samples in times.items():
        wall = statistics.median(t[0] for t in samples)
        cpu = statistics.median(t[1] for t in samples)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall - base_wall:+.3f} | "
              f"{cpu - base_cpu:+.3f} |")
    if options.end_runs:
        ends = [end_of_run(env) for _ in range(options.end_runs)]
        print(f"\nEnd of a local-mode run (auction, -M3), \"Stop MPyC\" to exit: median "
              f"{statistics.median(ends):.3f} s of {options.end_runs} "
              f"({', '.join(f'{e:.2f}' for e in ends)})")


if __name__ == "__main__":
    main()
