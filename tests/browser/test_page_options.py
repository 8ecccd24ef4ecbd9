"""The page's counterparts of `mpc-net run` options: trusting the room server (no roster, the
check code guards), the outage limit, relay only; set in the form or by a link, and refused in
words when they cannot work. (Relay only and outages across NATs: test_browser_nat.py.)"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")

from .party_page import READY  # noqa: E402
from .test_browser_parties import INPUTS, room_for  # noqa: E402

CHECK_CODE = re.compile(r"check code of this run: ([\d-]+)")


def open_network_options(page) -> None:
    page.page.evaluate("document.getElementById('network').open = true")


def test_three_browsers_trusting_the_room_server_agree_on_a_check_code(
        parties, expected, screenshots, request) -> None:
    room = room_for(request)
    values, args = INPUTS["stats"]
    for i, page in enumerate(parties):
        open_network_options(page)
        page.page.check("#trust-room-server")
        page.join(room, i, 3, "", "stats", values[i])
    phases = [page.wait_finished() for page in parties]
    report = "".join(f"\n--- page {k}: {p.phase}: {p.error}\n{p.log[-2000:]}"
                     for k, p in enumerate(parties))
    assert phases == ["done"] * 3, report
    # A page's log keeps earlier tests' runs (test_firefox's mixed room has page 0): this run's
    # code is the last one.
    codes = {CHECK_CODE.findall(page.log)[-1] for page in parties}
    assert len(codes) == 1, report  # the same keys everywhere: nobody swapped one
    for page in parties:
        assert page.outputs == expected("stats", *args)
        page.page.uncheck("#trust-room-server")
    parties[0].screenshot(screenshots / "trust-room-server.png")
    for page in parties:
        assert page.problems() == []


def test_a_link_sets_the_options_and_bad_ones_are_refused_in_words(parties, natives) -> None:
    page = parties[0]
    page.open("?trust-room-server=1&relay-only=1&outage-limit=30&room=linked")
    page.page.wait_for_selector(READY, state="attached", timeout=90_000)
    assert page.page.is_checked("#trust-room-server") and page.page.is_checked("#relay-only")
    assert page.page.input_value("#outage-limit") == "30"
    assert page.page.evaluate("document.getElementById('network').open")
    # A trusting party's links carry that choice and no roster.
    page.page.fill("#parties", "3")
    page.page.dispatch_event("#room", "input")
    links = page.page.eval_on_selector_all("#links a", "links => links.map(a => a.href)")
    assert len(links) == 3 and all("trust-room-server=1" in link and "roster=" not in link
                                   and "outage-limit=30" in link and "relay-only" not in link
                                   for link in links), links
    roster = natives.roster([p.public_key for p in parties], "options").read_text()
    page.page.uncheck("#relay-only")
    page.join("options", 0, 3, roster, "stats", "1")
    assert page.wait_finished(timeout=10) == "failed"
    assert "a roster and trusting the room server exclude each other" in page.error
    page.page.uncheck("#trust-room-server")
    page.page.fill("#outage-limit", "-5")
    page.join("options", 0, 3, roster, "stats", "1")
    assert page.wait_finished(timeout=10) == "failed"
    assert "the outage limit must be 0 or more seconds" in page.error, page.error
    page.page.fill("#outage-limit", "0")
    assert page.problems() == []
