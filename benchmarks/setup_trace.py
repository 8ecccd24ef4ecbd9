"""Set-up round trips that the imports cannot hide, from a `wan.py --keep DIR` directory.

wan.py's set-up figure starts at the last party's "Start MPyC runtime" line; the protocols' round
trips run from the moment a party joins, so how many of them fall after that line depends on how
long the party took to import (on a loaded machine: anywhere from none to all). This counts
from a point on the wire instead: the last DTLS change_cipher_spec packet in the emulator's trace
before the run's last "All m parties connected" line, i.e. the DTLS server's Finished flight of
the last pair to connect, up to that line. SCTP's set-up, our handshake and MPyC's first
message (its PRSS keys) lie in between. A run whose last party started MPyC only after that
Finished is left out (counted apart): its line waited for the imports, not the protocols.

    .venv/bin/python benchmarks/setup_trace.py DIR --rtt-ms 40.8

The emulator stamps a packet as it takes it in (as sent), the parties stamp their log lines in
milliseconds; both use the machine's clock.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

from harness.figures import log_times  # beside this script


def finished_stamps(directory: Path) -> list[float]:
    """When each DTLS change_cipher_spec packet entered the emulator, in order."""
    stamps = [float(line.split()[0]) for trace in directory.glob("packets-*.log")
              for line in trace.read_text().splitlines() if "change_cipher_spec" in line]
    return sorted(stamps)


def runs(directory: Path) -> dict[tuple[int, str], list[Path]]:
    """The kept outputs of each run by (run number, variant): `NNN-VARIANT-PARTY.out`."""
    found: dict[tuple[int, str], list[Path]] = defaultdict(list)
    for path in sorted(directory.glob("*.out")):
        match = re.fullmatch(r"(\d+)-(.+)-\d+\.out", path.name)
        if match:
            found[int(match.group(1)), match.group(2)].append(path)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="what wan.py --keep kept")
    parser.add_argument("--rtt-ms", type=float, required=True,
                        help="the measured UDP round trip (wan.py prints it)")
    options = parser.parse_args()
    rtt = options.rtt_ms / 1000
    finished = finished_stamps(options.directory)
    figures: dict[str, list[float]] = defaultdict(list)
    hidden: Counter[str] = Counter()
    for (number, variant), outputs in sorted(runs(options.directory).items()):
        if variant == "tcp":
            continue
        times = [log_times(p.read_text(errors="replace")) for p in outputs]
        starts, connected = [t for t, _ in times], [t for _, t in times]
        if None in starts or None in connected:
            print(f"run {number} ({variant}): not all parties connected", file=sys.stderr)
            continue
        end = max(connected)
        before = [t for t in finished if t < end]
        if not before:
            continue
        if max(starts) > before[-1]:
            # MPyC started after the channels were up: the line waited for the imports.
            hidden[variant] += 1
            print(f"run {number:3d} {variant}: hidden behind the imports")
            continue
        figures[variant].append((end - before[-1]) / rtt)
        print(f"run {number:3d} {variant}: {figures[variant][-1]:.2f} round trips")
    print("\n| variant | DTLS Finished to all connected, round trips: median (range), runs | "
          "runs whose protocols the imports hid |")
    print("|---|---|---|")
    for variant, values in figures.items():
        print(f"| {variant} | {statistics.median(values):.2f} ({min(values):.2f}-"
              f"{max(values):.2f}), {len(values)} | {hidden[variant]} |")


if __name__ == "__main__":
    main()
