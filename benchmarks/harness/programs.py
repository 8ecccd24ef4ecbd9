"""Part 1: MPyC programs, over MPyC's TCP transport and over mpc-net."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

from .figures import (
    fmt,
    fmt_ratio,
    markdown_table,
    median,
    parse_stop,
    program_output,
    ratios,
    run_reports,
    summarize_ratios,
    traffic,
)
from .processes import MPC_NET, ROOT, TCP, free_base_port, progress, run_process, udp_counters


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
        return [sys.executable, "-m", "mpc_net", "run", "--log-dir", str(logs),
                "--stats-json", str(self.reports), script, *args]

    @property
    def reports(self) -> Path:
        """Where an mpc-net run writes its parties' run reports (run.0.json, ...)."""
        return self.workdir / "reports" / "run.json"

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
        self.reports.parent.mkdir(exist_ok=True)
        for old in self.reports.parent.iterdir():
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
        if not finished.ok:
            record["error"] = finished.failure()
        elif stop is None:
            record["error"] = "no 'Stop MPyC' line on party 0's stdout"
        elif variant == MPC_NET:
            try:
                reports = run_reports(self.reports, parties)
            except ValueError as exc:
                record["ok"], record["error"] = False, str(exc)
            else:
                record["mpyc_messages"], record["channel_messages"] = traffic(reports)
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



def run_programs(options: argparse.Namespace, workdir: Path, report: dict) -> bool:
    """Part 1: run, print the tables, and add the figures to `report`; whether all went well."""
    bench = ProgramBench(options, workdir)
    ok = bench.run()
    results = bench.results()
    report["programs"] = results
    report["demos"] = demo_summary(results)
    print("\nMPyC programs: MPyC elapsed time of party 0 and wall time of the whole run "
          "(medians)\n")
    print(programs_table(results))
    print("\nmpc-net traffic per run, all parties together, from their run reports (medians)\n")
    print(traffic_table(results))
    print(f"\n- (short): TCP elapsed under {SHORT_RUN_S * 1000:.0f} ms, a few round "
          "trips measured in whole milliseconds: mostly noise.")
    for key, label in ((None, "all demos"), ("long", "demos not (short)")):
        d = report["demos"].get(key) if key else report["demos"]
        if d:
            print(f"- Elapsed ratio over {label} ({d['cells']} demo x m): median "
                  f"{d['median_ratio']:.2f}, largest {d['max_ratio']:.2f} "
                  f"({d['max_ratio_at']})")
    return ok
