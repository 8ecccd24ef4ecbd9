"""The picture of a WAN benchmark: mpc-net / TCP elapsed-time ratio per program and network.

    python benchmarks/wan_plot.py wan.json wan.svg     # from wan.py --json

matplotlib is an optional dependency (the `bench` extra): it is looked up only when a picture
is asked for.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

TARGETS = ((1.1, "target without loss"), (1.5, "target at 1 % loss"))


def pyplot():
    """matplotlib's pyplot, drawing to files only (SystemExit: matplotlib is not installed)."""
    try:
        matplotlib = importlib.import_module("matplotlib")  # optional: the `bench` extra
    except ImportError:
        raise SystemExit("a picture needs matplotlib: pip install 'mpc-net[bench]'") from None
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def draw(results: list[dict], path: Path) -> None:
    plt = pyplot()
    labels = list(dict.fromkeys(r["label"] for r in results))
    programs = list(dict.fromkeys(r["program"] for r in results))
    ratio = {(r["program"], r["label"]): r["ratio"] for r in results}
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name in programs:
        points = [(i, ratio.get((name, label))) for i, label in enumerate(labels)]
        points = [(i, value) for i, value in points if value is not None]
        axes.plot([i for i, _ in points], [v for _, v in points], marker="o", label=name)
    axes.axhline(1.0, color="black", linewidth=0.8)
    for value, text in TARGETS:
        axes.axhline(value, color="grey", linestyle="--", linewidth=0.8)
        axes.annotate(text, (len(labels) - 1, value), textcoords="offset points",
                      xytext=(0, 3), ha="right", fontsize=8, color="grey")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_xlabel("network (round-trip time, bandwidth cap, loss)")
    axes.set_ylabel("elapsed time, mpc-net / MPyC TCP")
    axes.set_title("mpc-net against MPyC's TCP across an emulated WAN (median ratio)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    if len(sys.argv) != 3:
        print("usage: wan_plot.py RESULTS.json PICTURE", file=sys.stderr)
        sys.exit(2)
    try:
        results = json.loads(Path(sys.argv[1]).read_text())
    except (OSError, ValueError) as exc:
        print(f"wan_plot.py: cannot read {sys.argv[1]}: {exc}", file=sys.stderr)
        sys.exit(2)
    draw(results, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
