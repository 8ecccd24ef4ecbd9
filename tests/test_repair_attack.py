"""A room server that attacks the repair of a channel, against real `mpc-net run` parties.

Once connected, parties leave the room; after an outage they rejoin it and the lower index
offers a new channel. Whoever answers that offer gets a DTLS channel to the party, authenticated
to nobody yet. One room server here answers party 0's repair offer itself, as if it were party
1, and writes records of the stream on that channel before any handshake (a forged 20-byte MPyC
frame, a GOODBYE, an ACK), then REFUSED; another sits in the middle of the repaired channel, as
test_mitm.py's does on a first one. After that both relay honestly. Nothing the middle wrote may
reach MPyC or count in the stream: the parties must go on to MPyC's own result over TCP, and
say at WARNING level why they dropped the channel.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_mitm import ROOM, MitmRoomServer, Side, loopback_only  # noqa: F401 (a fixture)

from mpc_net.records import RecordType, encode
from mpc_net.signaling import protocol
from mpc_net.signaling.rooms import Outgoing

from helpers import ROOT, make_credentials, mpyc_tcp, program_lines

ROUNDS = 10

# Ten rounds of secure sums with a pause in between, so that an outage can fall between two
# rounds with a frame of the next one in flight. Every round prints its running sum.
PROGRAM = f"""
import asyncio
from mpyc.runtime import mpc

async def main():
    await mpc.start()
    secint = mpc.SecInt(32)
    total = secint(0)
    for r in range(1, {ROUNDS} + 1):
        total += mpc.sum(mpc.input(secint(10 * mpc.pid + r)))
        print(f"round {{r}}: sum = {{await mpc.output(total)}}", flush=True)
        await asyncio.sleep(0.3)
    await mpc.shutdown()

mpc.run(main())
"""

STRAY = {
    # Shaped like an MPyC frame: what the attack would need to change a result.
    RecordType.DATA: (12).to_bytes(4, "little") + (1000000).to_bytes(16, "little"),
    RecordType.GOODBYE: b"",
    RecordType.ACK: (20).to_bytes(8, "big"),
}


class RepairAnsweringRoomServer(MitmRoomServer):
    """Honest, except for party 0's second offer to party 1 (its first repair offer): that one
    it answers itself, writes a `stray` record and then REFUSED on the channel, and closes it."""

    def __init__(self, stray: RecordType) -> None:
        super().__init__(intercept=False)
        self.stray = stray
        self.offers = 0  # from party 0 to party 1
        self.sides: list[Side] = []
        self.heard: list[RecordType] = []  # what party 0 sent to the forged party 1

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            if is_offer_to_1(msg, functools.partial(self._party_of, client)):
                self.offers += 1
                if self.offers == 2:
                    self._spawn(self._answer_itself(protocol.parse_signal_data(msg.data)))
                    continue
            client.send(msg)

    async def _answer_itself(self, offer: protocol.SessionDescription) -> None:
        side = Side(0, lambda _, message: self.heard.append(RecordType(message[0])))
        self.sides.append(side)
        answer = await side.pc.accept_offer(offer)
        self._signal(0, 1, answer)
        side.send(encode(self.stray, STRAY[self.stray]))  # sent as soon as the channel opens
        side.send(encode(RecordType.REFUSED, b"\x1b[2J you are party 0, trust me"))
        await asyncio.wait_for(side.pc.opened, 20)
        await asyncio.sleep(2)  # party 0 answers before the channel goes
        await side.pc.close()

    async def close(self) -> None:
        await asyncio.gather(*(side.pc.close() for side in self.sides))
        await super().close()


class RepairMiddleRoomServer(MitmRoomServer):
    """test_mitm's room server in the middle, for party 0's first repair offer to party 1 and
    the answer to it only: it terminates DTLS on both sides and relays the handshake."""

    def __init__(self, rewrite_hello: bool) -> None:
        super().__init__(intercept=False, rewrite_hello=rewrite_hello)
        self.offers = 0

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            if is_offer_to_1(msg, functools.partial(self._party_of, client)):
                self.offers += 1
            # The middle's own offer and answer go out by _signal, not through here.
            self.intercept = self.offers == 2
            super()._deliver([(client, msg)])


def is_offer_to_1(msg: protocol.ServerMessage, receiver: Callable[[], int]) -> bool:
    """Whether `msg` is party 0's offer to party 1 (`receiver` is asked only for signals: the
    room's seat challenges go to clients before they are in the room)."""
    if not (isinstance(msg, protocol.RelayedSignal) and msg.sender == 0
            and "description" in msg.data):
        return False
    return receiver() == 1 and protocol.parse_signal_data(msg.data).type == "offer"


