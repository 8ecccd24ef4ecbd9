"""Signaling: the protocol and room state without a network, then a real RoomServer on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seats import SeatKey, join_message, key, new_rooms, raw_join, roster_of, seat
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError

from mpc_net.auth import Roster
from mpc_net.native.signaling import SignalingClient, SignalingError
from mpc_net.signaling import protocol
from mpc_net.signaling.limits import Limits
from mpc_net.signaling.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_PARTIES,
    ErrorCode,
    ProtocolError,
    SessionDescription,
    encode,
    parse_client_message,
    parse_server_message,
    signal_data,
)
from mpc_net.signaling.rooms import RECENT_SECONDS, Rooms
from mpc_net.signaling.server import RoomServer, serve_until_signal

TIMEOUT = 5  # seconds for any single network step; a hang fails fast instead of at pytest's limit


# -- protocol -------------------------------------------------------------------------------------


def test_error_codes_are_the_documented_ones() -> None:
    assert {code.value for code in ErrorCode} == {
        "bad-json",
        "bad-message",
        "too-large",
        "unsupported-version",
        "bad-room",
        "party-out-of-range",
        "party-count-mismatch",
        "party-taken",
        "already-joined",
        "not-joined",
        "unknown-peer",
        "rate-limited",
        "too-many-rooms",
        "too-many-connections",
        "idle-timeout",
        "busy",
        "bad-token",
        "no-challenge",
        "bad-proof",
        "bad-roster",
        # the client's own
        "server-closing",
        "connect-failed",
        "connection-closed",
    }


PROOF = bytes(protocol.PROOF_BYTES)  # the shape of a proof; only Rooms checks that it verifies


def test_client_builders_round_trip() -> None:
    for msg in (
        protocol.Hello(),
        protocol.Join("room-1", 2, 3, key="k", proof=PROOF),
        protocol.Join("r", 0, 1, key="k" * 1024, proof=PROOF, roster={"x": [1]}, token="t"),
        protocol.Signal(7, {"type": "offer", "sdp": "v=0\r\n"}),
        protocol.Leave(),
    ):
        assert parse_client_message(encode(msg)) == msg
        assert parse_client_message(encode(msg).encode()) == msg
    assert protocol.Join("r", 1, 2, key="k", proof=PROOF).to_wire() == {
        "type": "join",
        "version": 3,
        "room": "r",
        "party": 1,
        "parties": 2,
        "key": "k",
        "proof": "A" * 86,
    }


def test_server_builders_round_trip() -> None:
    ice = [{"urls": ["turn:example.org"], "username": "u", "credential": "c"}]
    for msg in (
        protocol.Joined("r", 1, 3, [0, 2], ice),
        protocol.Joined("r", 0, 1, [], []),
        protocol.Challenge(bytes(range(32))),
        protocol.OtherRoster(),
        protocol.IceServers(ice),
        protocol.PeerJoined(4),
        protocol.PeerLeft(0),
        protocol.RelayedSignal(255, {"candidate": {"sdpMid": "0"}}),
        protocol.Error(ErrorCode.PARTY_TAKEN, "taken"),
        protocol.Closing("shutting down"),
    ):
        assert parse_server_message(encode(msg)) == msg


# What release 2 of the signaling protocol puts on the wire, written down before messages became
# typed objects: the typed messages keep it byte for byte.
WIRE = [
    (protocol.Hello(), '{"type":"hello","version":3}'),
    (protocol.Join("lab", 1, 3, key="ed25519:k", proof=bytes(range(64)),
                   roster={"mpc-net-roster": 1}, token="t"),
     '{"type":"join","version":3,"room":"lab","party":1,"parties":3,"key":"ed25519:k","proof":'
     '"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw",'
     '"roster":{"mpc-net-roster":1},"token":"t"}'),
    (protocol.Signal(2, signal_data(SessionDescription("offer", "v=0\r\n"))),
     '{"type":"signal","to":2,"data":{"description":{"type":"offer","sdp":"v=0\\r\\n"}}}'),
    (protocol.Leave(), '{"type":"leave"}'),
    (protocol.Challenge(bytes(range(32))),
     '{"type":"challenge","challenge":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}'),
    (protocol.Joined("lab", 1, 3, [0], [{"urls": "stun:h:3478", "username": "u",
                                         "credential": "c"}], {0: "ed25519:k"}),
     '{"type":"joined","room":"lab","party":1,"parties":3,"peers":[0],"ice_servers":[{"urls":'
     '["stun:h:3478"],"username":"u","credential":"c"}],"keys":{"0":"ed25519:k"}}'),
    (protocol.OtherRoster(), '{"type":"other-roster"}'),
    (protocol.IceServers([{"urls": ["turn:h"]}]),
     '{"type":"ice-servers","ice_servers":[{"urls":["turn:h"]}]}'),
    (protocol.PeerJoined(2, "ed25519:k"), '{"type":"peer-joined","party":2,"key":"ed25519:k"}'),
    (protocol.PeerLeft(2), '{"type":"peer-left","party":2}'),
    (protocol.RelayedSignal(0, signal_data(protocol.CheckCodeMessage("commit", bytes(3)))),
     '{"type":"signal","from":0,"data":{"check":{"commit":"AAAA"}}}'),
    (protocol.Error("party-taken", "é"), '{"type":"error","code":"party-taken","message":'
     '"\\u00e9"}'),
    (protocol.Closing("bye"), '{"type":"closing","message":"bye"}'),
]


@pytest.mark.parametrize(("msg", "text"), WIRE)
def test_the_wire_format_is_unchanged(msg: protocol.Message, text: str) -> None:
    assert encode(msg) == text
    parse = (parse_client_message if isinstance(msg, protocol.ClientMessage)
             else parse_server_message)
    assert parse(text) == msg


def test_encode_is_compact_ascii() -> None:
    assert encode(protocol.Error("x", "é")) == '{"type":"error","code":"x","message":"\\u00e9"}'


def test_unknown_fields_are_dropped_and_credentials_kept() -> None:
    raw = json.dumps(protocol.Join("r", 0, 2, key="pk", proof=PROOF).to_wire()
                     | {"extra": [1], "token": "tk"})
    assert parse_client_message(raw) == protocol.Join("r", 0, 2, key="pk", proof=PROOF,
                                                      token="tk")


def test_ice_server_urls_are_normalized_to_lists() -> None:
    assert protocol.validate_ice_servers([{"urls": "stun:h:3478", "x": 1}]) == [
        {"urls": ["stun:h:3478"]}
    ]
    for bad in ({}, [{"urls": []}], [{"urls": [1]}], [{"urls": "s", "username": 5}], ["s"]):
        with pytest.raises(ProtocolError):
            protocol.validate_ice_servers(bad)


def _join(**fields: object) -> str:
    base = {"type": "join", "version": 3, "room": "r", "party": 0, "parties": 2, "key": "k",
            "proof": "A" * 86}
    return json.dumps({k: v for k, v in (base | fields).items() if v is not ...})


def _signal(**fields: object) -> str:
    return json.dumps({"type": "signal", "to": 1, "data": {}} | fields)


def _nested(depth: int) -> dict:
    data: dict = {}
    for _ in range(depth - 1):
        data = {"d": data}
    return data


BAD_CLIENT_MESSAGES = [
    ("{not json", ErrorCode.BAD_JSON),
    ("[1, 2]", ErrorCode.BAD_JSON),
    ('"join"', ErrorCode.BAD_JSON),
    (b"\xff\xfe{}", ErrorCode.BAD_JSON),
    ('{"type":"signal","to":1,"data":{"x":NaN}}', ErrorCode.BAD_JSON),
    ('{"type":"signal","to":1,"data":{"x":1e400}}', ErrorCode.BAD_JSON),
    ('{"type":"signal","to":1,"data":{"x":' + "9" * 5000 + "}}", ErrorCode.BAD_JSON),
    ("[" * 20000 + "]" * 20000, ErrorCode.BAD_JSON),
    ("{}", ErrorCode.BAD_MESSAGE),
    ('{"type": 3}', ErrorCode.BAD_MESSAGE),
    ('{"type": "hello"}', ErrorCode.BAD_MESSAGE),
    ('{"type": "hello", "version": 1}', ErrorCode.UNSUPPORTED_VERSION),
    ('{"type": "joined"}', ErrorCode.BAD_MESSAGE),
    ('{"type": "join", "version": 3, "room": "x"}', ErrorCode.BAD_MESSAGE),
    (_join(key=...), ErrorCode.BAD_MESSAGE),
    (_join(proof=...), ErrorCode.BAD_MESSAGE),
    (_join(proof="A" * 85), ErrorCode.BAD_MESSAGE),
    (_join(proof="A" * 85 + "B"), ErrorCode.BAD_MESSAGE),  # not the canonical spelling
    (_join(proof="A" * 84 + "=="), ErrorCode.BAD_MESSAGE),
    (_join(roster=[1]), ErrorCode.BAD_MESSAGE),
    (_join(version=None), ErrorCode.BAD_MESSAGE),
    (_join(party=True), ErrorCode.BAD_MESSAGE),
    (_join(parties=2.0), ErrorCode.BAD_MESSAGE),
    (_join(room=5), ErrorCode.BAD_MESSAGE),
    (_join(key=1), ErrorCode.BAD_MESSAGE),
    (_join(token="t" * 1025), ErrorCode.BAD_MESSAGE),
    (_join(version=1), ErrorCode.UNSUPPORTED_VERSION),
    (_join(version=True), ErrorCode.BAD_MESSAGE),
    (_join(room=""), ErrorCode.BAD_ROOM),
    (_join(room="a b"), ErrorCode.BAD_ROOM),
    (_join(room="x" * 65), ErrorCode.BAD_ROOM),
    (_join(room="café"), ErrorCode.BAD_ROOM),
    (_join(room="room\n"), ErrorCode.BAD_ROOM),
    (_join(party=2), ErrorCode.PARTY_OUT_OF_RANGE),
    (_join(party=-1), ErrorCode.PARTY_OUT_OF_RANGE),
    (_join(parties=0), ErrorCode.PARTY_OUT_OF_RANGE),
    (_join(parties=MAX_PARTIES + 1), ErrorCode.PARTY_OUT_OF_RANGE),
    ('{"type": "signal", "data": {}}', ErrorCode.BAD_MESSAGE),
    (_signal(to=False), ErrorCode.BAD_MESSAGE),
    (_signal(to="1"), ErrorCode.BAD_MESSAGE),
    (_signal(data=[1]), ErrorCode.BAD_MESSAGE),
    (_signal(data=_nested(protocol.MAX_DATA_DEPTH + 1)), ErrorCode.BAD_MESSAGE),
    (_signal(to=-1), ErrorCode.PARTY_OUT_OF_RANGE),
    (_signal(to=MAX_PARTIES), ErrorCode.PARTY_OUT_OF_RANGE),
    (_signal(data={"pad": "x" * MAX_MESSAGE_BYTES}), ErrorCode.TOO_LARGE),
    (_signal(data={"pad": "é" * (MAX_MESSAGE_BYTES // 2)}), ErrorCode.TOO_LARGE),
    (b" " * (MAX_MESSAGE_BYTES + 1), ErrorCode.TOO_LARGE),
]


@pytest.mark.parametrize(("raw", "code"), BAD_CLIENT_MESSAGES)
def test_bad_client_messages_get_their_code(raw: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code == code
    assert info.value.message and "\n" not in info.value.message


def test_size_limit_is_in_bytes_and_inclusive() -> None:
    leave = '{"type":"leave"}'
    assert parse_client_message(leave + " " * (MAX_MESSAGE_BYTES - len(leave)))
    with pytest.raises(ProtocolError, match="too-large"):
        parse_client_message(leave + " " * (MAX_MESSAGE_BYTES - len(leave) + 1))
    with pytest.raises(ProtocolError, match="too-large"):
        parse_client_message('{"type":"leave","x":"' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}')


def test_largest_accepted_signal_is_relayed_within_the_limit() -> None:
    room = MAX_MESSAGE_BYTES - len(encode(protocol.RelayedSignal(MAX_PARTIES - 1, {"pad": ""})))
    data = {"pad": "x" * room}
    assert parse_client_message(encode(protocol.Signal(1, data))).data == data
    assert len(encode(protocol.RelayedSignal(MAX_PARTIES - 1, data))) == MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolError, match="too-large"):
        parse_client_message(json.dumps({"type": "signal", "to": 1,
                                         "data": {"pad": "x" * (room + 1)}}))


def test_accepted_signal_data_depth_limit() -> None:
    deep = _nested(protocol.MAX_DATA_DEPTH)
    assert parse_client_message(_signal(data=deep)).data == deep


def test_builders_reject_what_parsers_reject() -> None:
    with pytest.raises(ProtocolError, match="bad-room"):
        protocol.Join("no spaces", 0, 2, key="k", proof=PROOF)
    with pytest.raises(ProtocolError, match="party-out-of-range"):
        protocol.Join("r", 2, 2, key="k", proof=PROOF)
    with pytest.raises(ProtocolError, match="party-out-of-range"):
        protocol.seat_statement(bytes(32), "r", 70000, 2, None)
    with pytest.raises(ProtocolError, match="bad-message"):
        protocol.Signal(True, {})


_JOINED = {"type": "joined", "room": "r", "party": 0, "parties": 2, "peers": [1], "ice_servers": []}


@pytest.mark.parametrize(
    "msg",
    [
        _JOINED | {"peers": [0]},
        _JOINED | {"parties": 3, "peers": [2, 1]},
        _JOINED | {"peers": [2]},
        _JOINED | {"peers": [True]},
        _JOINED | {"ice_servers": [{"urls": []}]},
        {k: v for k, v in _JOINED.items() if k != "ice_servers"},
        {"type": "peer-joined", "party": "1"},
        {"type": "signal", "to": 1, "data": {}},
        {"type": "error", "code": "x"},
        {"type": "closing"},
        {"type": "closing", "message": 1},
        {"type": "join", "version": 1, "room": "r", "party": 0, "parties": 2},
        {"type": "challenge", "challenge": "A" * 42},
        {"type": "challenge"},
        {"type": "ice-servers", "ice_servers": [{}]},
    ],
)
def test_bad_server_messages_are_rejected(msg: dict) -> None:
    with pytest.raises(ProtocolError):
        parse_server_message(json.dumps(msg))


def test_unknown_error_codes_from_newer_servers_are_kept() -> None:
    msg = parse_server_message('{"type":"error","code":"rate-limited","message":"slow down"}')
    assert msg == protocol.Error("rate-limited", "slow down")


# -- protocol properties ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ROOM_NAMES = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
FIELD_VALUES = st.integers(-3, MAX_PARTIES + 3) | st.booleans() | st.text(max_size=8) | JSON_VALUES


@st.composite
def message_like(draw: st.DrawFn) -> dict:
    """A valid client message, sometimes with fields removed or replaced by odd values."""
    parties = draw(st.integers(1, MAX_PARTIES))
    kind = draw(st.sampled_from(["hello", "join", "signal", "leave"]))
    if kind == "hello":
        msg = {"type": kind, "version": protocol.VERSION}
    elif kind == "join":
        msg = {"type": kind, "version": protocol.VERSION, "room": draw(ROOM_NAMES)}
        msg |= {"party": draw(st.integers(0, parties - 1)), "parties": parties}
        msg |= {"key": draw(st.text(max_size=8)), "proof": "A" * 86}
    elif kind == "signal":
        data = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4))
        msg = {"type": kind, "to": draw(st.integers(0, MAX_PARTIES - 1)), "data": data}
    else:
        msg = {"type": kind}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([*msg, "key", "proof", "roster", "token", "extra"]))
        if draw(st.booleans()):
            msg.pop(name, None)
        else:
            msg[name] = draw(FIELD_VALUES)
    return msg


def _parse_or_protocol_error(raw: str | bytes) -> protocol.ClientMessage | None:
    try:
        return parse_client_message(raw)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return None


@given(st.text())
def test_parse_arbitrary_text_raises_only_protocol_errors(raw: str) -> None:
    _parse_or_protocol_error(raw)


@given(st.binary())
def test_parse_arbitrary_bytes_raises_only_protocol_errors(raw: bytes) -> None:
    _parse_or_protocol_error(raw)


@given(JSON_VALUES)
def test_parse_arbitrary_json_raises_only_protocol_errors(value: object) -> None:
    _parse_or_protocol_error(json.dumps(value))


@settings(max_examples=200)
@given(message_like())
def test_accepted_messages_are_canonical_and_relayable(value: dict) -> None:
    msg = _parse_or_protocol_error(json.dumps(value))
    if msg is None:
        return
    assert parse_client_message(encode(msg)) == msg
    if isinstance(msg, protocol.Signal):
        relayed = encode(protocol.RelayedSignal(MAX_PARTIES - 1, msg.data))
        assert parse_server_message(relayed).data == msg.data


# -- rooms ----------------------------------------------------------------------------------------


def _peer_joined(party: int) -> protocol.PeerJoined:
    return protocol.PeerJoined(party, key(party).public_text)


def test_rooms_join_relay_leave() -> None:
    rooms = new_rooms(ice_servers=[{"urls": "stun:stun.example.org"}])
    a, b, c = "conn-a", "conn-b", "conn-c"
    out = seat(rooms, a, "r", 0, 3)
    assert out == [(a, protocol.Joined("r", 0, 3, [], [{"urls": ["stun:stun.example.org"]}]))]
    seat(rooms, c, "r", 2, 3)
    out = seat(rooms, b, "r", 1, 3)
    keys = {0: key(0).public_text, 2: key(2).public_text}
    assert out[0] == (b, protocol.Joined("r", 1, 3, [0, 2], rooms.ice_servers, keys))
    assert sorted(out[1:]) == [(a, _peer_joined(1)), (c, _peer_joined(1))]
    assert rooms.handle(a, protocol.Signal(2, {"sdp": "o"})) == [
        (c, protocol.RelayedSignal(0, {"sdp": "o"}))
    ]
    assert rooms.handle(c, protocol.Signal(0, {"sdp": "a"})) == [
        (a, protocol.RelayedSignal(2, {"sdp": "a"}))
    ]
    assert sorted(rooms.handle(b, protocol.Leave())) == [
        (a, protocol.PeerLeft(1)),
        (c, protocol.PeerLeft(1)),
    ]
    assert sorted(rooms.disconnect(a)) == [(c, protocol.PeerLeft(0))]
    assert rooms.disconnect(c) == []
    assert rooms.rooms == {}


def test_rooms_errors() -> None:
    rooms = new_rooms()
    a, b = object(), object()
    seat(rooms, a, "r", 0, 2)
    cases = [
        (b, ("r", 0, 2), ErrorCode.PARTY_TAKEN),
        (b, ("r", 1, 3), ErrorCode.PARTY_COUNT_MISMATCH),
        (a, ("other", 0, 2), ErrorCode.ALREADY_JOINED),
        (b, protocol.Signal(0, {}), ErrorCode.NOT_JOINED),
        (b, protocol.Leave(), ErrorCode.NOT_JOINED),
        (a, protocol.Signal(1, {}), ErrorCode.UNKNOWN_PEER),
        (a, protocol.Signal(0, {}), ErrorCode.UNKNOWN_PEER),
        (a, protocol.Signal(200, {}), ErrorCode.UNKNOWN_PEER),
    ]
    for conn, msg, code in cases:
        with pytest.raises(ProtocolError) as info:
            seat(rooms, conn, *msg) if isinstance(msg, tuple) else rooms.handle(conn, msg)
        assert info.value.code == code
    # Rejections leave no trace: b holds no seat and no room "other" exists.
    assert list(rooms.rooms) == [("r", None)] and rooms.disconnect(b) == []
    seat(rooms, b, "r", 1, 2)
    relayed = protocol.RelayedSignal(1, {"x": 1})
    assert rooms.handle(b, protocol.Signal(0, {"x": 1})) == [(a, relayed)]


def test_rooms_are_isolated_and_recreated() -> None:
    rooms = new_rooms()
    a, b = "a", "b"
    seat(rooms, a, "one", 0, 2)
    assert seat(rooms, b, "two", 1, 2)[1:] == []  # nobody in "two" to notify
    with pytest.raises(ProtocolError, match="unknown-peer"):
        rooms.handle(a, protocol.Signal(1, {}))  # party 1 of another room
    rooms.handle(a, protocol.Leave())
    assert list(rooms.rooms) == [("two", None)]
    # An emptied room is gone, so a new join may pick another party count.
    seat(rooms, a, "one", 2, 5)
    assert rooms.rooms[("one", None)].parties == 5


def _refused(rooms: Rooms, conn: object, msg: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        rooms.handle(conn, msg)
    assert not rooms.is_seated(conn)
    return info.value


def test_a_seat_needs_a_fresh_challenge_signed_with_the_seats_roster_key() -> None:
    rooms = new_rooms()
    roster = roster_of(3)
    conn = "c"

    def challenge() -> bytes:
        return rooms.handle(conn, protocol.Hello())[0][1].challenge

    # Without a hello there is no challenge to sign.
    fresh = challenge()
    error = _refused(rooms, "no-hello", join_message(fresh, "r", 1, 3, roster=roster))
    assert error.code == ErrorCode.NO_CHALLENGE
    refusals = {
        # signed by party 2's key, or over another challenge, room, seat or roster
        "signer": lambda: join_message(challenge(), "r", 1, 3, roster=roster, signer=key(2)),
        "challenge": lambda: challenge() and join_message(fresh, "r", 1, 3, roster=roster),
        "room": lambda: replace(join_message(challenge(), "s", 1, 3, roster=roster), room="r"),
        "party": lambda: replace(join_message(challenge(), "r", 2, 3, roster=roster,
                                              signer=key(1)), party=1),
        "roster": lambda: replace(join_message(challenge(), "r", 1, 3),
                                  roster=json.loads(roster.to_json())),
    }
    for what, make in refusals.items():
        assert _refused(rooms, conn, make()).code == ErrorCode.BAD_PROOF, what
    # The key must be the roster's key of the seat, whoever signs.
    stranger = SeatKey()
    error = _refused(rooms, conn, join_message(challenge(), "r", 1, 3, roster=roster,
                                               signer=stranger))
    assert (error.code, error.message) == (ErrorCode.BAD_PROOF,
                                           "the key is not the roster's key of party 1")
    error = _refused(rooms, conn, join_message(challenge(), "r", 1, 4, roster=roster))
    assert (error.code, error.message) == (ErrorCode.BAD_ROSTER,
                                           "the roster lists 3 parties, not 4")
    bad = replace(join_message(challenge(), "r", 1, 3, roster=roster),
                  roster={"mpc-net-roster": 1, "parties": [{"key": "ed25519:x"}] * 3})
    assert _refused(rooms, conn, bad).code == ErrorCode.BAD_ROSTER
    msg = join_message(challenge(), "r", 1, 3, roster=roster)
    assert isinstance(rooms.handle(conn, msg)[0][1], protocol.Joined)
    assert list(rooms.rooms) == [("r", roster.session_id)]
    # A proof is good for its connection's challenge only, and only once.
    assert _refused(rooms, "replay", msg).code == ErrorCode.NO_CHALLENGE
    rooms.handle("replay", protocol.Hello())
    assert _refused(rooms, "replay", replace(msg, party=1)).code == ErrorCode.BAD_PROOF


def test_outsider_who_takes_a_seat_by_name_first_meets_nobody_and_learns_only_of_another_roster(
) -> None:
    rooms = new_rooms()
    roster = roster_of(2)
    # It comes first, as party 1, with an open seat or with a roster of its own making.
    outsider, forger = "outsider", "forger"
    assert seat(rooms, outsider, "lab", 1, 2)[1:] == []
    forged = Roster.of([key(0).public_key, key(7).public_key])
    out = seat(rooms, forger, "lab", 1, 2, signer=key(7), roster=forged)
    assert out[0][1].peers == [] and out[1:] == [(forger, protocol.OtherRoster()),
                                                     (outsider, protocol.OtherRoster())]
    # The roster's parties still get their seats and meet each other only.
    a, b = "a", "b"
    out = seat(rooms, a, "lab", 0, 2, roster=roster)
    assert out == [(a, protocol.Joined("lab", 0, 2, [], [])), (a, protocol.OtherRoster())]
    out = seat(rooms, b, "lab", 1, 2, roster=roster)
    assert out[0] == (b, protocol.Joined("lab", 1, 2, [0], [], {0: key(0).public_text}))
    assert out[1:] == [(a, _peer_joined(1)), (b, protocol.OtherRoster())]
    assert rooms.handle(a, protocol.Signal(1, {"sdp": "x"})) == [
        (b, protocol.RelayedSignal(0, {"sdp": "x"}))]
    # The outsiders' signals reach none of them, and their rooms hear nothing of the run.
    for conn in (outsider, forger):
        with pytest.raises(ProtocolError, match="unknown-peer"):
            rooms.handle(conn, protocol.Signal(0, {"sdp": "junk"}))
    assert rooms.disconnect(b) == [(a, protocol.PeerLeft(1))]


def test_other_roster_notices_are_bounded_and_remembered_for_late_joiners() -> None:
    now = [1000.0]
    rooms = new_rooms(clock=lambda: now[0])
    roster = roster_of(3)
    seat(rooms, "a", "lab", 0, 3, roster=roster)
    # Someone cycling through rosters of its own making: the members hear of it once.
    told = []
    for i in range(20):
        out = seat(rooms, f"x{i}", "lab", 0, 1, signer=key(10 + i),
                   roster=Roster.of([key(10 + i).public_key]))
        told += [conn for conn, msg in out if msg == protocol.OtherRoster()]
        rooms.disconnect(f"x{i}")
    assert told.count("a") == 1 and len(told) == 21
    # A room of another roster that closed a moment ago is still mentioned to a late joiner...
    rooms.disconnect("a")
    late = seat(rooms, "late", "lab", 2, 3, roster=roster_of(3, first=5), signer=key(7))
    assert late[1:] == [("late", protocol.OtherRoster())]
    rooms.disconnect("late")
    # ... but not for ever.
    now[0] += RECENT_SECONDS + 1
    assert seat(rooms, "later", "lab", 0, 3, roster=roster)[1:] == []


# -- real server on loopback ----------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[RoomServer]:
    async with RoomServer("127.0.0.1", 0, ice_servers=[{"urls": ["stun:127.0.0.1:3478"]}]) as s:
        yield s


# Floods far beyond any signaling need, to test the send queues rather than the rate limit.
NO_RATE_LIMIT = Limits(messages_per_second=1e9, message_burst=10**9)


@pytest.fixture
async def flood_server() -> AsyncIterator[RoomServer]:
    async with RoomServer("127.0.0.1", 0, limits=NO_RATE_LIMIT) as s:
        yield s


async def _recv(ws: ClientConnection | SignalingClient) -> dict:
    """The next message as the wire has it."""
    async with asyncio.timeout(TIMEOUT):
        raw = await ws.recv()
    return json.loads(raw) if isinstance(raw, str | bytes) else raw.to_wire()


async def _open_room(url: str, name: str, parties: int) -> list[SignalingClient]:
    clients: list[SignalingClient] = []
    for party in range(parties):
        client = SignalingClient()
        await client.connect(url)
        async with asyncio.timeout(TIMEOUT):
            reply = await client.join(name, party, parties, identity=key(party))
        assert reply.peers == list(range(party))
        assert reply.ice_servers == [{"urls": ["stun:127.0.0.1:3478"]}]
        for earlier in clients:
            assert await _recv(earlier) == _peer_joined(party).to_wire()
        clients.append(client)
    return clients


async def _exchange(clients: list[SignalingClient], tag: str) -> None:
    """Every party signals every other one; each receives exactly what was meant for it."""
    for i, sender in enumerate(clients):
        for j in range(len(clients)):
            if i != j:
                await sender.send_signal(j, SessionDescription("offer", f"{tag} {i}->{j}"))
    for j, receiver in enumerate(clients):
        got = [await _recv(receiver) for _ in range(len(clients) - 1)]
        expected = [
            {"type": "signal", "from": i,
             "data": {"description": {"type": "offer", "sdp": f"{tag} {i}->{j}"}}}
            for i in range(len(clients))
            if i != j
        ]
        assert sorted(got, key=lambda m: m["from"]) == expected


async def _leave_all(clients: list[SignalingClient]) -> None:
    for i, client in enumerate(clients):
        await client.leave()
        for rest in clients[i + 1 :]:
            assert await _recv(rest) == {"type": "peer-left", "party": i}
        await client.close()


async def _rooms_drained(server: RoomServer) -> None:
    # The server forgets a connection in its own task, shortly after the close.
    async with asyncio.timeout(TIMEOUT):
        while server.rooms.rooms:
            await asyncio.sleep(0.01)


def _big_signal(size: int) -> str:
    return _signal(data={"pad": "x" * size})


# Each case: seats that the offender takes first, the bad message (or a proven join of a seat),
# the expected code.
BAD_INPUTS = {
    "party-taken": ([], ("valid", 1, 3), ErrorCode.PARTY_TAKEN),
    "party-count-mismatch": ([], ("valid", 3, 4), ErrorCode.PARTY_COUNT_MISMATCH),
    "party-out-of-range": ([], _join(room="valid", party=3, parties=3),
                           ErrorCode.PARTY_OUT_OF_RANGE),
    "negative-party": ([], _join(party=-1), ErrorCode.PARTY_OUT_OF_RANGE),
    "malformed-json": ([], '{"type": "join", ', ErrorCode.BAD_JSON),
    "binary-garbage": ([], b"\x00\xff\x80", ErrorCode.BAD_JSON),
    "unknown-type": ([], '{"type": "joined"}', ErrorCode.BAD_MESSAGE),
    "missing-fields": ([], '{"type": "join", "version": 3, "room": "x"}', ErrorCode.BAD_MESSAGE),
    "missing-signal-data": ([("pair", 0, 2)], '{"type": "signal", "to": 1}',
                            ErrorCode.BAD_MESSAGE),
    "bool-party": ([], _join(party=False), ErrorCode.BAD_MESSAGE),
    "oversized": ([], _big_signal(MAX_MESSAGE_BYTES), ErrorCode.TOO_LARGE),
    "signal-to-absent-party": ([("lonely", 0, 2)], encode(protocol.Signal(1, {})),
                               ErrorCode.UNKNOWN_PEER),
    "signal-to-self": ([("lonely", 0, 2)], encode(protocol.Signal(0, {})),
                       ErrorCode.UNKNOWN_PEER),
    "signal-to-other-room": ([("lonely", 0, 3)], encode(protocol.Signal(2, {})),
                             ErrorCode.UNKNOWN_PEER),
    "signal-before-join": ([], encode(protocol.Signal(0, {})), ErrorCode.NOT_JOINED),
    "leave-before-join": ([], encode(protocol.Leave()), ErrorCode.NOT_JOINED),
    "join-twice": ([("twice", 0, 2)], ("twice", 1, 2), ErrorCode.ALREADY_JOINED),
    "join-without-challenge": ([], _join(room="valid", party=1, parties=3),
                               ErrorCode.NO_CHALLENGE),
    "bad-room": ([], _join(room="../etc"), ErrorCode.BAD_ROOM),
    "old-version": ([], _join(version=1), ErrorCode.UNSUPPORTED_VERSION),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
async def test_bad_input_gets_error_while_valid_room_works(server: RoomServer, case: str) -> None:
    setup, bad, code = BAD_INPUTS[case]
    valid = await _open_room(server.url, "valid", 3)
    await _exchange(valid, "before")

    async def offender() -> None:
        async with connect(server.url) as ws:
            for seat_ in setup:
                assert (await raw_join(ws, *seat_))["type"] == "joined"
            if isinstance(bad, tuple):
                reply = await raw_join(ws, *bad)
            else:
                await ws.send(bad)
                reply = await _recv(ws)
            assert (reply["type"], reply["code"]) == ("error", code), reply
            # Still served: a retry in a fresh room works unless it is in a room already.
            probe = await raw_join(ws, f"probe-{case}", 0, 2)
            if setup:
                assert probe["code"] == ErrorCode.ALREADY_JOINED
            else:
                assert probe["type"] == "joined"

    await asyncio.gather(offender(), _exchange(valid, "during"))
    await _exchange(valid, "after")
    await _leave_all(valid)
    await _rooms_drained(server)


async def test_old_client_gets_unsupported_version_naming_both_versions(
    server: RoomServer,
) -> None:
    async with connect(server.url) as ws:
        # What a client of the first protocol sends: a join with no proof, version 1.
        await ws.send(json.dumps({"type": "join", "version": 1, "room": "lab", "party": 1,
                              "parties": 2, "key": key(1).public_text}))
        reply = await _recv(ws)
    assert reply["type"] == "error" and reply["code"] == ErrorCode.UNSUPPORTED_VERSION
    assert "version 1 is not the room server's version 3" in reply["message"]


async def test_client_of_the_previous_version_gets_unsupported_version(server: RoomServer) -> None:
    """Version 3 added the `busy` refusal; a version 2 client hears which versions differ."""
    async with connect(server.url) as ws:
        await ws.send(json.dumps({"type": "hello", "version": 2}))
        reply = await _recv(ws)
    assert reply["type"] == "error" and reply["code"] == ErrorCode.UNSUPPORTED_VERSION
    assert "version 2 is not the room server's version 3" in reply["message"]


async def test_new_client_says_that_an_old_room_server_speaks_another_version() -> None:
    async def old_server(ws) -> None:
        async for _ in ws:  # a first-protocol server does not know hello
            await ws.send(encode(protocol.Error(ErrorCode.BAD_MESSAGE,
                                                "unknown client message type 'hello'")))

    async with serve(old_server, "127.0.0.1", 0) as old:
        client = SignalingClient()
        await client.connect(f"ws://127.0.0.1:{old.sockets[0].getsockname()[1]}")
        with pytest.raises(SignalingError) as info:
            await client.join("lab", 0, 2, identity=key(0))
        await client.close()
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION
    assert "does not speak signaling protocol version 3" in str(info.value)


async def test_message_beyond_transport_limit_closes_only_that_connection(
    server: RoomServer,
) -> None:
    valid = await _open_room(server.url, "valid", 2)
    async with connect(server.url, max_size=None) as ws:
        await ws.send(_big_signal(5 * MAX_MESSAGE_BYTES))
        with pytest.raises(ConnectionClosedError):
            await _recv(ws)
        assert ws.protocol.close_code == 1009  # message too big
    await _exchange(valid, "after")
    await _leave_all(valid)


async def test_many_clients_and_rooms_concurrently(server: RoomServer) -> None:
    rooms = await asyncio.gather(*(_open_room(server.url, f"room{i}", 3) for i in range(4)))
    await asyncio.gather(*(_exchange(clients, "x") for clients in rooms))
    await asyncio.gather(*(_leave_all(clients) for clients in rooms))
    await _rooms_drained(server)


async def test_disconnect_notifies_peers_and_frees_the_seat(server: RoomServer) -> None:
    a, b = await _open_room(server.url, "drop", 2)
    await b.close()  # no leave: the server notices the closed connection
    assert await _recv(a) == {"type": "peer-left", "party": 1}
    again = SignalingClient()
    await again.connect(server.url)
    assert (await again.join("drop", 1, 2, identity=key(1))).peers == [0]
    assert await _recv(a) == _peer_joined(1).to_wire()
    await a.close()
    await again.close()


async def test_client_join_errors_are_signaling_errors(server: RoomServer) -> None:
    (holder,) = await _open_room(server.url, "solo", 1)
    client = SignalingClient()
    await client.connect(server.url)
    with pytest.raises(SignalingError) as info:
        await client.join("solo", 0, 1, identity=key(0))
    assert info.value.code == ErrorCode.PARTY_TAKEN
    assert str(info.value) == "party 0 of room solo is taken (party-taken)"
    with pytest.raises(SignalingError) as info:
        # Refused locally, with the same code as the server's.
        await client.join("bad room", 0, 1, identity=key(0))
    assert info.value.code == ErrorCode.BAD_ROOM
    await client.send_signal(0, SessionDescription("offer", "v=0"))
    assert (await _recv(client))["code"] == ErrorCode.NOT_JOINED
    await holder.close()
    await client.close()


async def test_join_skips_messages_left_over_from_a_previous_room(server: RoomServer) -> None:
    a, b = await _open_room(server.url, "first", 2)
    await b.send_signal(0, SessionDescription("offer", "late"))
    # b's own error reply proves that the server has handled (and relayed) b's signal.
    await b.send_signal(1, SessionDescription("offer", "v=0"))
    assert (await _recv(b))["code"] == ErrorCode.UNKNOWN_PEER
    await a.leave()
    async with asyncio.timeout(TIMEOUT):
        assert (await a.join("second", 0, 1, identity=key(0))).room == "second"
    await a.close()
    await b.close()


async def test_client_sees_server_close(server: RoomServer) -> None:
    a, b = await _open_room(server.url, "closing", 2)
    url = server.url
    await server.close()
    with pytest.raises(SignalingError) as info:
        async with asyncio.timeout(TIMEOUT):
            await a.recv()  # the closing notice comes before anything else
    assert info.value.code == ErrorCode.SERVER_CLOSING
    assert str(info.value) == (
        f"room server {url}: shutting down; connect again later (server-closing)"
    )
    with pytest.raises(SignalingError) as info:
        await _recv(a)
    assert info.value.code == ErrorCode.CONNECTION_CLOSED
    assert str(info.value).startswith("connection to room server ws://127.0.0.1:")
    assert a._ws.close_code == 1001  # going away
    # Iteration ends quietly at the closing notice, as on a clean close.
    async with asyncio.timeout(TIMEOUT):
        seen = [msg async for msg in b]
    assert all(msg["type"] == "peer-left" for msg in seen)
    with pytest.raises(SignalingError, match="connection-closed"):
        await b.send_signal(0, SessionDescription("offer", "v=0"))


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"ws://127.0.0.1:{_unused_port()}", "connection refused"),
        ("http://127.0.0.1:8765", "not a valid URI"),
        ("ws://[::1", "Invalid IPv6 URL"),
        ("ws://127.0.0.1:99999", "Port out of range"),
        ("room-server", "not a valid URI"),
    ],
)
async def test_connect_failures_are_one_line_signaling_errors(url: str, reason: str) -> None:
    client = SignalingClient(open_timeout=TIMEOUT)
    with pytest.raises(SignalingError) as info:
        await client.connect(url)
    assert info.value.code == ErrorCode.CONNECT_FAILED
    text = str(info.value)
    assert url in text and reason in text and "\n" not in text


async def test_serve_until_signal_logs_and_stops_on_sigterm(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mpc_net.signaling")
    task = asyncio.create_task(serve_until_signal(RoomServer("127.0.0.1", 0)))
    async with asyncio.timeout(TIMEOUT):
        while not any("listening" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    line = next(r.getMessage() for r in caplog.records if "listening" in r.getMessage())
    assert line.startswith("room server listening on ws://127.0.0.1:")
    client = SignalingClient()
    await client.connect(line.rsplit(" ", 1)[1])
    assert isinstance(await client.join("r", 0, 1, identity=key(0)), protocol.Joined)
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(TIMEOUT):
        await task
    assert any("shutting down on SIGTERM" in r.getMessage() for r in caplog.records)
    with pytest.raises(SignalingError, match="server-closing"):
        async with asyncio.timeout(TIMEOUT):
            await client.recv()
    with pytest.raises(SignalingError, match="connection-closed"):
        async with asyncio.timeout(TIMEOUT):
            await client.recv()


async def test_client_that_stops_reading_is_dropped_without_stalling_its_peer(
    flood_server: RoomServer,
) -> None:
    server = flood_server
    sender = SignalingClient()
    await sender.connect(server.url)
    await sender.join("stall", 0, 2, identity=key(0))
    # A tiny receive queue makes this client stop reading from the socket almost at once; as it
    # never reads the server's close either, closing it must not wait for the handshake.
    async with connect(server.url, max_queue=1, close_timeout=0) as idle:
        assert (await raw_join(idle, "stall", 1, 2))["type"] == "joined"
        assert (await _recv(sender))["type"] == "peer-joined"
        # Random text: compression would squeeze repetitive padding to almost nothing.
        data = SessionDescription("offer", base64.b64encode(os.urandom(MAX_MESSAGE_BYTES // 2))
                                  .decode())
        dropped = asyncio.Event()

        async def flood() -> int:
            sent = 0
            while not dropped.is_set():
                await sender.send_signal(1, data)
                sent += 1
                await asyncio.sleep(0)  # sends rarely suspend on loopback; let the server run
            return sent

        flooding = asyncio.create_task(flood())
        try:
            assert await _recv(sender) == {"type": "peer-left", "party": 1}
        finally:
            dropped.set()
        assert await flooding * len(data.sdp) > NO_RATE_LIMIT.send_queue_bytes
    await sender.close()


async def test_burst_from_one_member_does_not_drop_a_reading_member(
    flood_server: RoomServer,
) -> None:
    server = flood_server
    clients = [SignalingClient(), SignalingClient()]
    for party, client in enumerate(clients):
        await client.connect(server.url)
        await client.join("burst", party, 2, identity=key(party))
    a, b = clients
    assert await _recv(a) == _peer_joined(1).to_wire()
    count = 8 * NO_RATE_LIMIT.send_queue_messages  # far more than one outbox holds

    async def burst() -> None:
        for i in range(count):
            await a.send_signal(1, SessionDescription("offer", str(i)))

    async def read() -> None:
        for i in range(count):
            assert (await _recv(b))["data"] == signal_data(SessionDescription("offer", str(i)))

    await asyncio.gather(burst(), read())
    await _leave_all([a, b])
