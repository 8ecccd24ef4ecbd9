"""Part 2: transport figures, each link or transport run next to the others per repetition."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .figures import (
    connect_time,
    fmt,
    fmt_ratio,
    log_times,
    markdown_table,
    median,
    ratios,
    run_reports,
    summarize_ratios,
)
from .processes import MPC_NET, ROOT, TCP, Finished, free_base_port, progress, run_process


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
        """Launch connect.py with m parties; the figures come from every party's MPyC log
        lines (and mpc-net's own from its parties' run reports)."""
        logs = Path(tempfile.mkdtemp(prefix=f"connect-{variant}-{parties}-", dir=self.workdir))
        script = _helper("connect.py")
        if variant == TCP:
            # MPyC writes the output of parties 1..m-1 to party{m}_{i}.log in the working
            # directory with --output-file (otherwise to /dev/null).
            command = [sys.executable, script, "-M", str(parties), "-B",
                       str(free_base_port(parties)), "--output-file"]
            files = [logs / f"party{parties}_{i}.log" for i in range(1, parties)]
        else:
            command = [sys.executable, "-m", "mpc_net", "run", "--log-dir", str(logs),
                       "--stats-json", str(logs / "run.json"), script, "-M", str(parties)]
            files = [logs / f"party{i}.log" for i in range(1, parties)]
        finished = run_process(command, logs, self.options.timeout)
        if not finished.ok:
            self.failures.append(f"connect {variant} m={parties}: {finished.failure()}")
            return None
        mesh_s = None
        if variant == MPC_NET:
            try:
                mesh_s = connect_time(run_reports(logs / "run.json", parties))
            except ValueError as exc:
                self.failures.append(f"connect {variant} m={parties}: {exc}")
                return None
        texts = [finished.stdout + finished.stderr] + [f.read_text() for f in files]
        figures = connect_figures(finished, texts, mesh_s)
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


def connect_figures(finished: Finished, texts: list[str], mesh_s: float | None) -> dict | None:
    times = [log_times(text) for text in texts]
    if any(start is None or connected is None for start, connected in times):
        return None
    starts = [s for s, _ in times]
    connected = [c for _, c in times]
    return {
        # From the last party's "Start MPyC runtime" until every party is connected: the cost
        # of connecting once everyone is there.
        "after_last_start_s": max(connected) - max(starts),
        # Each party's Start -> connected, the largest (includes waiting for later parties).
        "max_party_s": max(c - s for s, c in times),
        # From launching the command until every party is connected.
        "launch_s": max(connected) - finished.launched,
        "mesh_s": mesh_s,  # mpc-net's own figure (run reports), the largest
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


def per_rep(runs: dict[str, dict], a: str, b: str, key: str, invert: bool = False) -> dict | None:
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
            rows.append([link, fmt(med.get("rtt_us"), 0), fmt_ratio(per_rep(pp, link, TCP,
                         "rtt_us")), fmt_ratio(per_rep(pp, link, "udp", "rtt_us")),
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
                     fmt_ratio(per_rep(r, "rtc", TCP, key, invert=True)),
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



def run_transport(options: argparse.Namespace, workdir: Path, report: dict) -> bool:
    """Part 2: run, print the tables, and add the figures to `report`; whether all went well."""
    bench = TransportBench(options, workdir)
    ok = bench.run()
    report["transport"] = bench.results()
    report["transport_failures"] = bench.failures
    for table in transport_tables(report["transport"]):
        print("\n" + table)
    return ok
