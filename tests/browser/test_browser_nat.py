"""A browser party across NATs and outages, as native parties are (tests/nat): behind a
symmetric NAT it reaches native parties through coturn, relay-only included; with an outage
limit its run survives its network going down for seconds. The page comes over https from the
test internet's server (a page on a non-loopback address needs a secure context)."""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

pytest.importorskip("playwright")

from certificates import make_server_certificate  # noqa: E402
from nat.network import STUN_URL, Network, turn_url  # noqa: E402
from nat.topology import SERVER, tail, wait_for  # noqa: E402

from .conftest import CHROMIUM, DEMOS, FLAGS, Natives, chromium_launcher  # noqa: E402
from .party_page import PartyPage  # noqa: E402
from helpers import program_lines  # noqa: E402

WEB_PORT = 8443
_networks = itertools.count()


class BrowserNetwork:
    """A NAT test network whose party 0 is a Chromium page and the others native parties,
    with `mpc-net web` over TLS on the test internet's server."""

    def __init__(self, loopback, bundle: Path, directory: Path, kinds: list[str]) -> None:
        assert loopback.sandbox is not None, "these tests need network namespaces"
        self.net = Network(loopback.sandbox, f"bn{os.getpid()}-{next(_networks)}", kinds,
                           directory / "network")
        self.certificate = make_server_certificate(directory, SERVER)
        self.bundle = bundle
        self.natives = Natives(directory, loopback, len(kinds) - 1)
        self.origin = self.url = ""
        self._browser = None

    def start_web(self) -> None:
        proc = self.net.spawn("web", [
            sys.executable, "-m", "mpc_net", "web", "--host", SERVER, "--port", str(WEB_PORT),
            "--bundle", str(self.bundle), "--tls-certificate", str(self.certificate.certificate),
            "--tls-key", str(self.certificate.key), "-v"], self.net.topology.inet)
        err = self.net.logs["web stderr"]
        match = wait_for(lambda: proc.poll() is not None or re.search(
            r"pages on (https://\S+)/ and the room server on (wss://\S+)", err.read_text()),
            "mpc-net web to listen")
        assert proc.poll() is None, "mpc-net web exited:\n" + tail(err)
        self.origin, self.url = match.groups()

    def page(self, playwright, directory: Path, query: dict[str, str]) -> PartyPage:
        """Chromium in party 0's namespace, trusting the test certificate, with the page open
        at a link with `query`."""
        wrapper = chromium_launcher(
            self.net.sandbox.command(str(CHROMIUM), ns=self.net.sites[0].ns), directory)
        self._browser = playwright.chromium.launch(
            executable_path=str(wrapper),
            args=[*FLAGS, "--ignore-certificate-errors-spki-list="
                  + self.certificate.spki_sha256])
        page = PartyPage(self._browser, self.origin)
        page.open("?" + urlencode(query))
        page.wait_ready()
        return page

    def start_natives(self, demo: str, room: str, roster: Path, *options: str) -> None:
        for i in range(1, len(self.net.sites)):
            self.net.spawn(f"party{i}", [
                "env", f"SSL_CERT_FILE={self.certificate.authority}", sys.executable, "-m",
                "mpc_net", "run", str(DEMOS / f"{demo}.py"), "-M3", "-I", str(i), "--room",
                room, "--signal", self.url, "--key", str(self.natives.key_files[i - 1]),
                "--roster", str(roster), "-v", *options], self.net.sites[i].ns)

    def wait_natives(self, timeout: float = 120) -> list[tuple[int | None, str, str]]:
        procs = [proc for label, proc in self.net.processes if label.startswith("party")]
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - reported below as still running
                proc.kill()
                proc.wait()
        return [(proc.returncode, self.net.logs[f"party{i} stdout"].read_text(),
                 self.net.logs[f"party{i} stderr"].read_text())
                for i, proc in enumerate(procs, start=1)]

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        self.net.close()


