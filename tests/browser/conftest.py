"""Fixtures of the browser tests: the bundle, `mpc-net web`, headless Chromium (Debian's, driven
by Playwright, never `playwright install`), headless Firefox (Debian's firefox-esr, driven by
puppeteer-core: firefox.py) and three browser parties in each.

The browsers, the web server and the native parties all run in one network namespace that has only
a loopback interface (the NAT tests' sandbox), so no packet can go anywhere else and ICE finds
127.0.0.1 only. Where no namespace can be made the tests run on the machine's own loopback.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import pytest
from nat.topology import Sandbox, SandboxError

from mpc_net.bundle import offline_ready

from helpers import DEMOS, ROOT, free_base_port, mpc_net, program_lines

# Programs of our own that together cover the styles MPyC programs are written in; `web`
# offers them as `mpc-net web --program FILE` does.
PROGRAMS = ROOT / "tests" / "programs"
SERVED = ("ledger.py", "ranks.py")

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # With camera and microphone permission (PartyPage grants it), 127.0.0.1 candidates.
         "--allow-loopback-in-peer-connection",
         # Its log on stderr, which chromium_launcher keeps: what a crashed page's report shows.
         "--enable-logging=stderr"]
# Each launched Chromium's log, and lines of it that say nothing about a crash.
CHROMIUM_LOGS: list[Path] = []
ROUTINE = re.compile(r"dtls_transport\.cc|dcsctp_transport\.cc|dbus|mdns_responder")

WEB_SERVER = ("import argparse, sys; from mpc_net import web; p = argparse.ArgumentParser(); "
              "web.add_arguments(p); sys.exit(web.run(p.parse_args()))")


def chromium_launcher(command: list[str], directory: Path) -> Path:
    """A script that runs Chromium as `command` (in the namespace where the test wants it), with
    its log kept in `directory`."""
    log = directory / "chromium.log"
    CHROMIUM_LOGS.append(log)
    script = directory / "chromium"
    script.write_text(f'#!/bin/sh\nexec {shlex.join(command)} "$@" 2>>{shlex.quote(str(log))}\n')
    script.chmod(0o755)
    return script


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test that failed on a crashed page reports the end of each Chromium's log."""
    report = yield
    if report.failed and "Target crashed" in str(report.longrepr):
        for log in CHROMIUM_LOGS:
            if log.exists():
                lines = [line for line in log.read_text(errors="replace").splitlines()
                         if not ROUTINE.search(line)]
                report.sections.append((f"end of {log}", "\n".join(lines[-40:])))
    return report


class Loopback:
    """Where the parties run: a loopback-only namespace, or (without one) this machine."""

    def __init__(self, sandbox: Sandbox | None) -> None:
        self.sandbox = sandbox

    def command(self, *argv: str, cwd: Path = ROOT) -> list[str]:
        return self.sandbox.command(*argv, cwd=cwd) if self.sandbox else list(argv)

    def popen(self, *argv: str, cwd: Path = ROOT, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(*argv, cwd=cwd), cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="session")
def loopback():
    try:
        sandbox = Sandbox.start()
        sandbox.run("ip", "link", "set", "lo", "up")
    except (SandboxError, OSError) as exc:
        print(f"browser tests on this machine's loopback (no namespace: {exc})")
        yield Loopback(None)
        return
    yield Loopback(sandbox)
    sandbox.close()


