"""MPyC's own work in WebAssembly against native CPython: a demo with one party, no network.

    python tests/browser/wasm_work.py [--bundle DIR] [--demos NAMES] [--repeats N]

Each demo runs N times in one Pyodide in Node (the bundle's, its wheels' files written as a
page writes them) and N times in one native CPython, in turn, MPyC imported afresh for each run
as a page does. Without -M MPyC runs one party without an event loop (no asyncio, no messages),
so what is timed is MPyC's own Python: secure types, arithmetic, its protocol code. The first
run in a process is apart from the later ones: WebAssembly's code is compiled lazily, a function
on its first call, and optimized once hot, and a page runs a demo once. Prints seconds per run
(`time.perf_counter` around the demo) and the ratios WebAssembly/native. A benchmark, not a
test: the same machine, in turn, so compare the columns of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMOS = {"auction": [], "stats": [], "sort": [], "secretsanta": [], "comparisons": ["100"]}

# Run in both Pythons, with ARGS = [repeats, where, *demo_args]: where is the demo's file, or
# in Pyodide its module in the bundle's demos wheel.
RUNS = """
import importlib.util, logging, runpy, sys, time
repeats, where, *demo_args = ARGS
path = where if where.endswith(".py") else importlib.util.find_spec(where).origin
for _ in range(int(repeats)):
    for name in [n for n in sys.modules if n == "mpyc" or n.startswith("mpyc.")]:
        del sys.modules[name]
    for handler in logging.getLogger().handlers[:]:
        logging.getLogger().removeHandler(handler)
    sys.argv = [path, *demo_args]
    import mpyc.runtime
    start = time.perf_counter()
    runpy.run_path(path, run_name="__main__")
    print(f"RUN {time.perf_counter() - start:.6f}", file=sys.stderr)
"""
_RUN = re.compile(r"^RUN ([\d.]+)$", re.M)


def times(command: list[str]) -> list[float]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed:\n{done.stderr[-3000:]}")
    return [float(t) for t in _RUN.findall(done.stderr)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a built bundle (default: build one)")
    parser.add_argument("--demos", default=",".join(DEMOS), help="comma-separated demos")
    parser.add_argument("--repeats", type=int, default=4, help="runs per process (default 4)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = options.bundle
        if bundle is None:
            bundle = Path(tmp) / "dist"
            subprocess.run([sys.executable, str(ROOT / "wasm" / "build.py"), "--out", str(bundle)],
                           check=True, capture_output=True)
        print("seconds per run of a demo with one party (first run; median of the later runs)")
        print(f"{'demo':<12} {'wasm first':>10} {'native first':>12} {'ratio':>6}   "
              f"{'wasm later':>10} {'native later':>12} {'ratio':>6}  load average")
        for demo in options.demos.split(","):
            load = os.getloadavg()[0]
            wasm = times(["node", str(Path(__file__).with_name("wasm_work.mjs")), str(bundle),
                          RUNS, json.dumps([options.repeats, f"mpc_net_demos.{demo}",
                                            *DEMOS[demo]])])
            args = [options.repeats, str(ROOT / "demos" / f"{demo}.py"), *DEMOS[demo]]
            native = times([sys.executable, "-c", f"ARGS = {args!r}\n{RUNS}"])
            later_wasm, later_native = statistics.median(wasm[1:]), statistics.median(native[1:])
            print(f"{demo:<12} {wasm[0]:>10.3f} {native[0]:>12.3f} {wasm[0] / native[0]:>6.1f}   "
                  f"{later_wasm:>10.3f} {later_native:>12.3f} {later_wasm / later_native:>6.1f}  "
                  f"{load:.1f}-{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
