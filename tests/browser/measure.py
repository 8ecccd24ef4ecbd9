"""Measure browser parties: how long a page takes to become ready, and how long demos take with
three browser parties against three native ones and MPyC's own TCP.

    python tests/browser/measure.py [--runs N] [--page-load-only] [--profile DEMO]
                                    [--start snapshot|afresh] [--firefox] [--ping-pong]

It uses the browser tests' set-up (bundle, `mpc-net web`, Debian's Chromium, a loopback-only
namespace where possible) and prints what a first page load fetches (with the bundle's gzip
copies and without them) and two tables of times. Times are MPyC's own "elapsed time" of party 0
(from all parties connected to shutdown), medians over the runs; ratios matter more than
absolute times on a shared machine. The same three pages run every demo and run in turn, so a
page's first run of MPyC's code is also WebAssembly's first (V8 compiles a function lazily, on
its first call, and optimizes it once hot): the demos' table shows each run's time too. The
first-load table takes turns with pages that restore the bundle's memory snapshot and pages that
start Python afresh (`snapshot=off`); `--start` says which the demo runs use.

`--profile DEMO` runs DEMO once in three browsers with Chromium's sampling profiler (a DevTools
session) on party 0 and prints where that party's time went: the heaviest functions by their own
time, and the totals of WebAssembly (Python), JavaScript, the browser's own work and idle.

`--ping-pong` times one MPyC round trip (pingpong.py: a small message from party 0 to party 1
and back) between two pages, a page and a native party, and two native parties, beside a data
channel's own round trip between two pages in JavaScript alone (no Python); with a page as party
0, also the CPU time of its main thread per round trip (steadier than round trips under load).
With `--trace`, one ping-pong of a page with a native party runs under Chromium's tracing
instead, and a table shows what the page's main thread ran per message it received: the tasks
by where they were posted from (the data channel's message event, the loop's MessagePort
messages, frames), and inside them Python's microtasks and `send()` (main_thread.py).

`--connect` times what people wait for while their parties connect (connecting.py): from the
last party's Join (the last page's click, or the last native party's start) to all parties
connected, for three pages (just loaded, and running again) and three native parties taking
turns (and a baseline's pages), in a run of the first of `--demos`; then where the last round's
time went, step by step, in each page and each native party.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent)]

from nat.topology import Sandbox, SandboxError  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from browser import connecting, main_thread  # noqa: E402
from browser.conftest import (  # noqa: E402
    CHROMIUM,
    FLAGS,
    Loopback,
    Natives,
    WebServer,
    chromium_launcher,
)
from browser.firefox import Firefox, install_driver  # noqa: E402
from browser.party_page import READY, PartyPage  # noqa: E402

from helpers import DEMOS, ROOT, free_port  # noqa: E402

DEMO_ARGS = {"auction": [], "stats": [], "sort": [], "secretsanta": [], "comparisons": ["200"]}
READY_SECONDS = 300  # generous: three pages at once on a busy machine take minutes
# Chromium (156) opens each new window, here each fresh browser context, with the omnibox's
# popup as a page of its own (chrome://omnibox-popup.top-chrome): about 1.2 s of CPU per window,
# beside the page's load. A person's browser did that when its window opened, not while the
# page loads; so these Chromiums have no such popup, and a page's time is the page's.
# Caveat: Playwright passes a --disable-features list of its own (HTTPS upgrades, start-up
# queries to search and time services, ...) and Chromium appears to keep only the last such
# switch: with this one, an idle Chromium tried its resolver 32 times in 20 s against 24 without
# (strace). Nothing beyond loopback answers here; the suite's Chromiums (conftest FLAGS) keep
# Playwright's list. Merging the two lists is left to do.
MEASURE_FLAGS = [*FLAGS, "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup,"
                         "WebUIOmniboxFullPopup"]
_ELAPSED = re.compile(r"Stop MPyC -- elapsed time: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_CONNECTED = re.compile(r"connected to all \d+ peers in ([\d.]+) s")


def elapsed(text: str) -> float:
    h, m, s = _ELAPSED.search(text).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


def connected(text: str) -> float:
    return float(_CONNECTED.search(text).group(1))


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}"


def browser_run(pages: list[PartyPage], roster: str, demo: str, room: str) -> tuple[float, float]:
    value = DEMO_ARGS[demo][0] if DEMO_ARGS[demo] else ""
    for i, page in enumerate(pages):
        page.join(room, i, 3, roster, demo, value)
    for page in pages:
        assert page.wait_finished() == "done", page.error
    log = pages[0].log.split(f"joined room '{room}'")[1]
    return elapsed(log), connected(log)


def native_run(natives: Natives, url: str, roster: Path, demo: str, room: str,
               ) -> tuple[float, float]:
    procs = [natives.start(demo, i, i, room, url, roster, *DEMO_ARGS[demo]) for i in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs[0][1]
    return elapsed(outputs[0][0]), connected(outputs[0][1])


def tcp_run(demo: str) -> float:
    done = subprocess.run([sys.executable, str(DEMOS / f"{demo}.py"), *DEMO_ARGS[demo], "-M3",
                           f"--base-port={free_port()}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    return elapsed(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3,
                        help="runs per demo, and rounds of three pages loading at once "
                             "(default 3)")
    parser.add_argument("--page-load-only", action="store_true",
                        help="only what a first page load fetches, and how long each step "
                             "takes, alone and three at once")
    parser.add_argument("--demos", metavar="NAMES", default=",".join(DEMO_ARGS),
                        help="comma-separated demos to time (default all)")
    parser.add_argument("--no-page-load", action="store_true",
                        help="skip the first-page-load table")
    parser.add_argument("--profile", metavar="DEMO", choices=DEMO_ARGS,
                        help="profile party 0 of one run of DEMO instead of timing")
    parser.add_argument("--firefox", action="store_true",
                        help="time Debian's firefox-esr instead of Chromium (page ready and "
                             "demos; the first-load table and the profile are Chromium's)")
    parser.add_argument("--ping-pong", action="store_true",
                        help="time one round trip: JavaScript alone, and MPyC between pages, "
                             "a page and a native party, and native parties")
    parser.add_argument("--trace", action="store_true",
                        help="with --ping-pong: trace a page's ping-pong with a native party "
                             "(Chromium's trace events) and show where the page's main thread "
                             "spends its time per message received")
    parser.add_argument("--connect", action="store_true",
                        help="time connecting as people wait for it: pages and native parties "
                             "in turn, and where a page's time goes")
    parser.add_argument("--baseline", metavar="CHECKOUT", type=Path,
                        help="also time the bundle of another checkout of mpc-net (e.g. "
                             "`git archive` of an older commit, unpacked) in the page loads, "
                             "the demos' table (Chromium's or Firefox's) and --ping-pong, "
                             "taking turns")
    parser.add_argument("--start", choices=STARTS,
                        help="how the pages start Python: in the demo runs (default snapshot), "
                             "and in the page loads' rounds of three (default both in turn)")
    options = parser.parse_args()
    starts = [options.start] if options.start else list(STARTS)
    options.start = options.start or "snapshot"
    if options.firefox and (options.profile or options.page_load_only or options.ping_pong):
        parser.error("--profile, --page-load-only and --ping-pong are for Chromium only")
    if options.trace and not options.ping_pong:
        parser.error("--trace goes with --ping-pong")
    if options.baseline and options.profile:
        parser.error("--baseline goes with the page loads, the demos' table and --ping-pong")
    unknown = set(options.demos.split(",")) - DEMO_ARGS.keys()
    if unknown:
        parser.error(f"unknown demo {', '.join(sorted(unknown))}; the demos are "
                     f"{', '.join(DEMO_ARGS)}")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "dist"
        subprocess.run([sys.executable, str(ROOT / "wasm" / "build.py"), "--out", str(bundle)],
                       check=True, capture_output=True)
        try:
            sandbox = Sandbox.start()
            sandbox.run("ip", "link", "set", "lo", "up")
        except (SandboxError, OSError):
            sandbox = None
        loopback = Loopback(sandbox)
        plain = Path(tmp) / "plain"  # the same bundle as before it had gzip copies
        shutil.copytree(bundle, plain, ignore=shutil.ignore_patterns("*.gz"))
        servers = {"gzip": WebServer(loopback, bundle, "--program", PING_PONG),
                   "none": WebServer(loopback, plain)}
        server = servers["gzip"]
        natives = Natives(Path(tmp), loopback, 3)
        baseline = {}
        if options.baseline:
            subprocess.run([sys.executable, str(options.baseline / "wasm" / "build.py"), "--out",
                            str(Path(tmp) / "baseline")], check=True, capture_output=True)
            servers["baseline"] = WebServer(loopback, Path(tmp) / "baseline", "--program",
                                            PING_PONG)
            baseline = {" (baseline)": servers["baseline"]}
        executable = chromium_launcher(loopback.command(str(CHROMIUM)), Path(tmp))
        try:
            if options.firefox:
                install_driver()
                firefox = Firefox(loopback)
                try:
                    if options.connect:
                        connect_times(firefox, {"": server, **baseline}, natives, options.runs,
                                      options.demos.split(",")[0], STARTS[options.start])
                        return 0
                    measure(firefox, server, natives, options.runs, options.demos.split(","),
                            STARTS[options.start], servers.get("baseline"))
                finally:
                    firefox.close()
                return 0
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(executable),
                                                     args=MEASURE_FLAGS)
                if options.profile:
                    profile(browser, server, natives, options.profile)
                elif options.connect:
                    connect_times(browser, {"": server, **baseline}, natives, options.runs,
                                  options.demos.split(",")[0], STARTS[options.start])
                    return 0
                elif options.ping_pong and options.trace:
                    trace_ping_pong(browser, server, natives, STARTS[options.start])
                elif options.ping_pong:
                    ping_pongs(browser, {"": server, **baseline}, natives, options.runs,
                               STARTS[options.start])
                elif not options.no_page_load:
                    page_loads(browser, servers, options.runs,
                               WarmProfiles(playwright, executable, Path(tmp)), starts)
                if not (options.page_load_only or options.profile or options.ping_pong):
                    measure(browser, server, natives, options.runs, options.demos.split(","),
                            STARTS[options.start], servers.get("baseline"))
                browser.close()
        finally:
            for each in servers.values():
                each.close()
            if sandbox is not None:
                sandbox.close()
    return 0


# A modest home connection, for the page-load time over a network rather than loopback.
NETWORK = {"offline": False, "latency": 20, "downloadThroughput": 10e6 / 8,
           "uploadThroughput": 10e6 / 8}


# The page's own clock (window.mpcNet.timings), in the order a load passes them.
PHASES = {"bundle": "bundle.json", "pyodide": "Pyodide started", "wheels": "wheels' files written",
          "imported": "mpc_net imported", "ready": "key loaded, ready"}


def phases(page) -> str:
    """How long each step of a load took, in seconds."""
    timings = page.evaluate("window.mpcNet.timings")
    marks = [0.0, *(timings[name] / 1000 for name in PHASES)]
    return ", ".join(f"{label} {b - a:.2f}"
                     for label, a, b in zip(PHASES.values(), marks[:-1], marks[1:], strict=True))


# A page restores the bundle's memory snapshot unless its link says snapshot=off.
STARTS = {"snapshot": "", "afresh": "?snapshot=off"}


def page_load(browser, url: str, network: dict | None,
              ) -> tuple[int, int, int, float, int, str]:
    """A first load in a fresh context: requests, bytes received (headers and bodies as sent),
    bytes of the files once decoded, seconds until the page is ready, how many requests
    opened a new connection, and the seconds of each step."""
    context = browser.new_context()
    page = context.new_page()
    if network:
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", network)
    requests = []
    page.on("requestfinished", lambda request: requests.append(request))
    page.goto(url)
    page.wait_for_selector(READY, state="attached", timeout=300_000)
    ready = page.evaluate("window.mpcNet.timings.ready") / 1000
    steps = phases(page)
    # The page's own count: the inspector does not keep bodies as large as the snapshot.
    decoded = page.evaluate("performance.getEntriesByType('navigation').concat("
                            "performance.getEntriesByType('resource'))"
                            ".reduce((sum, entry) => sum + entry.decodedBodySize, 0)")
    received = connections = 0
    for request in requests:
        sizes = request.sizes()
        received += sizes["responseHeadersSize"] + sizes["responseBodySize"]
        connections += request.timing["connectStart"] >= 0  # -1: a connection used again
    context.close()
    return len(requests), received, decoded, ready, connections, steps


# Times WebAssembly.instantiateStreaming in the page (Pyodide compiles its WebAssembly with it):
# [start, end] in ms since navigation start, in window.wasmTimes. A script of the tools, so
# not under the page's Content-Security-Policy.
TIME_WASM = """(() => {
  const instantiate = WebAssembly.instantiateStreaming;
  window.wasmTimes = [];
  WebAssembly.instantiateStreaming = async (...args) => {
    const start = performance.now();
    const result = await instantiate.apply(WebAssembly, args);
    window.wasmTimes.push([start, performance.now()]);
    return result;
  };
})()"""


def compiled(page) -> str:
    """When the page's WebAssembly was compiled, and how long it took."""
    times = page.evaluate("window.wasmTimes")
    return ", ".join(f"instantiateStreaming {a / 1000:.2f} to {b / 1000:.2f}" for a, b in times)


