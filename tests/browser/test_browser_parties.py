"""Browser parties in headless Chromium, alone and with native parties, give what MPyC gives
over TCP; failures show on the page in words; nothing leaves loopback; no uncaught errors."""

from __future__ import annotations

import itertools
import re
import subprocess
import time

import pytest

pytest.importorskip("playwright")

from .party_page import PartyPage  # noqa: E402
from helpers import program_lines  # noqa: E402

# Each party's own input as typed into its page, and the same inputs as arguments of the TCP
# run (`python demos/X.py -M3 ARGS`, where party i takes the i-th value).
INPUTS = {
    "auction": (["40", "95", "60"], ["--bids", "40,95,60"]),
    "stats": (["10", "-3", "7"], ["10", "-3", "7"]),
    "sort": (["5,1", "9,-2,4", "3"], ["5,1", "9,-2,4", "3"]),
}
DEMOS = sorted(INPUTS)
_rooms = itertools.count()


def room_for(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:56] + f"-{next(_rooms)}"


def roster_json(natives, keys: list[str], name: str) -> str:
    return natives.roster(keys, name).read_text()


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def check_run(pages: list[PartyPage], expected: list[str], screenshots, name: str,
              native_procs=()) -> None:
    """Every party finished with the TCP run's lines; pages show their peers authenticated."""
    phases = [page.wait_finished() for page in pages]
    natives = [(proc, *finish(proc)) for proc in native_procs]
    report = "".join(f"\n--- page {k}: {page.phase}: {page.error}\n{page.log[-3000:]}"
                     for k, page in enumerate(pages))
    report += "".join(f"\n--- native: exit code {proc.returncode}\n{err[-3000:]}"
                      for proc, _, err in natives)
    assert phases == ["done"] * len(pages), report
    assert [proc.returncode for proc, _, _ in natives] == [0] * len(natives), report
    for page in pages:
        assert page.outputs == expected
        for state, path, _ in page.peers().values():
            assert state == "connected, authenticated"
            assert "host" in path
    for _, out, _ in natives:
        assert program_lines(out) == expected
    pages[0].screenshot(screenshots / f"{name}.png")
    for page in pages:
        assert page.problems() == []


@pytest.mark.parametrize("demo", DEMOS)
def test_three_browsers_match_tcp(parties, natives, expected, screenshots, request,
                                  demo: str) -> None:
    roster = roster_json(natives, [page.public_key for page in parties], "bbb")
    room = room_for(request)
    values, args = INPUTS[demo]
    for i, page in enumerate(parties):
        page.join(room, i, 3, roster, demo, values[i])
    check_run(parties, expected(demo, *args), screenshots, f"bbb-{demo}")


def test_sync_style_program_in_three_browsers(parties, natives, expected, screenshots,
                                              request) -> None:
    """secretsanta.py calls mpc.run() at module level: it blocks through JSPI's run_sync, in
    Python restored from the bundle's memory snapshot."""
    assert all(page.restored for page in parties)
    roster = roster_json(natives, [page.public_key for page in parties], "bbb")
    room = room_for(request)
    for i, page in enumerate(parties):
        page.join(room, i, 3, roster, "secretsanta")
    check_run(parties, expected("secretsanta"), screenshots, "bbb-secretsanta")


@pytest.mark.parametrize(("demo", "native"), [("auction", 2), ("stats", 0), ("sort", 1)])
def test_two_browsers_and_one_native(parties, natives, expected, screenshots, web, request,
                                     demo: str, native: int) -> None:
    browsers = [i for i in range(3) if i != native]
    keys = [natives.public_keys[0] if i == native else parties[browsers.index(i)].public_key
            for i in range(3)]
    roster = natives.roster(keys, f"bbn-{demo}")
    room = room_for(request)
    values, args = INPUTS[demo]
    proc = natives.start(demo, native, 0, room, web.url, roster, *args)
    pages = [parties[k] for k in range(2)]
    for page, i in zip(pages, browsers, strict=True):
        page.join(room, i, 3, roster.read_text(), demo, values[i])
    check_run(pages, expected(demo, *args), screenshots, f"bbn-{demo}", [proc])


