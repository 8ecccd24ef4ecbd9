"""Help that explains every option; bad input ends in one line and exit code 2."""

from __future__ import annotations

import pytest

from helpers import DEMOS, mpc_net

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


@pytest.mark.parametrize("args, message", [
    (["run", "--no-such-flag", "demos/auction.py"], "unrecognized arguments"),
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