class WarmProfiles:
    """Browsers that loaded the page before: a Chromium profile on disk per party (HTTP cache
    and code cache, which Playwright's fresh contexts lack, being off the record), each warmed
    by one load of the page, then all three loading at once, as three people who used the page
    before."""

    def __init__(self, playwright, executable: Path, tmp: Path) -> None:
        self.playwright, self.executable, self.tmp = playwright, executable, tmp

    def launch(self, key: str, party: int, origin: str, query: str):
        """The party's browser (its profile warmed first if new) and a blank page in it."""
        directory = self.tmp / f"profile-{key}-{party}"
        new = not directory.exists()
        context = self.playwright.chromium.launch_persistent_context(
            str(directory), executable_path=str(self.executable), args=MEASURE_FLAGS)
        context.add_init_script(TIME_WASM)
        page = context.pages[0] if context.pages else context.new_page()
        if new:
            page.goto(f"{origin}/{query}")
            page.wait_for_selector(READY, state="attached", timeout=READY_SECONDS * 1000)
            page.goto("about:blank")
        return context, page

    def load_three(self, key: str, origin: str, query: str) -> tuple[list[float], list[str]]:
        """Three warm browsers loading the page at once: each page's ready time, and lines
        with each one's steps."""
        launched = [self.launch(key, party, origin, query) for party in range(3)]
        for _, page in launched:
            page.goto(f"{origin}/{query}", wait_until="commit")
        readies, lines = [], []
        for context, page in launched:
            page.wait_for_selector(READY, state="attached", timeout=READY_SECONDS * 1000)
            readies.append(page.evaluate("window.mpcNet.timings.ready") / 1000)
            lines.append(f"ready {readies[-1]:.2f}: {phases(page)}; {compiled(page)}")
            context.close()
        cache = self.tmp / f"profile-{key}-0" / "Default" / "Code Cache" / "wasm"
        stored = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        lines.append(f"(party 0's profile holds {stored / 1e6:.1f} MB of compiled WebAssembly)")
        return readies, lines


