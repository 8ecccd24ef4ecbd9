"""Start-up: what a party imports before it connects, against MPyC's own `import mpyc.runtime`.

Each variant runs in fresh processes (interleaved, so that a busy machine slows all alike), and
the table shows medians of the import's wall-clock time and of its CPU time (steadier when other
processes share the cores), and how much more than `import mpyc.runtime` that is. Bytecode
caches are written on a first, untimed run, as on a user's machine after the first start.

Run: python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

# What `mpc-net run -I i` imports before its first connection (cli.py, party.py, mesh.py).
PARTY = ("mpc_net.cli", "mpc_net.ice", "mpc_net.keys", "mpc_net.signaling.protocol",
         "mpc_net.mesh", "mpc_net.signaling.client", "mpc_net.party", "mpyc.runtime",
         "mpc_net.rtc.native")

VARIANTS = {
    "mpyc.runtime": ("mpyc.runtime",),
    "party": PARTY,
    # aioice imported first: nothing deferred (rtc/patches.py, DEFERRED_PACKAGES), as before.
    "party, nothing deferred": ("aioice", *PARTY),
    "aiortc alone": ("aiortc",),
}

_MEASURE = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
for name in sys.argv[1:]:
    __import__(name)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def measure(modules: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, *modules], env=env,
                          capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.split()[-2:]  # after anything the imports print
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per variant")
    runs = parser.parse_args().runs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for modules in VARIANTS.values():
        measure(modules, env)  # writes the bytecode caches
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, modules in VARIANTS.items():
            times[name].append(measure(modules, env))
    base_wall, base_cpu = (statistics.median(t[i] for t in times["mpyc.runtime"]) for i in (0, 1))
    print(f"Import time, median of {runs} fresh processes (s)\n")
    print("| imports | wall | CPU | wall - mpyc | CPU - mpyc |")
    print("|---|---|---|---|---|")
    for name, samples in times.items():
        wall = statistics.median(t[0] for t in samples)
        cpu = statistics.median(t[1] for t in samples)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {wall - base_wall:+.3f} | "
              f"{cpu - base_cpu:+.3f} |")


if __name__ == "__main__":
    main()