@pytest.fixture(scope="session")
def bundle(loopback, tmp_path_factory) -> Path:
    """The bundle, built with the one build command inside the loopback-only namespace: with
    the downloads cached, building needs no network (a first build fills the cache)."""
    out = tmp_path_factory.mktemp("bundle") / "dist"
    command = [sys.executable, str(ROOT / "wasm" / "build.py"), "--out", str(out)]
    if not offline_ready():
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    done = subprocess.run(loopback.command(*command), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return out


class WebServer:
    """`mpc-net web --port 0`; `origin` serves the pages, `url` is the room server."""

    def __init__(self, loopback: Loopback, bundle: Path, *options: str | Path) -> None:
        self.proc = loopback.popen(sys.executable, "-c", WEB_SERVER, "--port", "0",
                                   "--bundle", str(bundle), *map(str, options))
        line = self.proc.stderr.readline()
        match = re.search(r"pages on (https?://\S+)/ and the room server on (wss?://\S+)", line)
        assert match, f"mpc-net web did not start: {line!r}"
        self.origin, self.url = match.groups()
        # Read on: a server whose log fills an unread pipe stops answering (it blocks writing).
        self.log: deque[str] = deque(maxlen=200)
        threading.Thread(target=self.log.extend, args=(self.proc.stderr,), daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def web(loopback, bundle):
    server = WebServer(loopback, bundle,
                       *(option for name in SERVED for option in ("--program", PROGRAMS / name)))
    yield server
    server.close()


# Playwright's sync API keeps an event loop running in this thread, which breaks asyncio tests
# (pytest-asyncio cannot start a loop of its own while it runs). So it lives for this package
# only, and the package's asyncio tests run before the others (pytest_collection_modifyitems):
# one Playwright and one Chromium, with three party pages loaded once, serve every module.
@pytest.fixture(scope="package")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [k for k, item in enumerate(items) if item.path.is_relative_to(here)]
    if ours and ours == list(range(ours[0], ours[-1] + 1)):  # one block, as collected
        block = items[ours[0]:ours[-1] + 1]
        # Stable: each group keeps its order.
        block.sort(key=lambda item: not inspect.iscoroutinefunction(getattr(item, "obj", None)))
        items[ours[0]:ours[-1] + 1] = block


@pytest.fixture(scope="package")
def browser(loopback, playwright, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium package (tests/run.sh installs it)")
    executable = chromium_launcher(loopback.command(str(CHROMIUM)),
                                   tmp_path_factory.mktemp("chromium"))
    chromium = playwright.chromium.launch(executable_path=str(executable), args=FLAGS)
    yield chromium
    chromium.close()


# Session scope (unlike Chromium's): the driver is a process of its own, with no event loop in
# this thread, so one Firefox serves every module.
@pytest.fixture(scope="session")
def firefox(loopback):
    from .firefox import FIREFOX, Firefox, install_driver

    if not FIREFOX.exists():
        pytest.fail("needs Debian's firefox-esr package (tests/run.sh installs it)")
    install_driver()
    driver = Firefox(loopback)
    yield driver
    driver.close()


def three_parties(browser, origin: str):
    """Three browser parties, each in its own browser context (so with its own key), loaded
    once and used by test after test, as a person would run one computation after another."""
    from .party_page import PartyPage

    pages = [PartyPage(browser, origin) for _ in range(3)]
    for page in pages:
        page.open()
    for page in pages:
        page.wait_ready()
    yield pages
    for page in pages:
        page.close()


@pytest.fixture(scope="package")
def party_pages(browser, web):
    yield from three_parties(browser, web.origin)


@pytest.fixture(scope="module")
def firefox_pages(firefox, web):
    yield from three_parties(firefox, web.origin)


def idle(pages):
    """The pages, none of them still in an earlier test's run."""
    for page in pages:
        page.make_idle()
    return pages


@pytest.fixture
def parties(party_pages):
    return idle(party_pages)


@pytest.fixture
def firefox_parties(firefox_pages):
    return idle(firefox_pages)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


class Natives:
    """Identity keys of native parties, and `mpc-net run -I i` processes that use them."""

    def __init__(self, directory: Path, loopback: Loopback, count: int) -> None:
        self.loopback = loopback
        self.directory = directory
        self.key_files = [directory / f"native{i}.key" for i in range(count)]
        self.public_keys = []
        for key_file in self.key_files:
            done = mpc_net("keygen", "--out", str(key_file))
            assert done.returncode == 0, done.stderr
            self.public_keys.append(done.stdout.strip())

    def roster(self, keys: list[str], name: str) -> Path:
        """A roster file of `keys` in party order, made with `mpc-net roster`."""
        path = self.directory / f"{name}.json"
        done = mpc_net("roster", *keys, "--out", str(path), "--force")
        assert done.returncode == 0, done.stderr
        return path

    def start(self, demo: str | Path, index: int, key: int, room: str, url: str, roster: Path,
              *args: str, stdin: str | None = None, parties: int = 3) -> subprocess.Popen:
        """Party `index` of `parties` running demos/DEMO.py (or the program at a Path) with
        `args`, and `stdin` as its standard input, as a person gives a private input without
        putting it on a command line that `ps` shows."""
        script = demo if isinstance(demo, Path) else DEMOS / f"{demo}.py"
        proc = self.loopback.popen(
            sys.executable, "-m", "mpc_net", "run", str(script), *args,
            f"-M{parties}", "-I", str(index), "--room", room, "--signal", url, "--key",
            str(self.key_files[key]), "--roster", str(roster),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE)
        if stdin is not None:
            proc.stdin.write(stdin)  # communicate() closes it
            proc.stdin.flush()
        return proc


@pytest.fixture(scope="session")
def natives(tmp_path_factory, loopback) -> Natives:
    return Natives(tmp_path_factory.mktemp("natives"), loopback, 3)


def mpyc_tcp(demo: str, *args: str, timeout: float = 60) -> list[str]:
    """Party 0's program lines of `python demos/X.py -M3 ARGS` over MPyC's own TCP.

    On ports of our own (MPyC's default ones may be taken by another test run), and in a
    process group that is killed whole on a timeout: MPyC starts parties 1 and 2 itself.
    """
    command = [sys.executable, str(DEMOS / f"{demo}.py"), *args, "-M3",
               f"--base-port={free_base_port()}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, out + err
    return program_lines(out)


@pytest.fixture(scope="session")
def expected():
    """The program lines of an MPyC TCP run, once per demo and arguments."""
    cache: dict[tuple[str, ...], list[str]] = {}

    def lines(demo: str, *args: str) -> list[str]:
        key = (demo, *args)
        if key not in cache:
            try:
                cache[key] = mpyc_tcp(demo, *args)
            except subprocess.TimeoutExpired:  # seen on a machine loaded by other test runs
                cache[key] = mpyc_tcp(demo, *args)
            assert cache[key], "the TCP run printed nothing to compare"
        return cache[key]

    return lines