def page_loads(browser, servers: dict[str, WebServer], runs: int, warm: WarmProfiles,
               starts: list[str]) -> None:
    """First loads with and without the memory snapshot, taking turns, then `runs` rounds of
    three pages loading at once, starting Python as `starts` say, in turn: three fresh browser
    contexts, and three browsers that loaded the page before."""
    print("first page load (all files the page fetches):")
    print("  encoding, start   requests  connections  received bytes  decoded bytes  "
          "ready on loopback  ready at 10 Mbit/s, 20 ms")
    steps = {}
    for name, server in servers.items():
        for start, query in STARTS.items():
            label = f"{name}, {start}"
            count, received, decoded, loopback, connections, steps[label] = page_load(
                browser, f"{server.origin}/{query}", None)
            network = page_load(browser, f"{server.origin}/{query}", NETWORK)[3]
            print(f"  {label:<16}  {count:>8}  {connections:>11}  {received:>14,}  "
                  f"{decoded:>13,}  {loopback:>15.2f} s  {network:>23.2f} s")
    print("steps of those loads on loopback, seconds:")
    for label, text in steps.items():
        print(f"  {label:<16}  {text}")
    # The baseline's bundle (--baseline) is gzipped as well.
    rounds = {name: server for name, server in servers.items() if name != "none"}
    table: dict[str, list[str]] = {}  # the slowest of the three in each round, and the load
    for round_ in range(runs):
        for start, (name, server) in itertools.product(starts, rounds.items()):
            query = STARTS[start]
            load = os.getloadavg()[0]
            pages = [PartyPage(browser, server.origin) for _ in range(3)]
            for page in pages:
                page.tab.context.add_init_script(TIME_WASM)
                page.open(query)
            print(f"three fresh contexts loading at once ({name}, {start}, round {round_ + 1}), "
                  f"seconds (load average {load:.1f}):")
            for page in pages:
                page.wait_ready(READY_SECONDS)
                print(f"  ready {page.ready_seconds:.2f}: {phases(page.page)}; "
                      f"{compiled(page.page)}")
                page.close()
            table.setdefault(f"fresh contexts, {name}, {start}", []).append(
                f"{max(page.ready_seconds for page in pages):.2f} [{load:.1f}]")
            load = os.getloadavg()[0]
            print(f"three browsers that loaded the page before, at once ({name}, {start}, "
                  f"round {round_ + 1}), seconds (load average {load:.1f}):")
            readies, lines = warm.load_three(f"{name}-{start}", server.origin, query)
            for line in lines:
                print(f"  {line}")
            table.setdefault(f"loaded before, {name}, {start}", []).append(
                f"{max(readies):.2f} [{load:.1f}]")
    print("three pages loading at once: the last one ready, seconds [load average before]:")
    for label, values in sorted(table.items()):
        print(f"  {label:<34}  {', '.join(values)}")
    print()