@pytest.mark.parametrize(("demo", "at"), [("auction", 0), ("stats", 2), ("sort", 1)])
def test_one_browser_and_two_natives(parties, natives, expected, screenshots, web, request,
                                     demo: str, at: int) -> None:
    others = [i for i in range(3) if i != at]
    keys = [parties[0].public_key if i == at else natives.public_keys[others.index(i)]
            for i in range(3)]
    roster = natives.roster(keys, f"bnn-{demo}")
    room = room_for(request)
    values, args = INPUTS[demo]
    procs = [natives.start(demo, i, k, room, web.url, roster, *args)
             for k, i in enumerate(others)]
    parties[0].join(room, at, 3, roster.read_text(), demo, values[at])
    check_run([parties[0]], expected(demo, *args), screenshots, f"bnn-{demo}", procs)


def test_wrong_key_is_refused_its_seat_and_stops_no_run(parties, natives, expected, screenshots,
                                                       web, request) -> None:
    """Party 1's page holds a key that is not the roster's party 1: the room server refuses it
    the seat (its WebCrypto signature proves another key), its page says why, and the others
    keep waiting, so that the true party 1 still comes and the run completes."""
    keys = [parties[0].public_key, natives.public_keys[2], parties[2].public_key]
    roster = natives.roster(keys, "wrong-key")
    room = room_for(request)
    values, args = INPUTS["auction"]
    for i in (0, 2):
        parties[i].join(room, i, 3, roster.read_text(), "auction", values[i])
    parties[1].join(room, 1, 3, roster.read_text(), "auction", values[1])
    assert parties[1].wait_finished(timeout=30) == "failed"
    assert "not party 1's: the other parties will refuse this browser" in parties[1].warning
    assert "the key is not the roster's key of party 1 (bad-proof)" in parties[1].error
    assert parties[1].outputs == [] and "Traceback" not in parties[1].log
    proc = natives.start("auction", 1, 2, room, web.url, roster, *args)
    check_run([parties[0], parties[2]], expected("auction", *args), screenshots, "wrong-key",
              [proc])


def test_a_lost_party_stops_the_page_with_the_reason(parties, natives, web, request) -> None:
    """A native party killed mid-computation: the page says which party it lost, about when
    the peer timeout (10 s) runs out, instead of waiting forever."""
    keys = [parties[0].public_key, *natives.public_keys[:2]]
    roster = natives.roster(keys, "lost")
    room = room_for(request)
    procs = [natives.start("comparisons", i, i - 1, room, web.url, roster, "3000")
             for i in (1, 2)]
    try:
        parties[0].join(room, 0, 3, roster.read_text(), "comparisons", "3000")
        parties[0].page.wait_for_selector("body[data-phase='computing']", state="attached",
                                          timeout=60_000)
        procs[1].kill()
        killed = time.monotonic()
        assert parties[0].wait_finished(timeout=30) == "failed"
        assert time.monotonic() - killed < 25
        assert "lost the connection to party" in parties[0].error
        assert "Traceback" not in parties[0].log
        assert parties[0].problems() == []
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()


def test_form_errors_are_shown_in_words(parties, natives) -> None:
    page = parties[0]
    roster = roster_json(natives, [p.public_key for p in parties], "bbb")
    cases = [
        ({"roster": "{not json"}, "not JSON"),
        ({"party": 3}, "the party index must be below the number of parties, 3"),
        ({"room": "no spaces"}, "is not 1..64 of [A-Za-z0-9._-]"),
        ({"parties": 2}, "the roster lists 3 parties, not 2"),
        ({"value": "1 2"}, "no spaces"),
    ]
    for change, words in cases:
        form = {"room": "form-errors", "party": 0, "parties": 3, "roster": roster,
                "demo": "stats", "value": "", **change}
        page.join(**form)
        assert page.wait_finished(timeout=10) == "failed"
        assert words in page.error
    assert page.problems() == []