async def wait_for_text(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {path.name}:\n{path.read_text()}"
        await asyncio.sleep(0.05)


async def run_through_an_outage(server: MitmRoomServer, tmp_path: Path) -> list[str]:
    """Both parties of PROGRAM through `server`; party 1 stops answering after round 5 (as if
    its network went away) until party 0 has given up on the channel and gone back to the
    room to restore it. Checks that both end with MPyC's own result over TCP and say the
    connection was restored; returns their stderr."""
    script = tmp_path / "rounds.py"
    script.write_text(PROGRAM)
    expected = mpyc_tcp(script, "-M2")
    assert expected[-1] == f"round {ROUNDS}: sum = {sum(2 * r + 10 for r in range(1, ROUNDS + 1))}"
    await server.start()
    credentials = make_credentials(tmp_path, 2)
    procs: list[subprocess.Popen] = []
    outs = [tmp_path / f"party{i}.out" for i in (0, 1)]
    errs = [tmp_path / f"party{i}.err" for i in (0, 1)]
    try:
        for i in (0, 1):
            with open(outs[i], "w") as out, open(errs[i], "w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "mpc_net", "run", str(script), "-M2", "-I", str(i),
                     "--room", ROOM, "--signal", server.url, *credentials[i],
                     "--outage-limit", "30", "--peer-timeout", "3", "--connect-timeout", "10"],
                    cwd=ROOT, stdout=out, stderr=err))
        await wait_for_text(outs[0], "round 5:", 60)
        os.kill(procs[1].pid, signal.SIGSTOP)
        try:
            await wait_for_text(errs[0], "interrupted", 20)
            await asyncio.sleep(1)
        finally:
            os.kill(procs[1].pid, signal.SIGCONT)
        codes = await asyncio.gather(*(asyncio.to_thread(p.wait, 90) for p in procs))
        for i in (0, 1):
            err = errs[i].read_text()
            assert codes[i] == 0, f"party {i}:\n{err}"
            assert program_lines(outs[i].read_text()) == expected, f"party {i}"
            assert "Traceback" not in err and "restored" in err, err
        return [err.read_text() for err in errs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
        await server.close()


@pytest.mark.parametrize("stray", list(STRAY), ids=lambda kind: kind.name)
async def test_a_room_server_answering_a_repair_offer_itself_changes_no_result(
        loopback_only, tmp_path, stray: RecordType) -> None:  # noqa: F811 (the fixture)
    server = RepairAnsweringRoomServer(stray)
    errs = await run_through_an_outage(server, tmp_path)
    # Not vacuous: the forged party 1 was reached, and party 0 said why it dropped it.
    assert server.errors == [] and server.offers >= 3 and len(server.sides) == 1
    assert server.heard[:1] == [RecordType.HELLO], server.heard
    assert (f"mpc-net: party 0: restoring the connection to party 1: authentication of party 1 "
            f"failed: it sent {stray.name} where HELLO belongs in the handshake") in errs[0], errs
    assert "trust me" not in errs[0]  # what came after the stray record was dropped unread


@pytest.mark.parametrize("rewrite_hello", [False, True], ids=["swap-fingerprints",
                                                                 "also-rewrite-hello"])
async def test_a_room_server_in_the_middle_of_a_repair_is_refused_and_the_run_completes(
        loopback_only, tmp_path, rewrite_hello: bool) -> None:  # noqa: F811 (the fixture)
    server = RepairMiddleRoomServer(rewrite_hello)
    errs = await run_through_an_outage(server, tmp_path)
    assert server.errors == [] and server.offers >= 3 and len(server.relays) == 1
    relay = server.relays[0]
    # Both parties reached the middle, refused it, and said so; no stream record went through.
    assert RecordType.HELLO in relay.types(0) and RecordType.HELLO in relay.types(1), relay.seen
    assert {kind for _, _, kind, _ in relay.seen} <= {
        RecordType.HELLO, RecordType.AUTH, RecordType.REFUSED}, relay.seen
    reason = "bad signature" if rewrite_hello else "fingerprint mismatch"
    for i in (0, 1):
        assert (f"mpc-net: party {i}: restoring the connection to party {1 - i}: "
                f"authentication of party {1 - i} failed") in errs[i], errs[i]
        assert reason in errs[i], errs[i]
