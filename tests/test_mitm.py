"""A room server in the middle: it swaps the DTLS fingerprints and relays the data channel.

The room server chooses which certificates the parties' DTLS sessions end at. This one, run
inside the test, answers party 0's offer to party 1 with its own peer connection, makes its own
offer to party 1, and copies every data channel message between the two channels, so DTLS ends
in the middle on both sides. The parties are real `mpc-net run -I i` processes with real keys
and a roster; they must notice, name each other, stop, and never send MPyC a byte (no DATA
record) through the middle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Hashable

import pytest

from mpc_net.auth import Hello, fingerprint_digest
from mpc_net.native.peer import NativePeerConnection, use_host_addresses
from mpc_net.records import RecordType
from mpc_net.sdp import fingerprints
from mpc_net.signaling import protocol
from mpc_net.signaling.protocol import SessionDescription
from mpc_net.signaling.rooms import Outgoing, Room
from mpc_net.signaling.server import RoomServer

from helpers import DEMOS, ROOT, make_credentials, program_lines, start_parties

PARTIES = 3
ROOM = "room"
EXIT_BOUND = 45.0  # seconds for party 0 and party 1 to give up; they take a few
# Bounded timeouts, so that no party outlives the test by minutes whatever happens.
TIMEOUTS = ["--join-timeout", "30", "--connect-timeout", "20", "--peer-timeout", "5"]


class Side:
    """The relay's end of one channel: its peer connection, facing party `pid`.

    Bound to the NativePeerConnection in place of mpc-net's transport, so it gets the channel's
    messages and the peer connection's states.
    """

    def __init__(self, pid: int, on_message, outgoing=lambda side, message: message) -> None:
        self.pid = pid
        self.pc = NativePeerConnection([])
        self.states: list[str] = []
        self.outbox: list[bytes] = []  # for party `pid`, waiting for this side's channel to open
        self.errors: list[Exception] = []  # raised by the relay's handling of a message
        self._on_message = on_message
        # What the relay makes of a message as it leaves this side (unchanged by default).
        self._outgoing = outgoing
        self.pc.bind(self)
        self.pc.opened.add_done_callback(self._opened)

    @property
    def open(self) -> bool:
        return (self.pc.opened.done() and not self.pc.opened.cancelled()
                and self.pc.opened.exception() is None)

    def _opened(self, opened: asyncio.Future[None]) -> None:
        if not opened.cancelled() and opened.exception() is None:
            self.flush()

    def send(self, message: bytes) -> None:
        self.outbox.append(message)
        self.flush()

    def flush(self) -> None:
        if self.pc.channel.readyState != "open":
            return
        outbox, self.outbox = self.outbox, []
        for message in outbox:
            self.pc.channel.send(self._outgoing(self, message))

    # What the NativePeerConnection forwards to a bound transport.
    def on_message(self, message: bytes | str) -> None:
        try:
            self._on_message(self.pid, message)
        except Exception as exc:  # raised into aiortc's receive step, it would end the channel
            self.errors.append(exc)

    def on_connection_state(self, state: str) -> None:
        self.states.append(state)

    def on_channel_close(self) -> None:
        pass

    def on_buffered_amount_low(self) -> None:
        pass


class Relay:
    """The middle of one pair: `sides[p]` is the peer connection that party p talks to.

    Every message is recorded as (sender, receiver, record type, length) and then forwarded
    unchanged, or, with `rewrite_hello`, with the fingerprint digests of a HELLO replaced by the
    ones its receiver expects, so that only the signatures can give the middle away. The digests
    are those of the receiver's side as the HELLO leaves it: a HELLO can arrive before that side
    has the receiver's answer (its remote description), and waits in the side's outbox until
    the channel opens.
    """

    def __init__(self, low: int, high: int, rewrite_hello: bool) -> None:
        self.sides = {p: Side(p, self._forward, self._outgoing) for p in (low, high)}
        self.rewrite_hello = rewrite_hello
        self.seen: list[tuple[int, int, int, int]] = []
        self.honest_sdp: dict[int, str] = {}  # what each party sent, with its own certificate
        self.forged_sdp: dict[int, str] = {}  # what the middle sent each party instead

    def _forward(self, sender: int, message: bytes | str) -> None:
        receiver = next(p for p in self.sides if p != sender)
        if isinstance(message, str):
            message = message.encode()
        self.seen.append((sender, receiver, message[0] if message else -1, len(message)))
        self.sides[receiver].send(message)

    def _outgoing(self, side: Side, message: bytes) -> bytes:
        if self.rewrite_hello and message[:1] == bytes((RecordType.HELLO,)):
            return self._rewritten(message, side)
        return message

    def _rewritten(self, message: bytes, side: Side) -> bytes:
        hello = Hello.decode(message[1:])
        pc = side.pc  # the receiver checks against what it got from this side
        forged = dataclasses.replace(
            hello, own_fingerprints=fingerprint_digest(fingerprints(pc.local_sdp)),
            peer_fingerprints=fingerprint_digest(fingerprints(pc.remote_sdp)))
        return bytes((RecordType.HELLO,)) + forged.encode()

    @property
    def errors(self) -> list[Exception]:
        return [exc for side in self.sides.values() for exc in side.errors]

    def types(self, sender: int) -> set[int]:
        return {kind for s, _, kind, _ in self.seen if s == sender}

    async def close(self) -> None:
        await asyncio.gather(*(side.pc.close() for side in self.sides.values()))


class MitmRoomServer(RoomServer):
    """A room server that is honest except, with `intercept`, between party 0 and party 1.

    With `party_1_late`, the middle offers to party 1 only once its channel to party 0 is open,
    so that party 0's HELLO always reaches it before it has the answer it rewrites HELLOs for.
    """

    def __init__(self, *, intercept: bool, rewrite_hello: bool = False,
                 party_1_late: bool = False) -> None:
        super().__init__("127.0.0.1", 0)
        self.intercept = intercept
        self.rewrite_hello = rewrite_hello
        self.party_1_late = party_1_late
        self.relays: list[Relay] = []
        self.relayed: list[tuple[int, int, str]] = []  # signals passed on untouched
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task] = set()

    def _deliver(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            if isinstance(msg, protocol.RelayedSignal) and "description" in msg.data:
                sender, receiver = msg.sender, self._party_of(client)
                description = protocol.parse_signal_data(msg.data)
                if self.intercept and {sender, receiver} == {0, 1}:
                    self._spawn(self._intercept(sender, description))
                    continue
                self.relayed.append((sender, receiver, description.type))
            client.send(msg)

    def _party_of(self, client: Hashable) -> int:
        return next(p for p, c in self.room.members.items() if c is client)

    @property
    def room(self) -> Room:
        """The one room of the test (rooms are keyed by name and roster)."""
        return next(room for (name, _), room in self.rooms.rooms.items() if name == ROOM)

    def _signal(self, receiver: int, sender: int, description: SessionDescription) -> None:
        client = self.room.members[receiver]
        client.send(protocol.RelayedSignal(sender, protocol.signal_data(description)))

    async def _intercept(self, sender: int, description: SessionDescription) -> None:
        if sender == 0 and description.type == "offer":
            relay = Relay(0, 1, self.rewrite_hello)
            self.relays.append(relay)
            relay.honest_sdp[0] = description.sdp
            answer = await relay.sides[0].pc.accept_offer(description)  # as if from party 1
            offer = await relay.sides[1].pc.create_offer()  # as if from party 0
            relay.forged_sdp[0], relay.forged_sdp[1] = answer.sdp, offer.sdp
            self._signal(0, 1, answer)
            if self.party_1_late:
                await relay.sides[0].pc.opened
            self._signal(1, 0, offer)
        elif sender == 1 and description.type == "answer":
            relay = self.relays[-1]
            relay.honest_sdp[1] = description.sdp
            await relay.sides[1].pc.accept_answer(description)
        else:
            raise AssertionError(f"unexpected {description.type} from party {sender}")

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
        await asyncio.gather(*(relay.close() for relay in self.relays))
        await super().close()


@pytest.fixture
def loopback_only():
    use_host_addresses(["127.0.0.1"])  # the relay's own candidates, like the parties'
    yield
    use_host_addresses(None)


def start_party(i: int, url: str, credentials: list[list[str]]) -> subprocess.Popen:
    """Party i of the auction as its own `mpc-net run -I i` process (as in start_parties)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mpc_net", "run", str(DEMOS / "auction.py"), f"-M{PARTIES}",
         "-I", str(i), "--room", ROOM, "--signal", url, *credentials[i], *TIMEOUTS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def joined(server: RoomServer, party: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not any(name == ROOM and party in room.members
                  for (name, _), room in server.rooms.rooms.items()):
        assert time.monotonic() < deadline, f"party {party} did not join the room"
        await asyncio.sleep(0.05)


async def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str, float]:
    """Wait for a party without blocking the loop the relay runs on."""
    started = time.monotonic()
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return out, err, time.monotonic() - started


