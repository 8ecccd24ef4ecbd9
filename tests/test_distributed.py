"""Parties as separate `mpc-net run -I i` processes meeting through `mpc-net signal`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpc_net.native.identity import FileIdentity, load_roster
from mpc_net.native.signaling import SignalingClient
from mpc_net.signaling import protocol

from helpers import (
    DEMOS,
    ROOT,
    RoomServerProcess,
    free_port,
    make_credentials,
    mpc_net,
    mpyc_tcp,
    program_lines,
    start_parties,
)


@pytest.fixture
def room_server():
    server = RoomServerProcess()
    yield server
    server.close()


# Once also with MPC_NET_STOCK_SCTP=1: aiortc's SCTP as shipped.
@pytest.mark.parametrize("parties, stock_sctp", [(3, False), (5, False), (3, True)],
                         ids=["3", "5", "3-stock-sctp"])
def test_separate_processes_match_tcp(room_server, parties: int, stock_sctp: bool, tmp_path,
                                      monkeypatch) -> None:
    monkeypatch.setenv("MPC_NET_STOCK_SCTP", "1" if stock_sctp else "0")  # parties inherit it
    script = DEMOS / "auction.py"
    expected = mpyc_tcp(script, f"-M{parties}")
    procs = start_parties(script, parties, room_server.url, f"auction-{parties}",
                          credentials=make_credentials(tmp_path, parties))
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == expected, f"party {i}"


def test_native_only_rooms_keep_mpycs_array_transfers_and_must_agree(room_server,
                                                                      tmp_path) -> None:
    script = ROOT / "benchmarks" / "bulk.py"
    expected = mpyc_tcp(script, "-M3", "2000")
    credentials = make_credentials(tmp_path, 3)
    native = [[*c, "--native-only"] for c in credentials]
    procs = start_parties(script, 3, room_server.url, "native", "2000", credentials=native)
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == expected, f"party {i}"
    # One party in MPyC's portable mode: refused at the handshake, not a garbled computation.
    # A party whose peers refused each other and left may only see an empty room: bound its wait.
    procs = start_parties(script, 3, room_server.url, "mixed", "2000", "--join-timeout", "20",
                          credentials=[*native[:2], credentials[2]])
    told = []
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode not in (0, None), f"party {i} went ahead"
        assert "Traceback" not in err, err
        if "--mix32-64bit" in err:
            told.append(i)
    # Party 2 and whoever exchanged HELLOs with it say why; the other may only see a party go.
    assert 2 in told and len(told) >= 2, told


def test_killed_party_is_reported_by_everyone_else(room_server, tmp_path) -> None:
    script = DEMOS / "comparisons.py"
    procs = start_parties(script, 3, room_server.url, "doomed",
                          credentials=make_credentials(tmp_path, 3))
    # Kill party 2 once the computation is under way (all channels open, comparisons running).
    deadline = time.monotonic() + 60
    while "connected to all" not in procs[2].stderr.readline():
        assert time.monotonic() < deadline and procs[2].poll() is None
    time.sleep(1.5)
    procs[2].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    for i in (0, 1):
        _, err = procs[i].communicate(timeout=30)
        elapsed = time.monotonic() - killed
        assert procs[i].returncode not in (0, None), f"party {i} succeeded without party 2"
        assert elapsed < 15, f"party {i} took {elapsed:.1f} s to give up"
        assert "party 2" in err.strip().splitlines()[-1], err
        assert "Traceback" not in err
    procs[2].communicate()


def test_room_server_restart_mid_computation(room_server, tmp_path) -> None:
    """The room server only introduces the parties: restarting it mid-computation changes
    nothing for channels that are already open."""
    script = DEMOS / "comparisons.py"
    expected = mpyc_tcp(script, "1000", "-M3")  # a few seconds: the restart falls inside
    procs = start_parties(script, 3, room_server.url, "no-server-needed", "1000",
                          credentials=make_credentials(tmp_path, 3))
    for proc in procs:
        while "connected to all" not in proc.stderr.readline():
            assert proc.poll() is None, "a party ended before connecting"
    port = int(room_server.url.rsplit(":", 1)[1])
    room_server.close()
    restarted = RoomServerProcess(port)
    try:
        assert all(proc.poll() is None for proc in procs), "the computation ended too soon"
        for i, proc in enumerate(procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"party {i}: {err}"
            assert program_lines(out) == expected
    finally:
        restarted.close()


def test_room_server_that_requires_a_join_token(tmp_path) -> None:
    server = RoomServerProcess(0, "--join-token", "open-sesame")
    try:
        credentials = make_credentials(tmp_path, 2)
        script = DEMOS / "auction.py"
        without = start_parties(script, 2, server.url, "locked", credentials=credentials,
                                only=[0])[0]
        _, err = without.communicate(timeout=60)
        assert without.returncode == 1 and "join token is missing or wrong" in err, err
        with_token = [c + ["--join-token", "open-sesame"] for c in credentials]
        for proc in start_parties(script, 2, server.url, "locked", credentials=with_token):
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert "Winner: party 1" in out
    finally:
        server.close()


# Says that it runs, then waits for a line on stdin; never starts MPyC.
WAITS_FOR_A_LINE = """\
import sys
print('the program runs', flush=True)
sys.stdin.readline()
"""


def _party(script: Path, url: str, room: str, credentials: list[str], *options: str,
           ) -> subprocess.Popen:
    """Party 0 of 2, with a stdin of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "mpc_net", "run", str(script), "-M2", "-I", "0", "--room", room,
         "--signal", url, *credentials, *options],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