def ready_pages(browser, server: WebServer, natives: Natives, query: str = "",
                ) -> tuple[list[PartyPage], str]:
    """Three loaded pages and the roster of their keys."""
    pages = [PartyPage(browser, server.origin) for _ in range(3)]
    for page in pages:
        page.open(query)
    for page in pages:
        page.wait_ready(READY_SECONDS)
    roster = natives.roster([page.public_key for page in pages], "measure-browsers")
    return pages, roster.read_text()


def profile(browser, server: WebServer, natives: Natives, demo: str) -> None:
    pages, roster = ready_pages(browser, server, natives)
    browser_run(pages, roster, demo, f"warm-{demo}-{time.time()}")  # compiled and cached
    cdp = pages[0].tab.context.new_cdp_session(pages[0].page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": 200})  # microseconds
    cdp.send("Profiler.start")
    seconds, _ = browser_run(pages, roster, demo, f"profile-{demo}-{time.time()}")
    samples = cdp.send("Profiler.stop")["profile"]
    for page in pages:
        page.close()
    print(f"{demo}: {seconds:.2f} s in three browsers, party 0 profiled")
    print_profile(samples)


def print_profile(profile: dict, top: int = 30) -> None:
    """Self time per function, and per kind: WebAssembly, JavaScript, the browser's own."""
    nodes = {node["id"]: node["callFrame"] for node in profile["nodes"]}
    spent: dict[int, float] = {}
    for node, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        spent[node] = spent.get(node, 0.0) + delta / 1e6
    by_function: dict[tuple[str, str], float] = {}
    by_kind: dict[str, float] = {}
    for node, seconds in spent.items():
        frame = nodes[node]
        name = frame["functionName"] or "(anonymous)"
        url = frame["url"].rsplit("/", 1)[-1]
        kind = ("WebAssembly" if url.startswith("wasm") or url.endswith(".wasm")
                else name if name.startswith("(") else "JavaScript")
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
        by_function[name, url] = by_function.get((name, url), 0.0) + seconds
    total = sum(by_kind.values())
    print("  " + ", ".join(f"{kind} {seconds:.2f} s ({seconds / total:.0%})"
                           for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1])))
    for (name, url), seconds in sorted(by_function.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {seconds:7.3f} s  {seconds / total:4.0%}  {name}  {url}")


PING_PONG = HERE / "pingpong.py"
_ROUND_TRIP = re.compile(r"round trip: median ([\d.]+) ms, mean ([\d.]+) ms")

# A data channel between two pages, in JavaScript alone: `offer` in one page, `answer` in the
# other, `connect` back in the first; then `pingPong` there times round trips of 20 bytes,
# which the other page sends back from its message handler.
JS_CHANNEL = """(() => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const channel = pc.createDataChannel("ping", { negotiated: true, id: 0 });
  channel.binaryType = "arraybuffer";
  const opened = new Promise((resolve) => { channel.onopen = resolve; });
  const gathered = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  const described = async () => { await gathered; return pc.localDescription.toJSON(); };
  window.pingChannel = {
    offer: async () => { await pc.setLocalDescription(); return described(); },
    answer: async (offer) => {
      await pc.setRemoteDescription(offer);
      await pc.setLocalDescription();
      channel.onmessage = (event) => channel.send(event.data);
      return described();
    },
    connect: async (answer) => { await pc.setRemoteDescription(answer); await opened; },
    pingPong: async (rounds) => {
      const payload = new Uint8Array(20);
      const times = [];
      for (let k = 0; k < rounds; k++) {
        const start = performance.now();
        await new Promise((resolve) => { channel.onmessage = resolve; channel.send(payload); });
        times.push(performance.now() - start);
      }
      pc.close();
      return times;
    },
  };
})()"""


def js_ping_pong(pages: list[PartyPage], rounds: int) -> float:
    """The median round trip in milliseconds of a data channel between two pages, with no
    Python on the way (after as many round trips to warm up)."""
    first, second = (page.page for page in pages[:2])
    for page in (first, second):
        page.evaluate(JS_CHANNEL)
    offer = first.evaluate("window.pingChannel.offer()")
    answer = second.evaluate("(offer) => window.pingChannel.answer(offer)", offer)
    first.evaluate("(answer) => window.pingChannel.connect(answer)", answer)
    times = first.evaluate("(rounds) => window.pingChannel.pingPong(rounds)", 2 * rounds)
    return statistics.median(times[rounds:])


class PingPongs:
    """Ping-pong runs with the pages of one server: two pages, a page and a native party, and
    two native parties, each in a room of two."""

    def __init__(self, browser, server: WebServer, natives: Natives, query: str) -> None:
        self.server, self.natives, self.query = server, natives, query
        self.pages, _ = ready_pages(browser, server, natives, query)
        keys = {"page": [page.public_key for page in self.pages[:2]],
                "native": natives.public_keys[:2]}
        port = server.origin.rpartition(":")[2]  # a roster file per server's pages
        self.rosters = {pair: natives.roster([keys[pair[0]][0], keys[pair[1]][1]],
                                             "-".join((*pair, port)))
                        for pair in (("page", "page"), ("page", "native"), ("native", "native"))}
        # Party 0's page's main thread (where Python runs): its CPU time, steadier than round
        # trips on a busy machine; the renderer's other threads compile WebAssembly meanwhile.
        self.renderer = self.pages[0].tab.context.new_cdp_session(self.pages[0].page)
        self.renderer.send("Performance.enable")

    def cpu_seconds(self) -> float:
        """The CPU time party 0's page's main thread has taken so far."""
        metrics = self.renderer.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "ThreadTime")

    def run(self, rounds: int) -> dict[str, str]:
        """Each setting's median (mean) round trip in milliseconds, and with a page as party 0
        its main thread's CPU time per round trip (the run's whole: connecting, warming up and
        the end included)."""
        results = {"JavaScript only, page to page": f"{js_ping_pong(self.pages, rounds):.3f}"}
        for zero, one in self.rosters:
            results[f"MPyC, {zero} to {one}"] = self.run_pair(rounds, zero, one)
        return results

    def run_pair(self, rounds: int, zero: str, one: str) -> str:
        """One run of party 0 of kind `zero` ("page" or "native") with party 1 of kind `one`:
        its median (mean) round trip, and a page's main thread's CPU time per round trip."""
        path = self.rosters[zero, one]
        room = f"ping-{zero}-{one}-{time.time()}"
        kinds = (zero, one)
        procs = [self.natives.start(PING_PONG, i, i, room, self.server.url, path,
                                    str(rounds), parties=2)
                 for i, kind in enumerate(kinds) if kind == "native"]
        pages = [self.pages[i] for i, kind in enumerate(kinds) if kind == "page"]
        for page in pages:
            page.open(self.query)
            page.wait_ready(READY_SECONDS)
        cpu = self.cpu_seconds()
        for i, page in enumerate(pages):
            page.join(room, i, 2, path.read_text(), PING_PONG.name)
        for page in pages:
            assert page.wait_finished() == "done", page.error
        cpu = (self.cpu_seconds() - cpu) / (2 * rounds) * 1000
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
        text = "\n".join(pages[0].outputs) if pages else outputs[0]
        median_ms, mean_ms = _ROUND_TRIP.search(text).groups()
        return f"{median_ms} ({mean_ms})" + (f" cpu {cpu:.2f}" if pages else "")

    def close(self) -> None:
        for page in self.pages:
            page.close()


