"""Fuzzing the signaling schema, the room state and a running room server.

Bounded in time by the number of examples, not by deadlines: the file takes seconds, while a
per-example deadline would only fail on a busy machine.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import random
import tracemalloc
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field

import pytest
import seats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from mpc_net.native.signaling import SignalingClient
from mpc_net.signaling import protocol
from mpc_net.signaling.limits import Limits
from mpc_net.signaling.protocol import (
    MAX_PARTIES,
    ErrorCode,
    ProtocolError,
    encode,
    parse_client_message,
    parse_server_message,
)
from mpc_net.signaling.server import RoomServer

TIMEOUT = 5
# Small messages keep oversized input cheap to make; the server's transport limit is 2x this.
MAX_BYTES = 4096
SERVER_LIMITS = Limits(max_message_bytes=MAX_BYTES, send_queue_bytes=MAX_BYTES * 16)
CODES = {code.value for code in ErrorCode}

# -- strategies -----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3),
    max_leaves=12,
)
ROOMS = st.sampled_from(["fz-a", "fz-b", "valid"])
DATA = st.dictionaries(st.sampled_from(["sdp", "candidate", "x"]), JSON, max_size=3)


@st.composite
def valid_client_messages(draw: st.DrawFn) -> protocol.ClientMessage:
    parties = draw(st.integers(1, 4))
    return draw(st.one_of(
        st.just(protocol.Hello()),
        # Well formed, but its proof signs no challenge: a seat is never had this way.
        st.builds(protocol.Join, ROOMS, st.integers(0, parties - 1), st.just(parties),
                  key=st.text(max_size=20), proof=st.binary(min_size=64, max_size=64),
                  token=st.none() | st.text(max_size=20)),
        st.builds(protocol.Signal, st.integers(0, 4), DATA),
        st.just(protocol.Leave()),
    ))


@st.composite
def wrongly_typed(draw: st.DrawFn, messages: st.SearchStrategy[protocol.Message]) -> dict:
    """A valid message's wire form with fields dropped, added or replaced by values of any
    type."""
    msg = draw(messages).to_wire()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from([*msg, "type", "version", "extra", "from", "peers"]))
        if draw(st.booleans()):
            msg.pop(name, None)
        else:
            msg[name] = draw(JSON | st.integers(-3, MAX_PARTIES + 3))
    return msg


@st.composite
def truncated(draw: st.DrawFn, messages: st.SearchStrategy[protocol.Message]) -> str:
    text = encode(draw(messages))
    return text[: draw(st.integers(0, len(text) - 1))]


def _oversized(size: int) -> str:
    return json.dumps({"type": "signal", "to": 1, "data": {"pad": "x" * size}})


NASTY = st.sampled_from([
    '{"type":"signal","to":1,"data":{"x":NaN}}',
    '{"type":"signal","to":1,"data":{"x":1e400}}',
    '{"type":"signal","to":1,"data":{"x":' + "9" * 5000 + "}}",
    "[" * 3000 + "]" * 3000,
    '{"type":"signal","to":1,"data":' + '{"a":' * 40 + "1" + "}" * 40 + "}",
    '{"type":"join","version":1,"room":"r","party":0,"parties":2,"token":"\\ud800"}',
    '{"type":"join","version":1,"room":"r","party":0,"parties":2,"key":"\\udfff\\u0000"}',
    '{"type":"join","version":3,"room":"r","party":0,"parties":2,"key":"\\udfff",'
    '"proof":"' + "A" * 86 + '","roster":{"mpc-net-roster":1,"parties":[{"key":"\\ud800"}]}}',
    '{"type":"hello","version":3.0}',
    '{"type":"leave","type":"join"}',
    "\x00",
    "",
])
GARBAGE = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=100),
    st.builds(json.dumps, JSON),
    st.builds(json.dumps, wrongly_typed(valid_client_messages())),
    truncated(valid_client_messages()),
    st.builds(_oversized, st.integers(MAX_BYTES - 60, 3 * MAX_BYTES)),
    NASTY,
)


# -- the schema -----------------------------------------------------------------------------------


def _client_parse(raw: str | bytes,
                  max_bytes: int = MAX_BYTES) -> protocol.ClientMessage | None:
    try:
        return parse_client_message(raw, max_bytes=max_bytes)
    except ProtocolError as exc:
        assert exc.code in CODES and exc.message and "\n" not in exc.message
        return None


@settings(max_examples=300, deadline=None)
@given(GARBAGE, st.integers(1, 2 * MAX_BYTES))
def test_client_parser_raises_only_protocol_errors(raw: str | bytes, max_bytes: int) -> None:
    msg = _client_parse(raw, max_bytes)
    if msg is not None:  # accepted: canonical, within the limit, and parsed the same again
        assert _client_parse(encode(msg), 10**9) == msg
        assert len(raw) <= max_bytes


@settings(max_examples=40, deadline=None)
@given(valid_client_messages())
def test_every_proper_prefix_of_a_message_is_bad_json(msg: protocol.ClientMessage) -> None:
    text = encode(msg)
    assert parse_client_message(text) == msg
    for end in range(len(text)):
        with pytest.raises(ProtocolError) as info:
            parse_client_message(text[:end])
        assert info.value.code == ErrorCode.BAD_JSON


KEYS = st.text(max_size=20)  # rooms check keys when seating; the schema only bounds them
ICE_SERVERS = st.lists(st.fixed_dictionaries(
    {"urls": st.text(max_size=12) | st.lists(st.text(max_size=12), min_size=1, max_size=2)},
    optional={"username": st.text(max_size=8), "credential": st.text(max_size=8)}), max_size=2)


@st.composite
def joined_messages(draw: st.DrawFn) -> protocol.Joined:
    parties = draw(st.integers(1, 8))
    party = draw(st.integers(0, parties - 1))
    peers = sorted(draw(st.sets(st.integers(0, parties - 1).filter(lambda p: p != party))))
    keys = draw(st.dictionaries(st.sampled_from(peers), KEYS) if peers else st.just({}))
    return protocol.Joined(draw(ROOMS), party, parties, peers, draw(ICE_SERVERS), keys)


SERVER_MESSAGES = st.one_of(
    st.builds(lambda peers, n: protocol.Joined("r", n, n + 1, peers[:n], []),
              st.just(list(range(8))), st.integers(0, 7)),
    joined_messages(),
    st.builds(protocol.Challenge, st.binary(min_size=32, max_size=32)),
    st.just(protocol.OtherRoster()),
    st.builds(protocol.IceServers, ICE_SERVERS),
    st.builds(protocol.PeerJoined, st.integers(0, MAX_PARTIES - 1), st.none() | KEYS),
    st.builds(protocol.PeerLeft, st.integers(0, MAX_PARTIES - 1)),
    st.builds(protocol.RelayedSignal, st.integers(0, MAX_PARTIES - 1), DATA),
    st.builds(protocol.Error, st.sampled_from(sorted(CODES)), st.text(max_size=30)),
    st.builds(protocol.Closing, st.text(max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.builds(json.dumps, wrongly_typed(SERVER_MESSAGES)),
                 truncated(SERVER_MESSAGES), st.text(max_size=60), st.binary(max_size=60)))
def test_server_parser_raises_only_protocol_errors(raw: str | bytes) -> None:
    """What a client does with a broken or hostile server: a ProtocolError, nothing else."""
    try:
        msg = parse_server_message(raw)
    except ProtocolError as exc:
        assert exc.code in CODES
        return
    assert parse_server_message(encode(msg)) == msg


@settings(deadline=None)
@given(SERVER_MESSAGES)
def test_server_builders_round_trip(msg: protocol.ServerMessage) -> None:
    assert parse_server_message(encode(msg)) == msg


CLIENT_MESSAGES = st.one_of(
    valid_client_messages(),
    st.builds(protocol.Join, ROOMS, st.just(0), st.integers(1, MAX_PARTIES), key=KEYS,
              proof=st.binary(min_size=64, max_size=64),
              roster=st.none() | st.dictionaries(st.text(max_size=6), JSON, max_size=3),
              token=st.none() | KEYS),
)


@settings(deadline=None)
@given(CLIENT_MESSAGES)
def test_client_messages_round_trip(msg: protocol.ClientMessage) -> None:
    """parse(serialise(x)) == x, and the wire form is the JSON of to_wire()."""
    assert parse_client_message(encode(msg)) == msg
    assert json.loads(encode(msg)) == msg.to_wire()


@settings(max_examples=300, deadline=None)
@given(st.one_of(wrongly_typed(CLIENT_MESSAGES), wrongly_typed(SERVER_MESSAGES),
                 st.dictionaries(st.sampled_from(["type", "to", "from", "data", "party"]), JSON)))
def test_fuzzed_wire_dicts_parse_or_raise_protocol_errors(wire: dict) -> None:
    """A dict off the wire is a typed message or a ProtocolError, in either direction."""
    raw = json.dumps(wire)
    for parse in (parse_client_message, parse_server_message):
        try:
            msg = parse(raw)
        except ProtocolError as exc:
            assert exc.code in CODES
            continue
        assert parse(encode(msg)) == msg


SDP = st.text(max_size=40)
PAYLOADS = st.one_of(
    st.builds(protocol.SessionDescription, st.sampled_from(["offer", "answer"]), SDP),
    st.builds(protocol.CheckCodeMessage, st.sampled_from(["commit", "reveal"]),
              st.binary(max_size=40)),
)


@given(PAYLOADS)
def test_signal_payloads_round_trip(payload: protocol.SignalPayload) -> None:
    data = protocol.signal_data(payload)
    assert protocol.parse_signal_data(data) == payload
    # ... through a signal and its relayed copy, as the room server passes it on
    relayed = parse_client_message(encode(protocol.Signal(1, data)))
    assert protocol.parse_signal_data(relayed.data) == payload


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.builds(lambda p: protocol.signal_data(p), PAYLOADS).flatmap(
        lambda data: st.builds(lambda junk: _perturb(data, junk), JSON)),
    st.dictionaries(st.sampled_from(["description", "check", "type", "sdp"]), JSON),
))
def test_fuzzed_signal_data_parses_or_raises_protocol_errors(data: dict) -> None:
    """What a stranger relays as signal data is a payload or a ProtocolError, nothing else."""
    try:
        payload = protocol.parse_signal_data(data)
    except ProtocolError as exc:
        assert exc.code == ErrorCode.BAD_MESSAGE and "\n" not in exc.message
        return
    assert protocol.parse_signal_data(protocol.signal_data(payload)) == payload


def _perturb(data: dict, junk: object) -> dict:
    """Replace the innermost value of a payload's data by `junk`."""
    [(outer, inner)] = data.items()
    name = next(iter(inner)) if outer == "check" else "sdp"
    return {outer: inner | {name: junk}}


