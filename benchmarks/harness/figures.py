"""Figures from what the runs leave: MPyC's log lines (the same over TCP and over mpc-net),
mpc-net's run reports (`mpc-net run --stats-json`), and the statistics and tables made of them.
"""

from __future__ import annotations

import datetime
import json
import re
import statistics
from collections.abc import Iterable
from pathlib import Path

from mpc_net.stats import FORMAT as REPORT_FORMAT
from mpc_net.stats import party_file

# -- MPyC's log lines ---------------------------------------------------------------------------

_STOP = re.compile(r"Stop MPyC -- elapsed time: (\d+):(\d+):([\d.]+)\|bytes sent: (\d+)")
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")


def parse_stop(stdout: str) -> tuple[float, int] | None:
    """MPyC's elapsed time and bytes sent, from party 0's `Stop MPyC` line."""
    match = _STOP.search(stdout)
    if match is None:
        return None
    hours, minutes, seconds, sent = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds), int(sent)


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


# -- mpc-net's run reports ----------------------------------------------------------------------


def run_reports(path: Path, parties: int) -> list[dict]:
    """The run report of every party of a local-mode run made with `--stats-json path`.

    Raises ValueError, saying which party's is missing or unreadable, or which party's run
    did not end well by its own account.
    """
    reports = []
    for i in range(parties):
        file = Path(party_file(str(path), i))
        try:
            report = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"no readable run report from party {i} ({exc})") from None
        if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
            raise ValueError(f"party {i}'s run report is not of format {REPORT_FORMAT}")
        if report["exit"]["reason"] != "ok":
            raise ValueError(f"party {i}'s run report says {report['exit']['reason']}: "
                             f"{report['exit']['message']}")
        reports.append(report)
    return reports


def traffic(reports: list[dict]) -> tuple[int, int]:
    """MPyC messages and data channel messages sent, summed over every party and peer."""
    peers = [peer for report in reports for peer in report["peers"]]
    return (sum(p["mpyc_messages_sent"] for p in peers),
            sum(p["channel_messages_sent"] for p in peers))


def connect_time(reports: list[dict]) -> float | None:
    """mpc-net's own figure: the longest time a party took to connect to all its peers."""
    times = [r["connect_s"] for r in reports if r["connect_s"] is not None]
    return max(times) if times else None


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