@pytest.fixture
def browser_network(loopback, bundle, playwright, tmp_path):
    built: list[BrowserNetwork] = []

    def build(*kinds: str) -> BrowserNetwork:
        network = BrowserNetwork(loopback, bundle, tmp_path / f"n{len(built)}", list(kinds))
        built.append(network)
        return network

    yield playwright, build
    for network in built:
        print(network.net.report())  # pytest shows it if the test failed
        network.close()


def roster_of(network: BrowserNetwork, page: PartyPage) -> Path:
    return network.natives.roster([page.public_key, *network.natives.public_keys], "nat")


def test_a_browser_behind_a_symmetric_nat_relays_through_coturn_only(
        browser_network, expected, screenshots, tmp_path) -> None:
    playwright, build = browser_network
    # Party 1 has a public address, which this browser could reach without a relay; party 2
    # sits behind a symmetric NAT too, which only a relay gets through.
    network = build("symmetric", "public", "symmetric")
    network.net.start_coturn()
    network.start_web()
    page = network.page(playwright, tmp_path, {"ice": f"{STUN_URL} {turn_url('udp')}",
                                               "relay-only": "1"})
    assert page.page.is_checked("#relay-only")
    roster = roster_of(network, page)
    network.start_natives("auction", "nat-relay", roster, "--ice", STUN_URL, "--ice",
                          turn_url("udp"), "--bids", "40,95,60")
    page.join("nat-relay", 0, 3, roster.read_text(), "auction", "40")
    phase = page.wait_finished()
    natives = network.wait_natives()
    report = f"page: {phase}: {page.error}\n{page.log[-3000:]}\n" + "\n".join(
        f"--- native {i}: exit {code}\n{err[-2000:]}" for i, (code, _, err) in enumerate(natives))
    assert phase == "done", report
    wanted = expected("auction", "--bids", "40,95,60")
    assert page.outputs == wanted, report
    for code, out, _ in natives:
        assert code == 0 and program_lines(out) == wanted, report
    for party, (state, path, _) in page.peers().items():
        # Relay only: this browser offered relay candidates and nothing else, so its end of
        # every path is a relay, even to the party it could reach directly.
        assert state == "connected, authenticated" and path.startswith("relay"), (party, path)
    page.screenshot(screenshots / "browser-relay-only.png")
    assert page.problems() == []


def test_a_browser_rides_out_its_network_going_down_within_the_outage_limit(
        browser_network, expected, tmp_path) -> None:
    playwright, build = browser_network
    network = build("public", "public", "public")
    network.start_web()
    page = network.page(playwright, tmp_path, {"outage-limit": "40"})
    roster = roster_of(network, page)
    count = "1000"  # long enough that the outage falls in the middle of the computation
    network.start_natives("comparisons", "nat-outage", roster, count, "--outage-limit", "40",
                          "--peer-timeout", "5")
    page.join("nat-outage", 0, 3, roster.read_text(), "comparisons", count)
    wait_for(lambda: "connected to all" in page.log, "the page to connect", timeout=60)
    time.sleep(1.0)  # into the comparisons
    eth0 = ("ip", "link", "set", "eth0")
    network.net.sandbox.run(*eth0, "down", ns=network.net.sites[0].ns)
    threading.Timer(12, lambda: network.net.sandbox.run(*eth0, "up",
                                                        ns=network.net.sites[0].ns)).start()
    phase = page.wait_finished(timeout=180)
    natives = network.wait_natives()
    report = f"page: {phase}: {page.error}\n{page.log[-4000:]}\n" + "\n".join(
        f"--- native {i}: exit {code}\n{err[-2000:]}" for i, (code, _, err) in enumerate(natives))
    assert phase == "done", report
    wanted = expected("comparisons", count)
    assert page.outputs == wanted, report
    for code, out, _ in natives:
        assert code == 0 and program_lines(out) == wanted, report
    assert "interrupted" in page.log and "restored" in page.log, report
