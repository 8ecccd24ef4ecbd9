"""Smoke test of `mpc-net bench`: the whole bench on tiny sizes, so that it cannot rot.

It checks that every part runs and reports; it never looks at the figures themselves.
"""

from __future__ import annotations

import json

from helpers import mpc_net

PROGRAMS = ["sort", "rounds", "bulk"]
TRANSPORT_TESTS = {"pingpong", "stream-1k", "stream-64k", "small", "connect-3", "memory",
                   "imports"}


def test_bench_quick_run_prints_tables_and_writes_json(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = mpc_net("bench", "--quick", "--reps", "1", "--parties", "3",
                   "--programs", ",".join(PROGRAMS), "--connect-parties", "3",
                   "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    printed = done.stdout
    assert "Machine:" in printed and "Command: mpc-net bench" in printed
    for heading in ("MPyC programs", "Ping-pong", "One-way transfer",
                    "Time until all parties are connected", "Memory", "Speed targets"):
        assert heading in printed
    for name in PROGRAMS:
        assert f"| {name} " in printed
    assert "bench: done" in done.stderr  # progress goes to stderr

    report = json.loads(out.read_text())
    assert report["format"] == "mpc-net-bench/1"
    assert {"cpu", "cores", "python", "packages"} <= report["machine"].keys()
    assert [p["program"] for p in report["programs"]] == PROGRAMS
    for program in report["programs"]:
        assert program["parties"] == 3 and program["same_output"] is True
        assert {"tcp", "mpc-net"} == program["median"].keys()
        assert program["ratio"]["elapsed"]["median"] > 0
        # mpc-net's traffic, from its parties' run reports
        ours = program["median"]["mpc-net"]
        assert ours["mpyc_messages"] > 0 and ours["channel_messages"] > 0
    assert set(report["transport"]) == TRANSPORT_TESTS
    assert set(report["transport"]["pingpong"]) == {"tcp", "udp", "rtc", "rtc-raw"}
    connect = report["transport"]["connect-3"]["mpc-net"]["median"]
    # A party connects while its program starts: its channels can be up by the time MPyC logs
    # "Start MPyC runtime", the same millisecond as "All 3 parties connected".
    assert connect["after_last_start_s"] >= 0
    assert connect["launch_s"] > connect["mesh_s"] > 0
    assert report["transport"]["memory"]["rtc"]["median"]["bytes_per_peer_connection"] > 0
    assert {t["target"].split(" (")[0] for t in report["targets"]} >= {
        "median demo elapsed ratio, all demos", "ping-pong vs raw UDP",
        "memory per peer connection"}


def test_bench_command_reads_its_arguments_with_the_harness() -> None:
    done = mpc_net("bench", "--help")
    assert done.returncode == 0 and "usage: mpc-net bench" in done.stdout
    assert "--connect-parties" in done.stdout
    done = mpc_net("bench", "--reps", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("mpc-net bench: error: argument --reps: must be positive: '0' "
                           "(see 'mpc-net bench --help')\n")


def test_the_browser_wheel_ships_no_bench_harness() -> None:
    from mpc_net.bundle import Sources

    files = Sources.read().package
    assert "mpc_net/stats.py" in files  # the package is read ...
    assert not [name for name in files if "bench" in name or "harness" in name]  # ... alone