NOT_JSON = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, b"bytes", (1, 2), {1, 2}, object()]),
    st.builds(lambda key: {key: 1}, st.integers() | st.none() | st.booleans()),
)


@settings(deadline=None)
@given(DATA, NOT_JSON, st.sampled_from([protocol.Signal, protocol.RelayedSignal]))
def test_builders_refuse_data_that_is_not_json(data: dict, bad: object, build) -> None:
    """A caller's mistake is a ProtocolError here, not a ValueError from encode() later."""
    with pytest.raises(ProtocolError) as info:
        build(1, data | {"nested": [{"bad": bad}]})
    assert info.value.code == ErrorCode.BAD_MESSAGE


# -- the room state -------------------------------------------------------------------------------


class RoomsMachine(RuleBasedStateMachine):
    """Random joins, signals, leaves and disconnects over a few connections; the state stays
    consistent, every reply is a valid server message, and nothing outlives its connections."""

    connections = Bundle("connections")

    def __init__(self) -> None:
        super().__init__()
        self.rooms = seats.new_rooms(max_rooms=2)
        self.count = 0

    @rule(target=connections)
    def connect(self) -> str:
        self.count += 1
        return f"conn-{self.count}"

    @rule(conn=connections, msg=valid_client_messages())
    def send(self, conn: Hashable, msg: protocol.ClientMessage) -> None:
        try:
            outgoing = self.rooms.handle(conn, parse_client_message(encode(msg)))
        except ProtocolError as exc:
            assert exc.code in CODES
            return
        for _, reply in outgoing:
            assert parse_server_message(encode(reply)) == reply

    @rule(conn=connections, room=ROOMS, seat=st.integers(0, 3), parties=st.integers(1, 4),
          roster=st.booleans())
    def take_seat(self, conn: Hashable, room: str, seat: int, parties: int,
                  roster: bool) -> None:
        """A proven join: open seats, or a roster's (of keys 0..parties-1)."""
        party = seat % parties
        try:
            outgoing = seats.seat(self.rooms, conn, room, party, parties,
                                  roster=seats.roster_of(parties) if roster else None)
        except ProtocolError as exc:
            assert exc.code in {ErrorCode.ALREADY_JOINED, ErrorCode.PARTY_TAKEN,
                                ErrorCode.PARTY_COUNT_MISMATCH, ErrorCode.TOO_MANY_ROOMS}, exc
            return
        for _, reply in outgoing:
            assert parse_server_message(encode(reply)) == reply

    @rule(conn=consumes(connections))
    def disconnect(self, conn: Hashable) -> None:
        for _, reply in self.rooms.disconnect(conn):
            assert isinstance(reply, protocol.PeerLeft)
        assert conn not in self.rooms._challenges

    @invariant()
    def consistent(self) -> None:
        taken = {(room.name, room.session, party): conn for room in self.rooms.rooms.values()
                 for party, conn in room.members.items()}
        assert len(taken) == self.rooms.party_count
        assert all(room.members for room in self.rooms.rooms.values())  # no empty rooms
        assert len(self.rooms.rooms) <= 2
        for room in self.rooms.rooms.values():
            assert set(room.keys) <= set(room.members)
            assert all(0 <= party < room.parties for party in room.members)

    def teardown(self) -> None:
        for conn in [f"conn-{i}" for i in range(1, self.count + 1)]:
            self.rooms.disconnect(conn)
        assert self.rooms.rooms == {} and self.rooms.party_count == 0
        assert not self.rooms._challenges