def test_a_browser_without_jspi_and_without_its_extra_packages(
        browser, web, natives, expected, screenshots, request) -> None:
    """One page for two ways a browser falls short. Without JSPI (as in Safari) a
    synchronous-style program is refused up front, before the party joins and keeps others
    waiting; a program that makes one mpc.run(main()) call still runs, here with two native
    parties. With a package base URL the page asks it for gmpy2; when that fails it says so in
    words and runs on pure Python."""
    page = PartyPage(browser, web.origin)
    repository = f"{web.origin}/no-package-repository/"
    try:
        with page.page.expect_request(lambda r: r.url.startswith(repository + "gmpy2")):
            page.open(f"?jspi=off&packages={repository}&key=no-jspi")
            page.wait_ready()
        assert f"Could not load gmpy2 from {repository}" in page.warning
        assert "Failed to load gmpy2" in page.log
        # The browser reports the failed fetch on the console itself; nothing else may.
        assert all("404" in problem or "gmpy2" in problem for problem in page.problems())
        keys = [page.public_key, *natives.public_keys[:2]]
        roster = natives.roster(keys, "no-jspi")
        page.join(room_for(request), 0, 3, roster.read_text(), "secretsanta")
        assert page.wait_finished(timeout=10) == "failed"
        assert "needs a browser with JavaScript Promise integration" in page.error
        room = room_for(request)
        values, args = INPUTS["auction"]
        procs = [natives.start("auction", i, i - 1, room, web.url, roster, *args)
                 for i in (1, 2)]
        page.join(room, 0, 3, roster.read_text(), "auction", values[0])
        check_run([page], expected("auction", *args), screenshots, "no-jspi", procs)
    finally:
        page.close()


def test_the_busy_bar_animates_on_the_compositor_only(parties) -> None:
    """While a program computes, the page's animations change only what the compositor can
    (transform, opacity): one that moved `left` made the main thread, where Python runs, lay
    out and paint every frame, a third of its time in a demo."""
    page = parties[0].page
    page.evaluate("document.getElementById('progress').hidden = false")
    try:
        properties = page.evaluate("""document.getAnimations().flatMap((animation) =>
            animation.effect.getKeyframes().flatMap((frame) => Object.keys(frame)))""")
    finally:
        page.evaluate("document.getElementById('progress').hidden = true")
    animated = set(properties) - {"offset", "computedOffset", "easing", "composite"}
    assert animated and animated <= {"transform", "opacity"}, animated


# Counts, in a page, the entries into Python through `callPromising` (each on a stack of its
# own: Pyodide wraps its entry point with WebAssembly.promising once, at start) and the data
# channel messages received.
COUNT_ENTRIES = """(() => {
  window.entries = { promising: 0, messages: 0 };
  const promising = WebAssembly.promising;
  if (promising) {
    WebAssembly.promising = (f) => {
      const entry = promising(f);
      return function (...args) { window.entries.promising++; return entry.apply(this, args); };
    };
  }
  const createDataChannel = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = createDataChannel.apply(this, args);
    channel.addEventListener("message", () => { window.entries.messages++; });
    return channel;
  };
})()"""


def test_mpycs_callbacks_enter_python_without_a_stack_of_their_own(
        browser, web, natives, expected, request) -> None:
    """Pyodide's loop enters each callback through `callPromising` (under JSPI), so that it may
    suspend Python: a stack made and switched to for each. The ready queue's batches of MPyC's
    callbacks never suspend (the program's top level does, in a step of its own), and enter
    by a plain call: fewer entries through `callPromising` than messages received."""
    pages = [PartyPage(browser, web.origin) for _ in range(3)]
    try:
        for page in pages:
            page.page.add_init_script(COUNT_ENTRIES)
            page.open()
        for page in pages:
            page.wait_ready()
        roster = roster_json(natives, [page.public_key for page in pages], "entries")
        room = room_for(request)
        values, args = INPUTS["sort"]
        for i, page in enumerate(pages):
            page.join(room, i, 3, roster, "sort", values[i])
        for page in pages:
            assert page.wait_finished() == "done", page.error
            assert page.outputs == expected("sort", *args)
        entries = [page.page.evaluate("window.entries") for page in pages]
        for counts in entries:
            assert counts["messages"] > 100, entries
            # 2.4 per message when each batch was entered so; now what remains is the loop's
            # own (timers, steps before the queue takes over), 0.3 to 0.5 per message.
            assert counts["promising"] < counts["messages"], entries
    finally:
        for page in pages:
            page.close()