def ping_pongs(browser, servers: dict[str, WebServer], natives: Natives, runs: int, query: str,
               rounds: int = 300) -> None:
    """Round trips with each server's bundle (this checkout's, and a baseline's), taking turns."""
    settings = {label: PingPongs(browser, server, natives, query)
                for label, server in servers.items()}
    print(f"one round trip (party 0 to party 1 and back, {rounds} after {rounds} to warm up), "
          "milliseconds, median (mean) over each run's round trips, and with a page as party 0 "
          "its main thread's CPU time over the run per round trip; load average before each:")
    results: dict[str, list[str]] = {}
    for _ in range(runs):
        for label, setting in settings.items():
            load = os.getloadavg()[0]
            for name, value in setting.run(rounds).items():
                results.setdefault(f"{name}{label}", []).append(f"{value} [{load:.1f}]")
    for label, values in results.items():
        print(f"  {label:<42}  {', '.join(values)}")
    for setting in settings.values():
        setting.close()


def trace_ping_pong(browser, server: WebServer, natives: Natives, query: str,
                    rounds: int = 300) -> None:
    """A page's ping-pong with a native party under Chromium's tracing, and where the page's
    main thread spent its time per message received (main_thread.py)."""
    setting = PingPongs(browser, server, natives, query)
    browser.start_tracing(page=setting.pages[0].page, categories=main_thread.CATEGORIES)
    try:
        result = setting.run_pair(rounds, "page", "native")
    finally:
        trace = browser.stop_tracing()
        setting.close()
    print(f"a page and a native party, traced: round trip {result} ms "
          f"(load average {os.getloadavg()[0]:.1f}); the page's main thread:")
    for line in main_thread.per_message(trace):
        print(f"  {line}")