TestRoomsMachine = RoomsMachine.TestCase
TestRoomsMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# -- a running server -----------------------------------------------------------------------------


@dataclass
class Trouble:
    """Errors the server logged and exceptions nobody retrieved: there must be none."""

    records: list[logging.LogRecord] = field(default_factory=list)
    exceptions: list[dict] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
async def served() -> AsyncIterator[tuple[RoomServer, Trouble]]:
    trouble = Trouble()
    handler = _Collect(trouble.records)
    loggers = [logging.getLogger(name) for name in ("websockets", "mpc_net", "asyncio")]
    for logger in loggers:
        logger.addHandler(handler)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: trouble.exceptions.append(context))
    try:
        async with RoomServer("127.0.0.1", 0, limits=SERVER_LIMITS) as server:
            yield server, trouble
    finally:
        loop.set_exception_handler(None)
        for logger in loggers:
            logger.removeHandler(handler)
    assert not trouble.records and not trouble.exceptions


class Fuzzer:
    """Raw connections that send what they are told; one that the server closed is reopened
    when next used. Every reply must be a valid server message with a known error code."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sockets: dict[int, ClientConnection] = {}
        self.replies = 0

    async def send(self, index: int, raw: str | bytes | tuple[str, int, int]) -> None:
        """Send raw text or bytes, or take a seat (room, party, parties) with a proven join."""
        ws = self.sockets.get(index)
        if ws is None:
            ws = self.sockets[index] = await connect(self.url, max_size=None)
        try:
            if isinstance(raw, tuple):
                await self._take_seat(ws, *raw)
            else:
                await ws.send(raw)
        except ConnectionClosed:
            del self.sockets[index]

    async def _take_seat(self, ws: ClientConnection, room: str, party: int, parties: int) -> None:
        await ws.send(encode(protocol.Hello()))
        async with asyncio.timeout(TIMEOUT):
            while True:  # replies to what it sent before come first
                msg = parse_server_message(await ws.recv())
                self.replies += 1
                if isinstance(msg, protocol.Challenge):
                    break
                if isinstance(msg, protocol.Error):
                    assert msg.code in CODES, msg
        await ws.send(encode(seats.join_message(msg.challenge, room, party, parties)))

    async def settle(self) -> None:
        """Read every reply: each connection's probe is answered after all it sent before, and
        a second round also collects what the first round's messages relayed."""
        for probe in ("probe-1", "probe-2"):
            for index, ws in list(self.sockets.items()):
                await self._until_probe(index, ws, probe)

    async def _until_probe(self, index: int, ws: ClientConnection, probe: str) -> None:
        try:
            await ws.send(json.dumps({"type": probe}))
            async with asyncio.timeout(TIMEOUT):
                while True:
                    msg = parse_server_message(await ws.recv())
                    self.replies += 1
                    if isinstance(msg, protocol.Error):
                        assert msg.code in CODES, msg
                        if probe in msg.message:
                            return
        except ConnectionClosed:
            # The server may close a connection that broke a limit; it said why first.
            assert ws.close_code in (1008, 1009), ws.close_code
            del self.sockets[index]

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets.values()))
        self.sockets.clear()


