"""Help that explains every option; bad input ends in one line and exit code 2."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DEMOS, RoomServerProcess, make_credentials, mpc_net, program_lines

RUN_OPTIONS = ["-M", "-I", "--room", "--signal", "--local-address", "--peer-timeout",
               "--connect-timeout", "--join-timeout", "--log-dir", "--verbose", "--quiet"]


def test_top_level_help_lists_commands() -> None:
    done = mpc_net("--help")
    assert done.returncode == 0
    for command in ("run", "signal"):
        assert command in done.stdout


def test_run_help_explains_every_option() -> None:
    done = mpc_net("run", "--help")
    assert done.returncode == 0
    for option in RUN_OPTIONS:
        assert option in done.stdout
    assert "Local mode" in done.stdout and "Distributed mode" in done.stdout
    assert "MPyC's own flags" in done.stdout


def test_signal_help_explains_every_option() -> None:
    done = mpc_net("signal", "--help")
    assert done.returncode == 0
    for option in ("--host", "--port", "--verbose"):
        assert option in done.stdout


# Each command's options are added when it is chosen (argtypes.Parser's `options`): its help and
# its checks are those of a parser made whole.
@pytest.mark.parametrize("command, options", [
    ("keygen", ("--out FILE", "--force")), ("roster", ("[NAME=]KEY", "--show FILE")),
    ("web", ("--port PORT", "--bundle BUNDLE", "--program FILE", "--max-rooms"))])
def test_every_commands_help_explains_its_options(command: str, options: tuple[str]) -> None:
    done = mpc_net(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: mpc-net {command} ")
    for option in options:
        assert option in done.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "--no-such-flag", "demos/auction.py"],
     "mpc-net run: error: unrecognized arguments: --no-such-flag (see 'mpc-net run --help')"),
    (["keygen", "--no-such-flag"], "mpc-net keygen: error: unrecognized arguments: "
     "--no-such-flag (see 'mpc-net keygen --help')"),
    (["roster", "--show"], "mpc-net roster: error: argument --show: expected one argument"),
    (["run"], "required: SCRIPT"),
    (["run", "demos/no_such_demo.py", "-M3"], "no such program"),
    (["run", "demos/auction.py", "-M", "three"], "not a number"),
    (["run", "demos/auction.py", "-M", "0"], "must be positive"),
    (["run", "demos/auction.py", "-I", "0"], "-I needs -M"),
    (["run", "demos/auction.py", "-M3", "-I", "3", "--room", "r", "--signal", "ws://h:1"],
     "out of range"),
    (["run", "demos/auction.py", "-M3", "-I", "0"], "needs --room"),
    (["run", "demos/auction.py", "-M3", "-I", "0", "--room", "bad room!",
      "--signal", "ws://127.0.0.1:1"], "room"),
    (["run", "demos/auction.py", "-M3", "-I", "0", "--room", "r",
      "--signal", "http://127.0.0.1:1"], "--signal must be"),
    (["run", "demos/auction.py", "-M3", "--room", "r"], "need -I"),
    (["run", "demos/auction.py", "-M3", "--local-address", "nowhere"], "not an IP address"),
    (["frobnicate"], "invalid choice"),
    (["run", "demos/auction.py", "-M3", "--peer-timeout", "nan"], "finite"),
    (["run", "demos/auction.py", "-M3", "--outage-limit", "-1"], "at least 0"),
    (["signal", "--port", "99999"], "at most 65535"),
    (["signal", "--port", "-1"], "at least 0"),
    (["web", "--port", "65536"], "at most 65535"),
    (["web", "--port", "http"], "not a number"),
    # MPyC's flags that mpc-net replaces, wherever they stand (abbreviated too)
    (["run", "demos/auction.py", "-M3", "--ssl"], "--ssl does not apply"),
    (["run", "demos/auction.py", "-M3", "--ss"], "--ssl does not apply"),
    (["run", "demos/auction.py", "-M3", "--", "-P", "h:1", "-P", "h:2", "-P", "h:3"],
     "-P does not apply"),
    (["run", "demos/auction.py", "-M3", "--conf", "x.ini"], "-C/--config does not apply"),
    (["run", "demos/auction.py", "-M3", "-C", "x.ini"], "-C/--config does not apply"),
    (["run", "demos/auction.py", "-M3", "--base", "5000"], "-B/--base-port does not apply"),
    (["run", "demos/auction.py", "-B5000"], "-B/--base-port does not apply"),
    (["run", "demos/auction.py", "-M3", "--output-file"], "--output-file does not apply"),
    (["run", "demos/auction.py", "-M3", "--output-windows"], "--output-windows does not apply"),
    (["run", "demos/auction.py", "-M3", "-T", "x"], "invalid int value"),
    # -M and -I are mpc-net's; after `--` they would go to MPyC
    (["run", "demos/auction.py", "-M3", "--", "-M5"], "-M and -I (--index) are mpc-net's"),
    (["run", "demos/auction.py", "--", "-M3"], "-M and -I (--index) are mpc-net's"),
    (["run", "demos/auction.py", "-M3", "--", "-I", "1"], "-M and -I (--index) are mpc-net's"),
    (["run", "demos/auction.py", "-M3", "--", "--ind", "0"], "-M and -I (--index) are mpc-net's"),
    (["run", "demos/auction.py", "-M2", "-I", "0", "--room", "r", "--signal", "ws://127.0.0.1:9",
      "--trust-room-server", "--", "-M3"], "-M and -I (--index) are mpc-net's"),
    (["run", "demos/auction.py", "-M2", "-I", "0", "--room", "r", "--signal", "ws://127.0.0.1:9",
      "--trust-room-server", "--", "--ssl"], "--ssl does not apply"),
])
def test_bad_input_is_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    done = mpc_net(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert message in lines[0]
    assert "Traceback" not in done.stderr


def test_unreachable_room_server_is_one_clear_line() -> None:
    done = mpc_net("run", str(DEMOS / "auction.py"), "-M2", "-I", "0", "--room", "r",
                   "--signal", "ws://127.0.0.1:9", "--trust-room-server")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ws://127.0.0.1:9" in done.stderr


SUM3 = """\
import sys