def traced_pages(browser, server: WebServer, natives: Natives, query: str,
                 ) -> tuple[list[PartyPage], str]:
    """Three loaded pages that trace their connecting steps, and the roster of their keys."""
    pages = [PartyPage(browser, server.origin) for _ in range(3)]
    for page in pages:
        page.page.add_init_script(connecting.TRACE)
        page.open(query)
    for page in pages:
        page.wait_ready(READY_SECONDS)
    roster = natives.roster([page.public_key for page in pages], f"connect-{id(pages)}")
    return pages, roster.read_text()


def connect_pages(pages: list[PartyPage], roster: str, demo: str, room: str,
                  ) -> tuple[float, list[list[tuple[float, str]]]]:
    """Three pages joining `room` one after another: seconds from the last Join to all
    connected, and each page's steps (seconds after the last Join)."""
    for page in pages:
        page.page.evaluate("window.connectTrace.length = 0")
    browser_run(pages, roster, demo, room)
    traces = [page.page.evaluate("window.connectTrace") for page in pages]
    joins, connected = zip(*map(connecting.page_times, traces), strict=True)
    return (connecting.waited(joins, connected),
            [connecting.steps(trace, max(joins)) for trace in traces])


def connect_natives(natives: Natives, url: str, roster: Path, demo: str, room: str,
                    ) -> tuple[float, list[list[tuple[float, str]]]]:
    """Three native parties started one after another: seconds from the last start to all
    connected, and each one's log lines with the time each came (after the last start)."""
    starts, logs = [], []
    for i in range(3):
        starts.append(time.time())
        proc = natives.start(demo, i, i, room, url, roster, *DEMO_ARGS[demo])
        logs.append((proc, connecting.TimedLines(proc.stderr)))
    for proc, log in logs:
        assert proc.wait(timeout=300) == 0, log.text()
        proc.stdout.read()
    connected = [log.first("connected to all") for _, log in logs]
    return (connecting.waited(starts, connected),
            [[(at - max(starts), line.strip()) for at, line in log.lines] for _, log in logs])