ACTIONS = st.lists(
    st.tuples(st.integers(0, 3), st.one_of(
        st.builds(encode, valid_client_messages()),
        st.tuples(ROOMS, st.integers(0, 2), st.just(3)),
        GARBAGE,
        st.just(_oversized(2 * MAX_BYTES + 10)),  # beyond the transport limit: 1009
    )),
    min_size=1,
    max_size=25,
)


async def _valid_room(url: str, name: str) -> list[SignalingClient]:
    clients = []
    for party in range(3):
        client = SignalingClient()
        await client.connect(url)
        async with asyncio.timeout(TIMEOUT):
            joined = await client.join(name, party, 3, identity=seats.key(party))
            assert joined.peers == list(range(party))
        clients.append(client)
    return clients


async def _exchange_and_leave(clients: list[SignalingClient]) -> None:
    """Every party signals every other one, then all leave; each sees exactly what it should."""
    async with asyncio.timeout(TIMEOUT):
        for i, sender in enumerate(clients):
            for j in range(len(clients)):
                if i != j:
                    await sender.send_signal(j, protocol.SessionDescription("offer", f"{i}->{j}"))
        for j, receiver in enumerate(clients):
            got = []
            while len(got) < len(clients) - 1:
                msg = await receiver.recv()
                if isinstance(msg, protocol.RelayedSignal):
                    got.append(msg)
            assert sorted(m.sender for m in got) == [i for i in range(len(clients)) if i != j]
            assert all(protocol.parse_signal_data(m.data)
                       == protocol.SessionDescription("offer", f"{m.sender}->{j}") for m in got)
        for client in clients:
            await client.leave()
            await client.close()