async def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        await asyncio.to_thread(proc.communicate, timeout=10)


@pytest.mark.parametrize(("rewrite_hello", "party_1_late"), [
    (False, False), (True, False), (True, True)],
    ids=["swap-fingerprints", "also-rewrite-hello", "also-rewrite-hello-party-1-late"])
async def test_room_server_in_the_middle_is_refused(loopback_only, tmp_path, rewrite_hello: bool,
                                                    party_1_late: bool) -> None:
    server = MitmRoomServer(intercept=True, rewrite_hello=rewrite_hello,
                            party_1_late=party_1_late)
    await server.start()
    credentials = make_credentials(tmp_path, PARTIES)
    procs: list[subprocess.Popen] = []
    try:
        # Party 2 first, so that both its channels are being built while the middle works.
        procs.append(start_party(2, server.url, credentials))
        await joined(server, 2)
        procs[:0] = [start_party(i, server.url, credentials) for i in (0, 1)]
        results = await asyncio.gather(*(finish(procs[i], EXIT_BOUND + 15) for i in (0, 1)))
        # The middle did its part: a failure of its own would look like a party's silence.
        assert server.errors == [] and [r.errors for r in server.relays] == [[]], \
            (server.errors, [r.errors for r in server.relays])
        for i, (out, err, elapsed) in enumerate(results):
            other = 1 - i
            assert procs[i].returncode not in (0, None), f"party {i} ran through the middle"
            assert elapsed < EXIT_BOUND, f"party {i} took {elapsed:.1f} s to give up:\n{err}"
            assert "Traceback" not in err, err
            assert f"authentication of party {other} failed" in err, err
            # Its own check fails, or the peer's refusal quotes the same reason.
            assert ("bad signature" if rewrite_hello else "fingerprint mismatch") in err, err
            assert "Winner" not in out, out
        # Party 2 cannot finish without them; it only has to end (or is killed below).
        try:
            await finish(procs[2], 10)
        except subprocess.TimeoutExpired:
            pass

        assert len(server.relays) == 1, "party 0 offered once, through the middle"
        relay = server.relays[0]
        # Not vacuous: each party got the middle's certificate, and DTLS ended in the middle.
        for p in (0, 1):
            assert fingerprints(relay.forged_sdp[p]) != fingerprints(relay.honest_sdp[1 - p])
            assert fingerprints(relay.forged_sdp[p]) == fingerprints(
                relay.sides[p].pc.local_sdp)
            side = relay.sides[p]
            assert side.open, f"the middle's channel to party {p} never opened"
            assert "connected" in side.states, side.states
        # The middle saw the handshake, and nothing that MPyC would have written.
        assert RecordType.HELLO in relay.types(0) and RecordType.HELLO in relay.types(1), \
            relay.seen
        if rewrite_hello:
            assert RecordType.AUTH in relay.types(0) and RecordType.AUTH in relay.types(1), \
                relay.seen
        data = [record for record in relay.seen if record[2] == RecordType.DATA]
        assert data == [], f"MPyC bytes went through the middle: {data}"
        assert {kind for _, _, kind, _ in relay.seen} <= {
            RecordType.HELLO, RecordType.AUTH, RecordType.REFUSED, RecordType.PING,
            RecordType.PONG}
        # The other pairs were left alone: their signals went through untouched.
        assert {(0, 2, "offer"), (1, 2, "offer")} <= set(server.relayed), server.relayed
        assert not any({s, r} == {0, 1} for s, r, _ in server.relayed)
    finally:
        await stop(procs)
        await server.close()
    for relay in server.relays:
        for side in relay.sides.values():
            assert side.pc.connection_state == "closed"


async def test_room_server_that_keeps_its_hands_off_sdp_lets_the_run_complete(
        loopback_only, tmp_path) -> None:
    server = MitmRoomServer(intercept=False)
    await server.start()
    credentials = make_credentials(tmp_path, PARTIES)
    procs: list[subprocess.Popen] = []
    try:
        procs = start_parties(DEMOS / "auction.py", PARTIES, server.url, ROOM,
                              credentials=credentials)
        results = await asyncio.gather(*(finish(proc, 60) for proc in procs))
        for i, (out, err, _) in enumerate(results):
            assert procs[i].returncode == 0, f"party {i}: {err}"
            assert program_lines(out) == ["Vickrey auction with 3 sealed bids",
                                          "Winner: party 1",
                                          "Price (second-highest bid): 50"], f"party {i}: {out}"
        assert {(0, 1, "offer"), (1, 0, "answer")} <= set(server.relayed)
        assert server.relays == [] and server.errors == []
    finally:
        await stop(procs)
        await server.close()
