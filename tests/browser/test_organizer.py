"""An organizer needs no CLI: the page makes the roster from the keys people paste and one
link per party, and a browser-only room runs with nothing but `mpc-net web`: the links carry
room, index, count, program and roster, and each key survives the reload. A page whose key is
gone says so."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("playwright")

from mpc_net.auth import program_hash  # noqa: E402

from .party_page import PartyPage  # noqa: E402
from .test_browser_parties import INPUTS, check_run, room_for  # noqa: E402
from helpers import DEMOS  # noqa: E402


def make_roster(page: PartyPage, keys: list[str]) -> str:
    page.page.evaluate("document.getElementById('organize').open = true")
    page.page.fill("#keys", "\n".join(keys))
    page.page.click("#make-roster")
    return page.page.text_content("#keys-info")


def test_a_browser_only_room_from_a_roster_made_in_the_page(
        parties, browser, web, expected, screenshots, request) -> None:
    organizer = parties[0]
    keys = [page.public_key for page in parties]
    # Refused in words: a stray line, the same key twice, one party alone.
    assert "not an mpc-net public key" in make_roster(organizer, [keys[0], "hello", keys[2]])
    assert "parties 0 and 2 have the same key" in make_roster(organizer, [keys[0], keys[1],
                                                                          keys[0]])
    assert "at least two parties" in make_roster(organizer, [keys[0]])
    room = room_for(request)
    organizer.page.fill("#room", room)
    organizer.page.select_option("#demo", "auction")
    info = make_roster(organizer, [keys[0], f"bob={keys[1]}", keys[2]])
    assert info.startswith("A roster of 3 parties"), info
    roster = json.loads(organizer.page.input_value("#roster"))
    assert roster["parties"][1]["name"] == "bob" and len(roster["parties"]) == 3
    links = organizer.page.eval_on_selector_all("#links a", "links => links.map(a => a.href)")
    assert len(links) == 3
    organizer.screenshot(screenshots / "organizer-links.png")
    values, args = INPUTS["auction"]
    for i, page in enumerate(parties):
        page.open(links[i].removeprefix(page.origin + "/"))
    for i, page in enumerate(parties):
        page.wait_ready()
        assert page.public_key == keys[i], "the key must come back from IndexedDB"
        assert page.page.input_value("#party") == str(i)
        assert page.page.input_value("#demo") == "auction"
        assert f"your key is party {i}'s" in page.page.inner_text("#roster-info")
        page.page.fill("#input", values[i])
        page.page.click("#join")
    check_run(parties, expected("auction", *args), screenshots, "organizer")
    # The page shows the hash the handshake compared: the one of demos/auction.py natively.
    digest = program_hash((DEMOS / "auction.py").read_bytes()).hex()
    for page in parties:
        assert page.page.inner_text("#program-hash") == digest[:16]
        assert page.page.get_attribute("#program-hash", "title") == (
            f"SHA-256 of auction.py: {digest}")
    # A browser whose key store was cleared (here: a fresh profile) opens party 1's link.
    stranger = PartyPage(browser, web.origin)
    try:
        stranger.open(links[1].removeprefix(web.origin + "/"))
        stranger.wait_ready()
        assert "made a new one, which is not in the roster of this link" in stranger.warning
        assert "Send your new public key" in stranger.warning
        stranger.screenshot(screenshots / "new-key.png")
        assert stranger.problems() == []
    finally:
        stranger.close()