async def _drained(server: RoomServer) -> None:
    async with asyncio.timeout(TIMEOUT):
        while any(server.stats().values()) or server._addresses:
            await asyncio.sleep(0.005)
    assert server.rooms.rooms == {} and not server._clients


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=ACTIONS)
async def test_server_survives_random_input_and_serves_a_valid_room(
    served: tuple[RoomServer, Trouble], actions: list[tuple[int, str | bytes]]
) -> None:
    server, trouble = served
    valid = await _valid_room(server.url, "valid")  # its seats are taken: fuzzers cannot enter
    fuzzer = Fuzzer(server.url)
    for index, raw in actions:
        await fuzzer.send(index, raw)
    await fuzzer.settle()
    await fuzzer.close()
    await _exchange_and_leave(valid)
    await _drained(server)
    assert not trouble.records and not trouble.exceptions


def _workload(seed: int) -> list[tuple[int, str | bytes | tuple[str, int, int]]]:
    """A fixed mix of joins, signals, leaves and garbage over 12 connections."""
    rng = random.Random(seed)
    actions: list[tuple[int, str | bytes | tuple[str, int, int]]] = []
    for _ in range(200):
        index = rng.randrange(12)
        kind = rng.randrange(5)
        if kind == 0:
            parties = rng.randint(2, 4)
            actions.append((index, (f"mem-{rng.randrange(4)}", rng.randrange(parties), parties)))
        elif kind == 1:
            data = {"sdp": "v=0 " + "x" * rng.randrange(2000)}
            actions.append((index, encode(protocol.Signal(rng.randrange(4), data))))
        elif kind == 2:
            actions.append((index, encode(protocol.Leave())))
        elif kind == 3:
            actions.append((index, rng.randbytes(rng.randrange(200))))
        else:
            actions.append((index, _oversized(rng.randrange(MAX_BYTES, 2 * MAX_BYTES))))
    return actions


