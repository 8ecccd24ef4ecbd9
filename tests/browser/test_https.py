"""A page beyond localhost: served over HTTPS by `mpc-net web --tls-certificate` on a LAN
address, it has WebCrypto and joins a room with native parties; over plain HTTP it says why it
cannot."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright")

from certificates import make_server_certificate  # noqa: E402
from nat.topology import Sandbox  # noqa: E402

from .conftest import (  # noqa: E402
    CHROMIUM,
    FLAGS,
    Loopback,
    Natives,
    WebServer,
    chromium_launcher,
)
from .party_page import READY, PartyPage  # noqa: E402
from .test_browser_parties import INPUTS, check_run  # noqa: E402

LAN_ADDRESS = "10.77.0.1"


@pytest.fixture(scope="module")
def lan():
    """A namespace of its own with loopback and one LAN address (on one end of a veth pair
    that leads nowhere else): an address where Chromium gives plain-http pages no secure
    context."""
    sandbox = Sandbox.start()
    sandbox.run("ip", "link", "set", "lo", "up")
    sandbox.run("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
    sandbox.run("ip", "address", "add", f"{LAN_ADDRESS}/24", "dev", "lan0")
    for interface in ("lan0", "lan1"):
        # No IPv6 link-local address: one would turn valid a second or two after the link is
        # up, and Chromium, seeing the network change, fails the requests then in flight
        # (net::ERR_NETWORK_CHANGED) in the middle of a page's load.
        sandbox.run("ip", "link", "set", interface, "addrgenmode", "none")
        sandbox.run("ip", "link", "set", interface, "up")
    yield Loopback(sandbox)
    sandbox.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_server_certificate(tmp_path_factory.mktemp("tls"), LAN_ADDRESS)


@pytest.fixture(scope="module")
def lan_browser(lan, certificate, playwright, tmp_path_factory):
    """Chromium in the LAN namespace that accepts the test certificate (by its public key),
    as a browser accepts a certificate from a CA it trusts."""
    executable = chromium_launcher(lan.command(str(CHROMIUM)),
                                   tmp_path_factory.mktemp("chromium"))
    chromium = playwright.chromium.launch(
        executable_path=str(executable),
        args=[*FLAGS, f"--ignore-certificate-errors-spki-list={certificate.spki_sha256}"])
    yield chromium
    chromium.close()


def test_a_page_over_https_on_a_lan_address_joins_native_parties(
        lan, lan_browser, bundle, certificate, expected, screenshots, tmp_path,
        monkeypatch) -> None:
    server = WebServer(lan, bundle, "--host", LAN_ADDRESS, "--tls-certificate",
                       str(certificate.certificate), "--tls-key", str(certificate.key))
    page = None
    try:
        page = PartyPage(lan_browser, server.origin)
        assert server.origin.startswith(f"https://{LAN_ADDRESS}:")
        page.open()
        page.wait_ready()
        assert page.page.evaluate("window.isSecureContext")
        natives = Natives(tmp_path, lan, 2)
        roster = natives.roster([page.public_key, *natives.public_keys], "https")
        values, args = INPUTS["auction"]
        # The native parties trust the certificate's authority as a system store would.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate.authority))
        procs = [natives.start("auction", i + 1, i, "over-https", server.url, roster, *args)
                 for i in range(2)]
        page.join("over-https", 0, 3, roster.read_text(), "auction", values[0])
        check_run([page], expected("auction", *args), screenshots, "https-lan", procs)
    finally:
        if page is not None:
            page.close()
        server.close()


def test_a_page_over_plain_http_on_a_lan_address_says_it_needs_https(
        lan, lan_browser, bundle, screenshots) -> None:
    server = WebServer(lan, bundle, "--host", LAN_ADDRESS)
    # Not a PartyPage: an insecure page cannot even be granted the camera permission it asks.
    context = None
    try:
        context = lan_browser.new_context()
        page = context.new_page()
        page.goto(f"{server.origin}/")
        page.wait_for_selector(READY, state="attached", timeout=90_000)
        assert page.evaluate("document.body.dataset.phase") == "failed"
        error = page.text_content("#error")
        assert error.startswith("Could not load your identity key: browsers offer WebCrypto "
                                "only to secure pages: open this page over https")
        # Said before loading Python, which such a page could not use.
        assert page.evaluate("window.mpcNet.timings.pyodide") is None
        page.screenshot(path=screenshots / "http-lan.png")
    finally:
        if context is not None:
            context.close()
        server.close()