def connect_times(browser, servers: dict[str, WebServer], natives: Natives, runs: int, demo: str,
                  query: str) -> None:
    """`runs` rounds of each server's pages and native parties connecting, taking turns: the
    pages once just loaded (as people mostly run them) and once more."""
    settings = {label: traced_pages(browser, server, natives, query)
                for label, server in servers.items()}
    url = next(iter(servers.values())).url
    native_roster = natives.roster(natives.public_keys, "measure-natives")
    waits: dict[str, list[float]] = {}
    loads, shown = [], {}  # the last round's steps
    for run in range(runs):
        loads.append(os.getloadavg()[0])
        room = f"connect-{demo}-{run}-{int(time.time())}"
        for k, (label, (pages, roster)) in enumerate(settings.items()):
            for page in pages:
                page.open(query)
            for page in pages:
                page.wait_ready(READY_SECONDS)
            for again in ("first run after load", "run again"):
                row = f"pages{label}, {again}"
                wait, shown[row] = connect_pages(pages, roster, demo, f"{room}-{k}-{again[0]}")
                waits.setdefault(row, []).append(wait)
        wait, shown["native parties"] = connect_natives(natives, url, native_roster, demo,
                                                        f"{room}-n")
        waits.setdefault("native parties", []).append(wait)
    print(f"connecting, {demo}: from the last Join (a page's click, a native party's start) to "
          f"all parties connected, seconds (load average {min(loads):.1f}-{max(loads):.1f}):")
    for label, values in waits.items():
        print(f"  {label:<44} median {statistics.median(values):.3f}: "
              f"{', '.join(f'{v:.3f}' for v in values)}")
    print("the last round, step by step (seconds after the last Join):")
    for label, parties in shown.items():
        for i, lines in enumerate(parties):
            print(f"  {label}, party {i}:")
            for at, what in lines:
                print(f"    {at:7.3f}  {what}")
    for pages, _ in settings.values():
        for page in pages:
            page.close()


