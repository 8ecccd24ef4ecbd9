"""Programs that are not demos: served with `mpc-net web --program`, picked from a file or
pasted into the page, run by browser parties alone and with native ones, as MPyC runs them over
TCP; private inputs typed into each tab (never taken from a link), or given natively on
standard input; a program the page cannot run is refused in words. The tests keep a
screenshot of each state of the page."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("playwright")

from mpc_net import web as web_command  # noqa: E402

from .conftest import PROGRAMS  # noqa: E402
from .party_page import PartyPage, link_roster  # noqa: E402
from .test_browser_parties import check_run, room_for  # noqa: E402
from .test_web import fetch_in_namespace  # noqa: E402
from helpers import ROOT, free_base_port, program_lines  # noqa: E402

LEDGER = PROGRAMS / "ledger.py"
RANKS = PROGRAMS / "ranks.py"
# Each party's private input (its standard input) and the public arguments of one run.
LEDGER_RUN = (["-3", "4", "11"], ["--offset", "5", "total"])
RANKS_RUN = (["1,9,-1", "7", "2,2,-4,8"], ["4"])

_tcp: dict[tuple, list[str]] = {}


def tcp_lines(script: Path, args: list[str], inputs: list[str]) -> list[str]:
    """Party 0's program lines of `python SCRIPT -M3 -I i ARGS < input_i` over MPyC's own TCP,
    every party a process of its own with its own standard input; once per run."""
    key = (script, *args, *inputs)
    if key not in _tcp:
        base = free_base_port()
        procs = [subprocess.Popen([sys.executable, str(script), *args, "-M3", "-I", str(i),
                                   "-B", str(base)], cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(3)]
        for proc, value in zip(procs, inputs, strict=True):
            proc.stdin.write(value + "\n")  # communicate() closes it
            proc.stdin.flush()
        outs = [proc.communicate(timeout=120) for proc in procs]
        assert [proc.returncode for proc in procs] == [0, 0, 0], outs
        _tcp[key] = program_lines(outs[0][0])
        assert _tcp[key], "the TCP run printed nothing to compare"
    return _tcp[key]


def roster_of(natives, keys: list[str], name: str) -> str:
    return natives.roster(keys, name).read_text()


def type_private_input(page: PartyPage, value: str) -> None:
    page.page.fill("#private-input", value)


def test_the_server_lists_its_programs_and_serves_each(web, loopback) -> None:
    status, headers, body = fetch_in_namespace(loopback, f"{web.origin}/programs.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {"programs": ["ledger.py", "ranks.py"]}
    status, headers, body = fetch_in_namespace(loopback, f"{web.origin}/programs/ledger.py")
    assert (status, body) == (200, LEDGER.read_bytes())
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    with pytest.raises(subprocess.CalledProcessError):  # 404: urlopen raises
        fetch_in_namespace(loopback, f"{web.origin}/programs/missing.py")


@pytest.mark.parametrize(("content", "name", "words"), [
    (None, "absent.py", "cannot read the program"),
    (b"x = (\n", "broken.py", "not a Python program: '(' was never closed (line 1)"),
    (b"\xff\xfe", "binary.py", "not UTF-8 text"),
    (b"print(1)\n", "notes.txt", "a program is a .py file"),
])
def test_a_bad_program_file_is_one_line_and_exit_code_2(bundle, tmp_path: Path, capsys,
                                                        content, name: str, words: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    parser = argparse.ArgumentParser()
    web_command.add_arguments(parser)
    options = parser.parse_args(["--bundle", str(bundle), "--port", "0", "--program", str(path)])
    assert web_command.run(options) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    twice = parser.parse_args(["--bundle", str(bundle), "--port", "0", "--program", str(LEDGER),
                               "--program", str(LEDGER)])
    assert web_command.run(twice) == 2
    assert "two programs named ledger.py" in capsys.readouterr().err


def test_programs_in_three_browsers(parties, natives, screenshots, request) -> None:
    """A served program in the synchronous style, named by one party's link with its public
    arguments (the others pick it in the form); then, on the same pages, a program of the
    `async def main()` style picked from a file on one page and pasted on the others. The link's
    private input is ignored, and the page says so."""
    keys = [page.public_key for page in parties]
    roster_text = roster_of(natives, keys, "programs")
    room = room_for(request)
    values, args = LEDGER_RUN
    linked = parties[0]
    linked.open(f"?room={room}&party=0&parties=3&program=ledger.py"
                f"&args=--offset+5+total&roster={link_roster(roster_text)}&input=666")
    assert linked.phase == "loading"
    linked.screenshot(screenshots / "state-loading.png")
    linked.wait_ready()
    assert linked.page.input_value("#demo") == "ledger.py"
    assert linked.page.input_value("#args") == "--offset 5 total"
    assert linked.page.input_value("#private-input") == ""
    assert "This link carries a private input (input=…), which this page ignores" in (
        linked.warning)
    type_private_input(linked, values[0])
    linked.screenshot(screenshots / "state-ready.png")
    linked.page.click("#join")
    for i, page in enumerate(parties[1:], start=1):
        page.page.select_option("#demo", "ledger.py")
        page.page.fill("#args", " ".join(args))
        type_private_input(page, values[i])
        page.join(room, i, 3, roster_text, "ledger.py")
    check_run(parties, tcp_lines(LEDGER, args, values), screenshots, "state-done")
    for page in parties:
        assert page.page.inner_text("#program").startswith("ledger.py SHA-256")

    values, args = RANKS_RUN
    for i, page in enumerate(parties):
        page.page.select_option("#demo", "own")
        if i == 0:
            page.page.set_input_files("#program-file", str(RANKS))
            page.page.wait_for_selector("#program-name:text('ranks.py')")
        else:
            page.page.fill("#program-text", RANKS.read_text())
        page.page.fill("#args", " ".join(args))
        type_private_input(page, values[i])
    assert parties[0].page.input_value("#program-text") == RANKS.read_text()
    for page in parties:
        page.page.click("#join")
    parties[0].page.wait_for_selector("body[data-phase='computing']", state="attached",
                                      timeout=60_000)
    parties[0].screenshot(screenshots / "state-running.png")
    check_run(parties, tcp_lines(RANKS, args, values), screenshots, "ranks")


def test_a_program_in_a_mixed_room(parties, natives, web, screenshots, request) -> None:
    """Two browsers and a native party that reads its private input on standard input."""
    keys = [parties[0].public_key, parties[1].public_key, natives.public_keys[0]]
    roster = natives.roster(keys, "program-mixed")
    room = room_for(request)
    values, args = LEDGER_RUN
    proc = natives.start(LEDGER, 2, 0, room, web.url, roster, *args,
                         stdin=values[2] + "\n")
    for i in range(2):
        parties[i].page.select_option("#demo", "ledger.py")
        parties[i].page.fill("#args", " ".join(args))
        type_private_input(parties[i], values[i])
        parties[i].join(room, i, 3, roster.read_text(), "ledger.py")
    check_run(parties[:2], tcp_lines(LEDGER, args, values), screenshots, "ledger-mixed", [proc])


def test_what_a_page_cannot_run_is_said_in_words(parties, natives, screenshots) -> None:
    """Refused before the party keeps anyone waiting: a second file the program imports, numpy,
    a syntax error, bad arguments (argparse's own words), the program's own exception."""
    page = parties[1]  # one that has not picked a file, so its program is program.py
    roster = roster_of(natives, [p.public_key for p in parties], "cannot-run")
    cases = [
        ("import my_helpers\n", "", "the program imports my_helpers, which is not here: a "
                                    "program in this page is one file"),
        ("import numpy as np\n", "", "the program imports numpy, which this page does not "
                                     "have"),
        ("x = (\n", "", "program.py is not valid Python: '(' was never closed (line 1)"),
        (LEDGER.read_text(), "--offset many", "the program stopped with exit code 2: "
                                              "program.py: error: argument --offset: invalid "
                                              "int value: 'many'"),
        ("x = 1\nraise ValueError('no input')\n", "", "the program raised ValueError: no input "
                                                      "(line 2 of program.py)"),
        ("import sys\n", "-M 5", "-M and -I (--index) are mpc-net's"),
        ("import sys\n", "'unclosed", "the arguments: no closing quotation"),
    ]
    page.page.select_option("#demo", "own")
    for k, (text, args, words) in enumerate(cases):
        page.page.fill("#program-text", text)
        page.page.fill("#args", args)
        page.join("cannot-run", 1, 3, roster, "own")
        assert page.wait_finished(timeout=20) == "failed", text
        assert words in page.error, page.error
        assert "Traceback" not in page.error
        if "imports" in words:
            assert "Traceback" not in page.log
        if k == 0:
            page.screenshot(screenshots / "state-failed.png")
    page.page.fill("#args", "")
    assert page.problems() == []