async def _take_seat_1(url: str, room: str, credentials: list[str]) -> SignalingClient:
    """Seat 1 of 2, taken by this test with party 1's key: it sees whom the room holds."""
    client = SignalingClient()
    await client.connect(url)
    client.joined = await client.join(room, 1, 2, identity=FileIdentity.load(credentials[1]),
                                      roster=load_roster(credentials[3]))
    return client


async def _next(client: SignalingClient, kind: type) -> protocol.ServerMessage:
    """The next room message of `kind`, passing over party 0's offer."""
    while not isinstance(message := await asyncio.wait_for(client.recv(), 60), kind):
        pass
    return message


def test_the_room_is_joined_before_the_program_runs(room_server, tmp_path) -> None:
    """A party joins its room while MPyC and aiortc load, before its program's first line; a
    program that never starts MPyC still leaves the room (and its peers see it go)."""
    script = tmp_path / "waits.py"
    script.write_text(WAITS_FOR_A_LINE)
    credentials = make_credentials(tmp_path, 2)
    party = _party(script, room_server.url, "early", credentials[0])

    async def observe() -> None:
        while not program_lines(line := party.stdout.readline()):
            assert line, "party 0 ended before its program ran"  # (MPyC's log lines pass)
        assert line == "the program runs\n"
        client = await _take_seat_1(room_server.url, "early", credentials[1])
        assert client.joined.peers == [0], "party 0 was not in the room when its program ran"
        party.stdin.write("\n")
        party.stdin.flush()  # the program ends, MPyC never started
        assert (await _next(client, protocol.PeerLeft)).party == 0
        await client.close()

    asyncio.run(observe())
    _, err = party.communicate(timeout=60)
    assert party.returncode == 0, err
    assert "Traceback" not in err, err


def test_a_program_that_fails_at_import_leaves_the_room(room_server, tmp_path) -> None:
    script = tmp_path / "fails.py"
    script.write_text("import no_such_module_for_mpc_net\n")
    credentials = make_credentials(tmp_path, 2)
    report = tmp_path / "report.json"

    async def observe() -> subprocess.Popen:
        client = await _take_seat_1(room_server.url, "fails", credentials[1])
        party = _party(script, room_server.url, "fails", credentials[0],
                       "--stats-json", str(report))
        assert (await _next(client, protocol.PeerJoined)).party == 0
        assert (await _next(client, protocol.PeerLeft)).party == 0
        await client.close()
        return party

    party = asyncio.run(observe())
    _, err = party.communicate(timeout=60)
    assert party.returncode == 1, err
    error = "ModuleNotFoundError: No module named 'no_such_module_for_mpc_net'"
    assert err.strip().splitlines()[-1] == error, err
    # As Python shows it: the program's own frames, not mpc-net's.
    assert f'File "{script}", line 1, in <module>' in err and "mpc_net/" not in err, err
    exit = json.loads(report.read_text())["exit"]
    assert exit["reason"] == "program-error" and exit["message"] == error


def test_a_room_server_out_of_reach_is_reported_before_the_program_runs(tmp_path) -> None:
    script = tmp_path / "waits.py"
    script.write_text(WAITS_FOR_A_LINE)
    credentials = make_credentials(tmp_path, 2)
    report = tmp_path / "report.json"
    url = f"ws://127.0.0.1:{free_port()}"
    party = _party(script, url, "nobody", credentials[0], "--stats-json", str(report))
    out, err = party.communicate(timeout=60)
    assert party.returncode == 1, err
    assert program_lines(out) == []  # the program did not run
    assert err.strip() == (f"mpc-net: cannot connect to room server {url}: connection refused "
                           "(connect-failed)")
    exit = json.loads(report.read_text())["exit"]
    assert exit["reason"] == "mesh-error" and "cannot connect to room server" in exit["message"]


def test_a_program_under_asyncio_run_takes_up_the_connect_under_way(tmp_path) -> None:
    """asyncio.run() makes a loop of its own; it gets the one where the room visit began."""
    script = tmp_path / "under_asyncio_run.py"
    script.write_text(
        "import asyncio\n"
        "from mpyc.runtime import mpc\n"
        "async def main():\n"
        "    await mpc.start()\n"
        "    print('total', await mpc.output(mpc.sum(mpc.input(mpc.SecInt()(mpc.pid + 1)))))\n"
        "    await mpc.shutdown()\n"
        "asyncio.run(main())\n")
    done = mpc_net("run", str(script), "-M3", "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    assert program_lines(done.stdout) == ["total 6"]


def test_a_program_slow_to_start_mpyc_keeps_its_channels(room_server, tmp_path) -> None:
    """Its peers reach it and hear from it while its program works before mpc.start(), for
    longer than they wait for an unreachable party or a silent one."""
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "from mpyc.runtime import mpc\n"
        "if mpc.pid == 0:\n"
        "    time.sleep(8)\n"
        "mpc.run(mpc.start())\n"
        "print('total', mpc.run(mpc.output(mpc.sum(mpc.input(mpc.SecInt()(mpc.pid + 1))))))\n"
        "mpc.run(mpc.shutdown())\n")
    procs = start_parties(script, 3, room_server.url, "slow", "--connect-timeout", "3",
                          "--peer-timeout", "3", credentials=make_credentials(tmp_path, 3))
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"party {i}: {err}"
        assert program_lines(out) == ["total 6"], f"party {i}"
