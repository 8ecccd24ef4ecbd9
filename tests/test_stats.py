"""`mpc-net run --stats-json FILE`: the run report, from real runs that end well and badly."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from mpc_net import __version__
from mpc_net.auth import HANDSHAKE_VERSION
from mpc_net.signaling.protocol import VERSION as SIGNALING_VERSION

from helpers import (
    DEMOS,
    GIVES_UP_ON_PARTY_1,
    RoomServerProcess,
    make_credentials,
    mpc_net,
    mpyc_tcp,
    program_lines,
    start_parties,
)

PEER_FIELDS = {"party", "connected", "path", "connect_s", "round_trip_ms", "mpyc_messages_sent",
               "mpyc_bytes_sent", "mpyc_bytes_received", "channel_messages_sent",
               "channels_used"}


def load(path) -> dict:
    report = json.loads(path.read_text())
    assert report["format"] == "mpc-net-stats/1"
    assert report["versions"] == {"mpc_net": __version__, "mpyc": "0.11",
                                  "handshake": HANDSHAKE_VERSION,
                                  "signaling": SIGNALING_VERSION}
    return report


@pytest.fixture
def room_server():
    server = RoomServerProcess()
    yield server
    server.close()


def test_local_run_writes_one_report_per_party(tmp_path) -> None:
    script = DEMOS / "auction.py"
    done = mpc_net("run", "--stats-json", str(tmp_path / "stats.json"), str(script), "-M3")
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == mpyc_tcp(script, "-M3")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"stats.{i}.json" for i in range(3)]
    reports = [load(tmp_path / f"stats.{i}.json") for i in range(3)]
    for i, report in enumerate(reports):
        assert (report["party"], report["parties"]) == (i, 3)
        assert report["room"] == reports[0]["room"] and report["room"].startswith("local-")
        assert report["exit"] == {"reason": "ok", "code": 0, "message": None, "peer": None}
        assert 0 < report["connect_s"] < report["elapsed_s"]
        assert [p["party"] for p in report["peers"]] == [j for j in range(3) if j != i]
        for peer in report["peers"]:
            assert set(peer) == PEER_FIELDS and peer["connected"] is True
            assert peer["path"] == {"local": "host", "remote": "host"}
            assert 0 < peer["connect_s"] <= report["connect_s"]
            trip = peer["round_trip_ms"]
            assert 0 < trip["min"] <= trip["median"] <= trip["max"] and trip["samples"] >= 1
            assert peer["mpyc_messages_sent"] > 0 and peer["channel_messages_sent"] > 0
            assert peer["channels_used"] == 1
            # What i sent to j is what j received from i, byte for byte.
            theirs = next(p for p in reports[peer["party"]]["peers"] if p["party"] == i)
            assert peer["mpyc_bytes_sent"] == theirs["mpyc_bytes_received"] > 0
    # MPyC's own count of the bytes party 0 sent (its "Stop MPyC" line) leaves out only what
    # it writes when a connection is made (its index and PRSS keys).
    counted = int(re.search(r"bytes sent: (\d+)", done.stdout).group(1))
    assert 0 < sum(p["mpyc_bytes_sent"] for p in reports[0]["peers"]) - counted < 500


def test_a_party_alone_writes_a_report_without_peers(tmp_path) -> None:
    done = mpc_net("run", "--stats-json", str(tmp_path / "solo.json"), str(DEMOS / "sort.py"))
    assert done.returncode == 0, done.stderr
    report = load(tmp_path / "solo.0.json")
    assert (report["party"], report["parties"], report["peers"]) == (0, 1, [])
    assert report["exit"]["reason"] == "ok" and report["connect_s"] is None


# Every party sends MPyC traffic, says so, and then waits (its event loop running) until a
# lost party ends the run.
EXCHANGES_THEN_WAITS = """\
import asyncio
from mpyc.runtime import mpc
mpc.run(mpc.start())
mpc.run(mpc.output(mpc.input(mpc.SecInt()(mpc.pid))))
print('exchanged', flush=True)
mpc.run(asyncio.sleep(120))
mpc.run(mpc.shutdown())
"""


def test_killed_party_is_named_in_the_others_reports(room_server, tmp_path) -> None:
    credentials = make_credentials(tmp_path, 3)
    files = [tmp_path / f"party{i}.json" for i in range(3)]
    program = tmp_path / "exchange_then_wait.py"
    program.write_text(EXCHANGES_THEN_WAITS)
    procs = start_parties(program, 3, room_server.url, "doomed",
                          credentials=[[*c, "--stats-json", str(f)]
                                       for c, f in zip(credentials, files, strict=True)])
    deadline = time.monotonic() + 60
    while "exchanged" not in procs[2].stdout.readline():  # mid-run, with MPyC traffic counted
        assert time.monotonic() < deadline and procs[2].poll() is None
    procs[2].send_signal(signal.SIGKILL)
    for i in (0, 1):
        _, err = procs[i].communicate(timeout=30)
        assert procs[i].returncode == 1, err
        report = load(files[i])
        assert report["exit"]["reason"] == "peer-lost" and report["exit"]["peer"] == 2
        assert report["exit"]["code"] == 1
        assert "lost the connection to party 2" in report["exit"]["message"]
        assert report["exit"]["message"] in err  # the report says what the party said
        assert all(p["connected"] for p in report["peers"])
        assert report["peers"][-1]["party"] == 2 and report["peers"][-1]["mpyc_bytes_sent"] > 0
    procs[2].communicate()
    assert not files[2].exists()  # killed: nothing written, and no half file


def test_a_mesh_that_cannot_be_built_is_reported(room_server, tmp_path) -> None:
    credentials = make_credentials(tmp_path, 2)
    alone = start_parties(DEMOS / "auction.py", 2, room_server.url, "empty",
                          "--join-timeout", "1", "--stats-json", str(tmp_path / "r.json"),
                          credentials=credentials, only=[0])[0]
    _, err = alone.communicate(timeout=60)
    assert alone.returncode == 1, err
    report = load(tmp_path / "r.json")
    assert report["exit"]["reason"] == "mesh-error" and report["connect_s"] is None
    assert "parties [1] did not join room 'empty'" in report["exit"]["message"]
    assert report["peers"] == [
        {"party": 1, "connected": False, "path": None, "connect_s": None, "round_trip_ms": None,
         "mpyc_messages_sent": 0, "mpyc_bytes_sent": 0, "mpyc_bytes_received": 0,
         "channel_messages_sent": 0, "channels_used": 0}]


def test_a_program_that_exits_is_told_apart_from_its_lost_peer(tmp_path) -> None:
    script = tmp_path / "fails_on_party_1.py"
    script.write_text(GIVES_UP_ON_PARTY_1)
    done = mpc_net("run", str(script), "-M3", "--peer-timeout", "3",
                   "--stats-json", str(tmp_path / "s.json"))
    assert done.returncode == 1
    quitter = load(tmp_path / "s.1.json")
    assert quitter["exit"] == {"reason": "program-exit", "code": 1,
                               "message": "party 1 gives up", "peer": None}
    for i in (0, 2):
        report = load(tmp_path / f"s.{i}.json")
        assert (report["exit"]["reason"], report["exit"]["peer"]) == ("peer-lost", 1)


@pytest.mark.parametrize("where, said", [
    ("missing/stats.json", "no such directory"),
    (".", "is a directory"),
])
def test_a_report_file_that_cannot_be_written_is_refused_first(tmp_path, where, said) -> None:
    done = mpc_net("run", "--stats-json", str(tmp_path / where), str(DEMOS / "sort.py"), "-M2")
    assert done.returncode == 2 and done.stdout == ""
    assert said in done.stderr and done.stderr.count("\n") == 1, done.stderr