from mpyc.runtime import mpc

secint = mpc.SecInt()
mpc.run(mpc.start())
total = mpc.run(mpc.output(mpc.sum(mpc.input(secint(mpc.pid + 1)))))
print("sum", total, "of", len(mpc.parties), "parties; arguments", sys.argv[1:])
mpc.run(mpc.shutdown())
"""


def test_program_arguments_after_dashes_never_make_a_party_run_alone(tmp_path: Path) -> None:
    """Once, `--` hid mpc-net's -M and -I from MPyC: the party ran alone, printed a one-party
    result and exited 0 without contacting the room server."""
    script = tmp_path / "sum3.py"
    script.write_text(SUM3)
    key, roster = make_credentials(tmp_path, 3)[0][1::2]
    done = mpc_net("run", str(script), "-M3", "-I0", "--room", "r", "--signal",
                   "ws://127.0.0.1:1", "--key", key, "--roster", roster, "--", "--anything")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ws://127.0.0.1:1" in done.stderr  # it tried the room server ...
    assert program_lines(done.stdout) == []  # ... and computed nothing alone
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, program_args", [
    (["SCRIPT", "a", "-M3", "b", "--", "--anything", "-T1", "--room", "x"],
     ["a", "b", "--anything", "--room", "x"]),
    (["-M3", "--", "SCRIPT", "--", "-v", "--", "c"], ["-v", "--", "c"]),
])
def test_program_arguments_wherever_they_stand(tmp_path: Path, args: list[str],
                                               program_args: list[str]) -> None:
    """Every party is party i of m, and the program gets exactly its arguments; MPyC's
    flags among them (-T1) go to MPyC."""
    script = tmp_path / "sum3.py"
    script.write_text(SUM3)
    args = [str(script) if a == "SCRIPT" else a for a in args]
    done = mpc_net("run", "--log-dir", str(tmp_path), *args)
    assert done.returncode == 0, done.stderr
    expected = f"sum 6 of 3 parties; arguments {program_args}"
    assert program_lines(done.stdout) == [expected]
    for i in (1, 2):
        assert expected in (tmp_path / f"party{i}.log").read_text()


def test_distributed_parties_get_their_program_arguments(tmp_path: Path) -> None:
    script = tmp_path / "sum3.py"
    script.write_text(SUM3)
    credentials = make_credentials(tmp_path, 3)
    server = RoomServerProcess()
    try:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "mpc_net", "run", str(script), "-M3", "-I", str(i), "--room",
             "args", "--signal", server.url, *credentials[i], "--", "--anything", "-T0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert program_lines(out) == ["sum 6 of 3 parties; arguments ['--anything']"]
    finally:
        server.close()


def test_mpyc_help_and_version_run_nothing() -> None:
    done = mpc_net("run", str(DEMOS / "auction.py"), "-M3", "-V")
    assert done.returncode == 0 and re.fullmatch(r"MPyC \S+\n", done.stdout), done.stdout
    assert "local mode" not in done.stderr


def _read_all(fd: int) -> str:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the terminal is closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_progress_while_waiting_on_a_terminal_only() -> None:
    """Waiting for parties that never come: a line at most every 10 s on a terminal (or with
    -v), nothing when stderr is a pipe, never anything on stdout."""
    server = RoomServerProcess()
    waiting = re.compile(r"^mpc-net: waiting for parties 1, 2: \d+ s left$", re.MULTILINE)
    try:
        def party(room: str, *options: str, stderr=subprocess.PIPE) -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "mpc_net", "run", str(DEMOS / "auction.py"), "-M3",
                 "-I0", "--room", room, "--signal", server.url, "--trust-room-server",
                 "--join-timeout", "12", *options],
                stdout=subprocess.PIPE, stderr=stderr, text=True)

        terminal, other_end = pty.openpty()
        on_terminal = party("tty", stderr=other_end)
        os.close(other_end)
        piped, verbose = party("pipe"), party("verbose", "-v")
        outputs = {name: proc.communicate(timeout=60)
                   for name, proc in (("piped", piped), ("verbose", verbose))}
        outputs["terminal"] = (on_terminal.communicate(timeout=60)[0], _read_all(terminal))
        os.close(terminal)
    finally:
        server.close()
    for name, (out, err) in outputs.items():
        assert "did not join room" in err, (name, err)
        assert "waiting for" not in out, name
    assert len(waiting.findall(outputs["terminal"][1].replace("\r\n", "\n"))) == 1
    assert len(waiting.findall(outputs["verbose"][1])) == 1
    assert not waiting.search(outputs["piped"][1])


def test_the_checks_the_cli_and_the_page_share() -> None:
    """One room server URL check and one "whose key is this" check, for `mpc-net run`, the
    Python API and the browser page (mpc_net/browser/page.py)."""
    from mpc_net.auth import Roster
    from mpc_net.config import key_holder_problem, signal_url_problem

    assert signal_url_problem("wss://rooms.example:443") is None
    assert signal_url_problem("ws://127.0.0.1:8765") is None
    for bad in ("http://127.0.0.1:8765", "ws://", "127.0.0.1:8765", ""):
        assert signal_url_problem(bad) == f"must be ws://HOST:PORT or wss://HOST:PORT, not {bad!r}"
    keys = [bytes([i]) * 32 for i in range(3)]
    roster = Roster.of(keys)
    assert key_holder_problem(roster, keys[1], 1) is None
    assert key_holder_problem(roster, keys[2], 1) == "is party 2's"
    assert key_holder_problem(roster, bytes([9]) * 32, 1) == "is not in the roster"