async def test_memory_stays_bounded_across_rounds(served: tuple[RoomServer, Trouble]) -> None:
    server, _ = served
    workload = _workload(7)
    sizes = []
    tracemalloc.start()
    try:
        for _ in range(8):
            fuzzer = Fuzzer(server.url)
            for index, raw in workload:
                await fuzzer.send(index, raw)
            await fuzzer.settle()
            await fuzzer.close()
            await _drained(server)
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert fuzzer.replies > 200
    # The first rounds warm caches up (websockets, json, hypothesis-free code paths); after
    # that, a round leaves no more than noise behind.
    growth = sizes[-1] - sizes[2]
    assert growth < 64 * 1024, sizes


# -- seats ----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(change=st.sampled_from(["room", "party", "parties", "key", "proof", "roster", "drop"]),
       data=st.data())
def test_a_proven_join_changed_in_any_field_takes_no_seat(change: str, data: st.DataObject,
                                                           ) -> None:
    rooms = seats.new_rooms()
    roster = seats.roster_of(3)
    [(_, challenge)] = rooms.handle("c", protocol.Hello())
    msg = seats.join_message(challenge.challenge, "lab", 1, 3, roster=roster).to_wire()
    if change == "room":
        msg["room"] = data.draw(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
                                .filter(lambda name: name != "lab"))
    elif change == "party":
        msg["party"] = data.draw(st.sampled_from([0, 2]))
    elif change == "parties":
        msg["parties"] = data.draw(st.integers(2, MAX_PARTIES).filter(lambda n: n != 3))
    elif change == "key":
        msg["key"] = seats.key(data.draw(st.sampled_from([0, 2, 9]))).public_text
    elif change == "proof":
        proof = data.draw(st.binary(min_size=64, max_size=64))
        msg["proof"] = protocol.encode_bytes(proof)
    elif change == "roster":
        msg["roster"] = json.loads(seats.roster_of(3, first=data.draw(st.integers(1, 5)))
                                   .to_json())
    else:
        del msg["roster"]
    with pytest.raises(ProtocolError) as info:
        rooms.handle("c", parse_client_message(json.dumps(msg)))
    assert info.value.code in {ErrorCode.BAD_PROOF, ErrorCode.BAD_ROSTER}
    assert not rooms.is_seated("c") and rooms.rooms == {}
