"""A room server that attacks the repair of a channel, against real `mpc-net run` parties.

Once connected, parties leave the room; after an outage they rejoin it and the lower index
offers a new channel. Whoever answers that offer gets a DTLS channel to the party, authenticated
to nobody yet. This room server, run inside the test, answers party 0's repair offer itself,
as if it were party 1, and writes records of the stream on that channel before any handshake
(a forged 20-byte MPyC frame, a GOODBYE, an ACK), then REFUSED; after that it relays honestly.
Nothing it wrote may reach MPyC or count in the stream: the parties must go on to MPyC's own
result, and party 0 must say at WARNING level what happened.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Hashable
from pathlib import Path

import pytest
from test_mitm import Side, loopback_only  # noqa: F401 (a fixture)

from mpc_net.records import RecordType, encode
from mpc_net.signaling import protocol
from mpc_net.signaling.rooms import Outgoing
from mpc_net.signaling.server import RoomServer

from helpers import ROOT, make_credentials, mpyc_tcp, program_lines

ROOM = "repair"
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


class RepairAnsweringRoomServer(RoomServer):
    """Honest, except for party 0's second offer to party 1 (its first repair offer): that one
    it answers itself, writes a `stray` record and then REFUSED on the channel, and closes it."""

    def __init__(self, stray: RecordType) -> None:
        super().__init__("127.0.0.1", 0)
        self.stray = stray
        self.offers = 0  # from party 0 to party 1
        self.sides: list[Side] = []
        self.heard: list[RecordType] = []  # what party 0 sent to the forged party 1
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task] = set()

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            if (msg["type"] == "signal" and msg["from"] == 0 and self._party_of(client) == 1
                    and msg["data"]["description"]["type"] == "offer"):
                self.offers += 1
                if self.offers == 2:
                    self._spawn(self._answer_itself(msg["data"]["description"]))
                    continue
            client.send(msg)

    def _party_of(self, client: Hashable) -> int | None:
        members = getattr(self.rooms.rooms.get(ROOM), "members", {})
        return next((p for p, c in members.items() if c is client), None)

    async def _answer_itself(self, offer: dict) -> None:
        side = Side(0, lambda _, message: self.heard.append(RecordType(message[0])))
        self.sides.append(side)
        answer = await side.pc.accept_offer(offer)
        self.rooms.rooms[ROOM].members[0].send(protocol.relayed_signal(1, {"description": answer}))
        side.send(encode(self.stray, STRAY[self.stray]))  # sent as soon as the channel opens
        side.send(encode(RecordType.REFUSED, b"\x1b[2J you are party 0, trust me"))
        await asyncio.wait_for(side.pc.opened, 20)
        await asyncio.sleep(2)  # party 0 answers before the channel goes
        await side.pc.close()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(side.pc.close() for side in self.sides))
        await super().close()


async def wait_for_text(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {path.name}:\n{path.read_text()}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("stray", list(STRAY), ids=lambda kind: kind.name)
async def test_a_room_server_answering_a_repair_offer_itself_changes_no_result(
        loopback_only, tmp_path, stray: RecordType) -> None:  # noqa: F811 (the fixture)
    script = tmp_path / "rounds.py"
    script.write_text(PROGRAM)
    expected = mpyc_tcp(script, "-M2")
    assert expected[-1] == f"round {ROUNDS}: sum = {sum(2 * r + 10 for r in range(1, ROUNDS + 1))}"

    server = RepairAnsweringRoomServer(stray)
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
        # After round 5 party 1 stops answering (as if its network went away) until party 0
        # has given up on the channel and gone back to the room to restore it.
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
        # Not vacuous: the forged party 1 was reached, and party 0 said why it dropped it.
        assert server.errors == [] and server.offers >= 3 and len(server.sides) == 1
        assert server.heard[:1] == [RecordType.HELLO], (server.heard, errs[0].read_text().splitlines())
        err = errs[0].read_text()
        assert (f"mpc-net: party 0: restoring the connection to party 1: authentication of party 1 "
                f"failed: it sent {stray.name} where HELLO belongs in the handshake") in err, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.wait()
        await server.close()
