"""Browser parties in headless Firefox (Debian's firefox-esr), alone and in one room with
Chromium and a native party, give what MPyC gives over TCP. Each run covers several things at
once (links, the key kept across a reload, a program style), to keep the added time small;
test_fingerprint_lines.py runs in Firefox as well."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright")

from .party_page import link_roster  # noqa: E402
from .test_browser_parties import INPUTS, check_run, room_for, roster_json  # noqa: E402


def test_three_firefox_parties_join_from_links_and_run_a_sync_program(
        firefox_parties, natives, expected, screenshots, request) -> None:
    """Links fill the form, the key comes back from IndexedDB after the reload, and
    secretsanta.py, which calls mpc.run() at module level, blocks through Firefox's JSPI."""
    parties = firefox_parties
    keys = [page.public_key for page in parties]
    roster = link_roster(roster_json(natives, keys, "firefox-link"))
    room = room_for(request)
    for i, page in enumerate(parties):
        page.open(f"?room={room}&party={i}&parties=3&demo=secretsanta&roster={roster}")
    for i, page in enumerate(parties):
        page.wait_ready()
        assert page.public_key == keys[i], "the key must come back from IndexedDB"
        assert page.restored  # Python from the bundle's memory snapshot
        assert f"your key is party {i}'s" in page.page.inner_text("#roster-info")
    for page in parties:
        page.page.click("#join")
    check_run(parties, expected("secretsanta"), screenshots, "firefox-secretsanta")


def test_firefox_chromium_and_native_in_one_room(firefox_parties, parties, web, natives,
                                                 expected, screenshots, request) -> None:
    """stats.py (the `await mpc.start()` style, one input per party) with party 0 in Firefox,
    party 1 in Chromium and party 2 native."""
    chromium = parties[0]
    keys = [firefox_parties[0].public_key, chromium.public_key, natives.public_keys[0]]
    roster = natives.roster(keys, "firefox-chromium-native")
    room = room_for(request)
    values, args = INPUTS["stats"]
    proc = natives.start("stats", 2, 0, room, web.url, roster, *args)
    pages = [firefox_parties[0], chromium]
    for i, page in enumerate(pages):
        page.join(room, i, 3, roster.read_text(), "stats", values[i])
    check_run(pages, expected("stats", *args), screenshots, "firefox-chromium-native", [proc])