def measure(browser, server: WebServer, natives: Natives, runs: int, demos: list[str],
            query: str, baseline: WebServer | None = None) -> None:
    alone = PartyPage(browser, server.origin)
    alone.open(query)
    alone.wait_ready(READY_SECONDS)
    cold_one = alone.ready_seconds
    alone.open(query)
    alone.wait_ready(READY_SECONDS)
    warm_one = alone.ready_seconds
    alone.close()
    browsers = {"": ready_pages(browser, server, natives, query)}
    cold_three = [page.ready_seconds for page in browsers[""][0]]
    print("page ready (navigation start to Python, MPyC and the key loaded), seconds:")
    print(f"  one page, cold: {cold_one:.2f}; reloaded: {warm_one:.2f}; three pages at once, "
          f"cold: {', '.join(f'{s:.2f}' for s in cold_three)}")
    if baseline is not None:
        browsers[" (baseline)"] = ready_pages(browser, baseline, natives, query)

    native_roster = natives.roster(natives.public_keys, "measure-natives")
    print("\ndemo (3 parties)       browsers  natives  MPyC TCP  browsers/natives  "
          "connect: browsers  natives  load average  browsers' runs in turn")
    for demo in demos:
        b: dict[str, list[float]] = {label: [] for label in browsers}
        bc: dict[str, list[float]] = {label: [] for label in browsers}
        n, t, nc, load = [], [], [], []
        for run in range(runs):
            room = f"measure-{demo}-{run}-{int(time.time())}"
            load.append(os.getloadavg()[0])
            for k, (label, (pages, roster)) in enumerate(browsers.items()):
                seconds, connect = browser_run(pages, roster, demo, f"{room}b{k}")
                b[label].append(seconds)
                bc[label].append(connect)
            seconds, connect = native_run(natives, server.url, native_roster, demo, room + "n")
            n.append(seconds)
            nc.append(connect)
            t.append(tcp_run(demo))
        for label in browsers:
            ratio = statistics.median(b[label]) / statistics.median(n)
            print(f"{demo + label:<22} {median(b[label]):>8}  {median(n):>7}  {median(t):>8}  "
                  f"{ratio:>16.1f}  {median(bc[label]):>17}  {median(nc):>7}  "
                  f"{min(load):.1f}-{max(load):.1f}     "
                  f"{', '.join(f'{seconds:.2f}' for seconds in b[label])}")
    for pages, _ in browsers.values():
        for page in pages:
            page.close()


if __name__ == "__main__":
    sys.exit(main())
