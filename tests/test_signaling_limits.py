"""The room server's limits, shutdown, logs and health endpoint, on loopback."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from seats import SeatKey, join_message, key, raw_join, roster_of
from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request

from mpc_net.ice import TurnRest
from mpc_net.native.signaling import SignalingClient, SignalingError
from mpc_net.signaling import protocol
from mpc_net.signaling.arguments import add_limit_arguments, limits_from
from mpc_net.signaling.limits import Limits, address_group
from mpc_net.signaling.logs import JsonFormatter
from mpc_net.signaling.outbox import CLOSE_GRACE
from mpc_net.signaling.outbox import Client as _Client
from mpc_net.signaling.protocol import (
    MAX_MESSAGE_BYTES,
    ErrorCode,
    SessionDescription,
    encode,
    signal_data,
)
from mpc_net.signaling.server import OPEN_TIMEOUT, RoomServer, serve_until_signal

TIMEOUT = 5  # seconds for any single network step
PING = SessionDescription("offer", "ping")  # c's signals while a floods
STILL = SessionDescription("offer", "still here")
ROOT = Path(__file__).resolve().parent.parent


async def _recv(ws: ClientConnection) -> dict:
    async with asyncio.timeout(TIMEOUT):
        return json.loads(await ws.recv())


async def _replies_until_closed(ws: ClientConnection) -> list[dict]:
    """Everything the server sends until it closes the connection."""
    replies = []
    async with asyncio.timeout(TIMEOUT):
        try:
            while True:
                replies.append(json.loads(await ws.recv()))
        except ConnectionClosed:
            return replies


async def _next(client: SignalingClient) -> protocol.ServerMessage:
    async with asyncio.timeout(TIMEOUT):
        return await client.recv()


async def _join(ws: ClientConnection, room: str, party: int, parties: int, **extra: str) -> dict:
    async with asyncio.timeout(TIMEOUT):
        return await raw_join(ws, room, party, parties, **extra)


@pytest.fixture
async def start() -> AsyncIterator:
    """Start RoomServers with given limits; all are closed at the end."""
    servers: list[RoomServer] = []

    async def start(**limits: object) -> RoomServer:
        server = RoomServer("127.0.0.1", 0, limits=Limits(**limits))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def _drained(server: RoomServer) -> None:
    async with asyncio.timeout(TIMEOUT):
        while any(server.stats().values()) or server._addresses:
            await asyncio.sleep(0.01)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"max_message_bytes": 0},
        {"messages_per_second": 0},
        {"message_burst": 0},
        {"max_rooms": 0},
        {"max_connections": 0},
        {"send_queue_messages": 0},
        {"send_queue_bytes": 0},
        {"idle_timeout": -1},
        {"max_connections_per_address": -1},
        {"send_queue_bytes": MAX_MESSAGE_BYTES - 1},
        {"join_tokens": ("",)},
    ],
)
def test_limits_refuse_nonsense(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Limits(**bad)


def _signal_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpc-net signal")
    add_limit_arguments(parser)
    return parser


def test_options_default_to_the_default_limits() -> None:
    options = _signal_parser().parse_args([])
    assert limits_from(options) == Limits()
    assert options.log_format == "text"


def test_options_set_every_limit(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("\n  alpha  \n\nbeta\n")
    options = _signal_parser().parse_args([
        "--max-message-bytes", "1000", "--messages-per-second", "2.5", "--message-burst", "7",
        "--max-rooms", "3", "--max-connections", "11", "--max-connections-per-address", "0",
        "--max-pending-joins", "4", "--seat-timeout", "0",
        "--idle-timeout", "9.5", "--send-queue-messages", "5", "--send-queue-bytes", "4000",
        "--allowed-origin", "https://a.example", "--allowed-origin", "http://localhost:8000",
        "--join-token", "gamma", "--join-token-file", str(tokens), "--join-token", "alpha",
        "--log-format", "json",
    ])
    assert limits_from(options) == Limits(
        max_message_bytes=1000, messages_per_second=2.5, message_burst=7, max_rooms=3,
        max_connections=11, max_connections_per_address=0, max_pending_joins=4, seat_timeout=0,
        idle_timeout=9.5,
        send_queue_messages=5,
        send_queue_bytes=4000, allowed_origins=("https://a.example", "http://localhost:8000"),
        join_tokens=("gamma", "alpha", "beta"),
    )
    assert options.log_format == "json"


@pytest.mark.parametrize(
    "args",
    [
        ["--messages-per-second", "0"],
        ["--max-rooms", "0"],
        ["--max-pending-joins", "0"],
        ["--idle-timeout", "-1"],
        ["--seat-timeout", "nan"],
        ["--join-timeout", "-1"],
        ["--send-queue-bytes", "lots"],
        ["--join-token-file", "/nonexistent/tokens"],
        ["--join-token", " "],
        ["--log-format", "xml"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        _signal_parser().parse_args(args)
    assert info.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_old_join_timeout_of_the_server_still_works_and_warns_once() -> None:
    options = _signal_parser().parse_args(["--join-timeout", "7", "--join-timeout", "8"])
    assert limits_from(options).seat_timeout == 8
    assert options.deprecated_options == {"--join-timeout": "--seat-timeout"}
    options = _signal_parser().parse_args(["--seat-timeout", "5"])
    assert limits_from(options).seat_timeout == 5 and "deprecated_options" not in vars(options)


def test_a_deprecated_option_is_one_warning_in_the_json_log() -> None:
    # The real command: its log starts with the warning, as JSON like every other line.
    proc = subprocess.Popen([sys.executable, "-m", "mpc_net", "signal", "--port", "0",
                             "--join-timeout", "7", "--log-format", "json",
                             "--join-timeout", "8"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        warning, listening = (json.loads(proc.stderr.readline()) for _ in range(2))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=TIMEOUT + CLOSE_GRACE)[1]
    assert (warning["level"], warning["event"], warning["option"]) == (
        "warning", "deprecated-option", "--join-timeout")
    assert "--seat-timeout" in warning["message"] and listening["event"] == "listening"
    assert "deprecated" not in rest and proc.returncode == 0


def test_empty_token_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("\n \n")
    with pytest.raises(SystemExit):
        _signal_parser().parse_args(["--join-token-file", str(empty)])


# -- rate -----------------------------------------------------------------------------------------


async def test_excess_messages_get_rate_limited_and_persistent_abuse_is_closed(start) -> None:
    # A refill this slow adds nothing during the test: the burst is all there is.
    server = await start(messages_per_second=0.001, message_burst=3)
    async with connect(server.url) as ws:
        for _ in range(10):
            await ws.send(encode(protocol.Leave()))
        replies = await _replies_until_closed(ws)
        assert ws.close_code == 1008  # policy violation
    codes = [reply["code"] for reply in replies]
    # Three messages pass (and are refused as leave-before-join), then come rate-limited
    # errors, and the disconnect once the debt reaches a whole burst (the fourth refusal, or
    # the third if not even a microsecond passed).
    assert codes[:3] == ["not-joined"] * 3
    assert codes[3:] in (["rate-limited"] * 3, ["rate-limited"] * 4)
    assert replies[-1]["message"] == "kept sending beyond 0.001 messages per second"
    await _drained(server)


async def test_rate_limited_client_recovers_after_a_pause(start) -> None:
    server = await start(messages_per_second=20, message_burst=2)
    async with connect(server.url) as ws:
        for _ in range(3):
            await ws.send(encode(protocol.Leave()))
        assert [(await _recv(ws))["code"] for _ in range(3)] == [
            "not-joined", "not-joined", "rate-limited"]
        await asyncio.sleep(0.25)  # five tokens' worth: pays the debt and refills the bucket
        assert (await _join(ws, "r", 0, 1))["type"] == "joined"


async def test_rate_limit_is_per_connection(start) -> None:
    # The burst is a join (hello and join) and three signals.
    server = await start(messages_per_second=0.001, message_burst=5)
    async with connect(server.url) as a, connect(server.url) as b:
        assert (await _join(a, "r", 0, 2))["type"] == "joined"
        assert (await _join(b, "r", 1, 2))["type"] == "joined"
        assert (await _recv(a))["type"] == "peer-joined"
        for _ in range(10):  # b spends its burst and more, and is closed
            await b.send(encode(protocol.Signal(0, {"n": 1})))
        await _replies_until_closed(b)
        # a's own budget is untouched: it hears b's three signals and b leaving, and sends.
        got = [await _recv(a) for _ in range(4)]
        assert got[:3] == [protocol.RelayedSignal(1, {"n": 1}).to_wire()] * 3
        assert got[3] == protocol.PeerLeft(1).to_wire()
        await a.send(encode(protocol.Signal(1, {})))
        assert (await _recv(a))["code"] == "unknown-peer"


# -- rooms, connections, timeouts -----------------------------------------------------------------


async def test_room_count_is_bounded(start) -> None:
    server = await start(max_rooms=2)
    async with connect(server.url) as a, connect(server.url) as b, connect(server.url) as c:
        assert (await _join(a, "one", 0, 2))["type"] == "joined"
        assert (await _join(b, "two", 0, 1))["type"] == "joined"
        refused = await _join(c, "three", 0, 1)
        assert refused["code"] == ErrorCode.TOO_MANY_ROOMS
        assert refused["message"] == "the room server holds its limit of 2 rooms; try later"
        assert (await _join(c, "one", 1, 2))["type"] == "joined"  # existing rooms stay open
        await b.send(encode(protocol.Leave()))
        async with connect(server.url) as d:
            assert (await _join(d, "three", 0, 1))["type"] == "joined"
    await _drained(server)


async def test_connections_per_address_are_bounded(start) -> None:
    server = await start(max_connections_per_address=2)
    async with connect(server.url) as a, connect(server.url) as b:
        async with connect(server.url) as refused:
            (reply,) = await _replies_until_closed(refused)
            assert reply["code"] == ErrorCode.TOO_MANY_CONNECTIONS
            assert reply["message"] == "more than 2 connections from 127.0.0.1"
            assert refused.close_code == 1008
        assert server.stats()["connections"] == 2
        await a.close()
        async with asyncio.timeout(TIMEOUT):  # the server forgets a in a's handler, just after
            while server.stats()["connections"] > 1:
                await asyncio.sleep(0.01)
        async with connect(server.url) as again:
            assert (await _join(again, "r", 0, 2))["type"] == "joined"
            assert (await _join(b, "r", 1, 2))["type"] == "joined"
    await _drained(server)


async def test_connections_in_all_are_bounded(start) -> None:
    server = await start(max_connections=2, max_connections_per_address=0)
    async with connect(server.url), connect(server.url):
        async with connect(server.url) as refused:
            assert await _replies_until_closed(refused) == [protocol.Error(
                ErrorCode.TOO_MANY_CONNECTIONS,
                "the room server holds its limit of 2 connections").to_wire()]
            assert refused.close_code == 1008
    await _drained(server)


async def test_connection_that_never_joins_is_closed(start) -> None:
    server = await start(seat_timeout=0.3)
    async with connect(server.url) as ws:
        began = time.monotonic()
        for _ in range(5):  # talking is not joining
            await ws.send("{not json")
            await asyncio.sleep(0.05)
        replies = await _replies_until_closed(ws)
        assert 0.3 <= time.monotonic() - began < 0.3 + TIMEOUT
        assert ws.close_code == 1008
    assert replies[-1] == protocol.Error(ErrorCode.IDLE_TIMEOUT, "no join within 0.3 s").to_wire()
    await _drained(server)


async def test_silent_member_is_closed_and_its_peers_told(start) -> None:
    server = await start(idle_timeout=0.4)
    async with connect(server.url) as talker, connect(server.url) as silent:
        await _join(talker, "r", 0, 2)
        await _join(silent, "r", 1, 2)
        assert (await _recv(talker))["type"] == "peer-joined"
        for _ in range(6):  # 0.6 s in all, longer than the idle timeout, but never silent
            await talker.send(encode(protocol.Signal(1, {})))
            await asyncio.sleep(0.1)
        *heard, last = await _replies_until_closed(silent)
        assert last == protocol.Error(ErrorCode.IDLE_TIMEOUT, "silent for 0.4 s").to_wire()
        assert silent.close_code == 1008
        # About four signals came before the timeout; a busy machine may shift that by one or two.
        assert 1 <= len(heard) <= 6
        assert all(m == protocol.RelayedSignal(0, {}).to_wire() for m in heard)
        # The talker is still there: it hears that party 1 left and gets answers.
        assert await _recv(talker) == protocol.PeerLeft(1).to_wire()
        await talker.send(encode(protocol.Leave()))
        assert (await _recv(talker))["code"] in ("unknown-peer", "not-joined")


async def test_member_that_sends_only_junk_keeps_no_seat(start) -> None:
    server = await start(idle_timeout=0.4)
    async with connect(server.url) as member, connect(server.url) as junk:
        await _join(member, "r", 0, 2)
        await _join(junk, "r", 1, 2)
        assert (await _recv(member))["type"] == "peer-joined"
        began = time.monotonic()
        # Invalid messages, and valid ones the room refuses, are no activity.
        junk_messages = ["{not json", encode(protocol.Signal(1, {})),
                         encode(protocol.Leave())[:-1], json.dumps({"type": "hello", "version": 1})]
        replies = []
        try:
            for raw in junk_messages * 3:
                await junk.send(raw)
                replies.append(await _recv(junk))
                await member.send(encode(protocol.Hello()))  # a valid message keeps it
                assert (await _recv(member))["type"] == "challenge"
                await asyncio.sleep(0.1)
        except ConnectionClosed:
            pass
        *_, last = replies + await _replies_until_closed(junk)
        assert last == protocol.Error(ErrorCode.IDLE_TIMEOUT, "silent for 0.4 s").to_wire()
        assert time.monotonic() - began < 0.4 + TIMEOUT
        # Its errors went to it alone: the member heard nothing but its leaving.
        assert await _recv(member) == protocol.PeerLeft(1).to_wire()


async def test_half_open_handshakes_end_within_seconds(start) -> None:
    server = await start()
    began = time.monotonic()
    silent = await asyncio.open_connection("127.0.0.1", server.port)
    partial = await asyncio.open_connection("127.0.0.1", server.port)
    partial[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    for reader, writer in (silent, partial):
        async with asyncio.timeout(OPEN_TIMEOUT + TIMEOUT):
            while await reader.read(1024):
                pass
        writer.close()
    assert time.monotonic() - began < OPEN_TIMEOUT + 2


@pytest.mark.parametrize(("host", "group"), [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("198.51.100.7", "198.51.100.7"),
    ("unknown", "unknown"),
])
def test_connections_per_address_count_ipv6_by_64(host: str, group: str) -> None:
    assert address_group(host) == group


# -- TURN credentials ------------------------------------------------------------------------------

TURN = TurnRest("turn:127.0.0.1:3478", "sesame")


def test_turn_without_join_tokens_needs_an_explicit_open_relay(
        caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match="open relay"):
        RoomServer(turn=TURN)
    assert RoomServer(turn=TURN, limits=Limits(join_tokens=("t",))).open_relay is False
    assert RoomServer(turn=TURN, open_relay=True).open_relay is True


def test_signal_command_refuses_an_open_relay_unless_told(tmp_path: Path) -> None:
    turn = ["--turn-url", "turn:127.0.0.1:3478", "--turn-secret", "sesame", "--port", "0"]
    done = subprocess.run([sys.executable, "-m", "mpc_net", "signal", *turn], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--turn-open-relay" in done.stderr
    assert done.stderr.count("\n") <= 3 and "Traceback" not in done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mpc_net", "signal", *turn,
                             "--turn-open-relay"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        warning, listening = proc.stderr.readline(), proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=TIMEOUT + CLOSE_GRACE)
    assert "open relay" in warning and "listening on ws://" in listening


async def test_unauthenticated_joins_get_no_turn_credentials(start) -> None:
    server = RoomServer("127.0.0.1", 0, turn=TURN,
                        limits=Limits(join_tokens=("member-token",), message_burst=64))
    await server.start()
    try:
        roster = roster_of(2)
        stranger = SeatKey()
        attempts = [
            # a join of the first protocol, a proven seat without the token, a wrong token,
            # the token without a proof of the roster key, and someone else's proof
            lambda ws: ws.send(json.dumps({"type": "join", "version": 1, "room": "r", "party": 1,
                                       "parties": 2, "key": key(1).public_text})),
            lambda ws: raw_join(ws, "r", 1, 2, roster=roster),
            lambda ws: raw_join(ws, "r", 1, 2, roster=roster, token="guess"),
            lambda ws: raw_join(ws, "r", 1, 2, roster=roster, signer=stranger,
                                token="member-token"),
            lambda ws: ws.send(encode(join_message(bytes(32), "r", 1, 2,
                                                   token="member-token"))),
        ]
        heard = []
        for i in range(20):
            async with connect(server.url) as ws:
                await attempts[i % len(attempts)](ws)
                await ws.send(encode(protocol.Leave()))  # its reply comes after all others
                while (reply := await _recv(ws))["type"] != "error" or (
                        "leave" not in reply["message"]):
                    heard.append(reply)
        assert heard and not any("credential" in json.dumps(m) or m["type"] == "joined"
                                 for m in heard), heard
        # A member with the token and its roster key gets credentials.
        async with connect(server.url) as ws:
            joined = await _join(ws, "r", 1, 2, roster=roster, token="member-token")
        assert joined["ice_servers"][0]["username"].endswith(":r-1")
    finally:
        await server.close()


class _Quiet:
    """Enough of a _Client for RoomServer._deadline."""

    closing = False
    unseated_since = last_heard = 0.0


def test_timeouts_of_zero_are_off() -> None:
    server = RoomServer(limits=Limits(seat_timeout=0, idle_timeout=0))
    assert server._deadline(_Quiet()) is None  # type: ignore[arg-type]
    assert RoomServer()._deadline(_Quiet()) == Limits().seat_timeout  # type: ignore[arg-type]


# -- origins and tokens ---------------------------------------------------------------------------


async def test_only_allowed_browser_origins_may_connect(start) -> None:
    server = await start(allowed_origins=("https://app.example", "http://localhost:8000"))
    for origin in ("https://evil.example", "https://app.example.evil", "null"):
        with pytest.raises(InvalidStatus) as info:
            await connect(server.url, origin=origin)
        assert info.value.response.status_code == 403
    for origin in ("https://app.example", "http://localhost:8000", None):  # None: no header
        async with connect(server.url, origin=origin) as ws:
            assert (await _join(ws, "r", 0, 1))["type"] == "joined"


async def test_any_origin_is_allowed_by_default(start) -> None:
    server = await start()
    async with connect(server.url, origin="https://anywhere.example") as ws:
        assert (await _join(ws, "r", 0, 1))["type"] == "joined"


BAD_TOKEN_TEXT = "the join token is missing or wrong"


async def test_joins_need_a_right_token_when_tokens_are_set(start) -> None:
    server = await start(join_tokens=("first-secret", "second-secret"))
    async with connect(server.url) as ws:
        for extra in ({}, {"token": "wrong"}, {"token": "first-secre"}, {"token": "\ud800"}):
            reply = await _join(ws, "r", 0, 1, **extra)
            assert reply == protocol.Error(ErrorCode.BAD_TOKEN, BAD_TOKEN_TEXT).to_wire()
        assert (await _join(ws, "r", 0, 1, token="second-secret"))["type"] == "joined"
    client = SignalingClient()
    await client.connect(server.url)
    with pytest.raises(SignalingError) as info:
        await client.join("s", 0, 1, identity=key(0), token="nope")
    assert info.value.code == ErrorCode.BAD_TOKEN
    joined = await client.join("s", 0, 1, identity=key(0), token="first-secret")
    assert isinstance(joined, protocol.Joined)
    await client.close()


# -- slow readers ---------------------------------------------------------------------------------


class _StalledSocket:
    """Stands in for a ServerConnection whose peer never reads: a send never completes."""

    remote_address = ("127.0.0.1", 4242)

    def __init__(self) -> None:
        self.aborted = False
        self.transport = self

    def abort(self) -> None:
        self.aborted = True

    async def send(self, text: str) -> None:
        await asyncio.Event().wait()


@pytest.mark.parametrize(("messages", "size", "fits"), [(4, 100, 5), (100, 1000, 11)])
async def test_outbox_is_bounded_in_messages_and_bytes(messages: int, size: int, fits: int) -> None:
    ws = _StalledSocket()
    limits = Limits(send_queue_messages=messages, send_queue_bytes=10_000, max_message_bytes=5000)
    client = _Client(ws, limits, 0)
    msg = protocol.RelayedSignal(1, {"pad": "x" * (size - 44)})
    assert len(encode(msg)) == size
    for _ in range(fits):  # the writer takes the first one and hangs sending it
        client.send(msg)
        await asyncio.sleep(0)
        assert not ws.aborted
    assert client.queued_bytes == (fits - 1) * size <= limits.send_queue_bytes
    client.send(msg)
    assert ws.aborted and client.closing and client.queued_bytes == 0
    await client.stop()


async def test_stalled_reader_is_dropped_with_bounded_memory_while_its_room_works(start) -> None:
    queue_bytes = 256 * 1024
    server = await start(messages_per_second=1e9, message_burst=10**9,
                         send_queue_bytes=queue_bytes)
    a, c = SignalingClient(), SignalingClient()
    for party, client in ((0, a), (2, c)):
        await client.connect(server.url)
        await client.join("stall", party, 3, identity=key(party))
    assert isinstance(await _next(a), protocol.PeerJoined)
    # Random text: compression would squeeze repetitive padding to almost nothing.
    data = SessionDescription("offer", base64.b64encode(os.urandom(MAX_MESSAGE_BYTES // 2))
                              .decode())
    tracemalloc.start()
    try:
        # max_queue=1: this client stops reading from its socket after one message.
        async with connect(server.url, max_queue=1, close_timeout=0) as stalled:
            await _join(stalled, "stall", 1, 3)
            assert isinstance(await _next(a), protocol.PeerJoined)
            assert isinstance(await _next(c), protocol.PeerJoined)
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            sent, peak_queue = await _flood_until_dropped(server, a, c, data)
            growth = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    flooded = sent * len(data.sdp)
    # The server queued at most its bound for the stalled reader while far more was sent, and
    # Python's memory (the test's clients included) grew by a few queues' worth, not the flood.
    assert peak_queue <= queue_bytes < 4 * queue_bytes < flooded
    assert growth < 8 * queue_bytes, (growth, flooded)
    # The others keep working: c signals a and back, then both leave.
    await c.send_signal(0, STILL)
    assert await _next_signal(a) == protocol.RelayedSignal(2, signal_data(STILL))
    await a.close()
    await c.close()
    await _drained(server)


async def _flood_until_dropped(
    server: RoomServer, a: SignalingClient, c: SignalingClient, data: SessionDescription
) -> tuple[int, int]:
    """a floods party 1 while c keeps signaling a; return the signals sent to party 1 and the
    most bytes the server ever held queued for one connection."""
    dropped = asyncio.Event()
    peak = 0

    async def watch_queues() -> None:
        nonlocal peak
        while not dropped.is_set():
            peak = max([peak, *(client.queued_bytes for client in server._clients)])
            await asyncio.sleep(0)

    async def flood() -> int:
        sent = 0
        while not dropped.is_set():
            await a.send_signal(1, data)
            sent += 1
            await asyncio.sleep(0)  # sends rarely suspend on loopback; let the server run
        return sent

    async def ping() -> None:
        while not dropped.is_set():
            await c.send_signal(0, PING)
            await asyncio.sleep(0.01)

    async def a_hears_pings() -> int:
        heard = 0
        while not dropped.is_set():
            msg = await a.recv()
            heard += msg == protocol.RelayedSignal(2, signal_data(PING))
        return heard

    async def c_sees_the_drop() -> None:
        msg = await c.recv()
        assert msg == protocol.PeerLeft(1)
        dropped.set()

    tasks = [asyncio.create_task(coro) for coro in (watch_queues(), flood(), ping())]
    hearing = asyncio.create_task(a_hears_pings())
    try:
        async with asyncio.timeout(4 * TIMEOUT):
            await c_sees_the_drop()
            _, sent, _ = await asyncio.gather(*tasks)
            # a hears the peer-left too, which ends its reading; it kept hearing c meanwhile.
            assert await hearing > 0
    finally:
        dropped.set()
        for task in [*tasks, hearing]:
            task.cancel()
    return sent, peak


async def _next_signal(client: SignalingClient) -> protocol.RelayedSignal:
    """The next signal that is not one of c's pings."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            msg = await client.recv()
            if isinstance(msg, protocol.RelayedSignal) and msg.data != signal_data(PING):
                return msg


# -- shutdown -------------------------------------------------------------------------------------


async def test_shutdown_tells_every_client_and_is_bounded_by_stalled_ones(start) -> None:
    server = await start()
    members = [await connect(server.url) for _ in range(3)]
    for party, ws in enumerate(members):
        await _join(ws, "r", party, 3)
    lurker = await connect(server.url)  # connected, not in a room
    stalled = await connect(server.url, max_queue=1, close_timeout=0)
    await _join(stalled, "s", 0, 2)
    flood = {"pad": "x" * (MAX_MESSAGE_BYTES // 2)}
    # Queue signals for the stalled client (less than its send queue holds, so it is not
    # dropped): it reads none of them, nor answers the close.
    async with connect(server.url) as sender:
        await _join(sender, "s", 1, 2)
        for _ in range(6):
            await sender.send(encode(protocol.Signal(0, flood)))
        began = time.monotonic()
        await server.close("maintenance")
        assert time.monotonic() - began < CLOSE_GRACE + 2
    for ws in [*members, lurker]:
        replies = await _replies_until_closed(ws)
        assert replies[-1] == protocol.Closing("maintenance").to_wire()
        assert ws.close_code == 1001
    await stalled.close()
    await asyncio.gather(*(ws.close() for ws in members))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_gracefully(sig: signal.Signals,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mpc_net.signaling")
    limits = Limits(max_rooms=1)
    task = asyncio.create_task(serve_until_signal(RoomServer("127.0.0.1", 0, limits=limits)))
    async with asyncio.timeout(TIMEOUT):
        while not any("listening" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.01)
    url = next(r.url for r in caplog.records if getattr(r, "event", None) == "listening")
    client = SignalingClient()
    await client.connect(url)
    await client.join("r", 0, 2, identity=key(0))
    other = SignalingClient()
    await other.connect(url)
    with pytest.raises(SignalingError, match="too-many-rooms"):  # the limits were applied
        await other.join("s", 0, 1, identity=key(0))
    os.kill(os.getpid(), sig)
    with pytest.raises(SignalingError) as info:
        async with asyncio.timeout(TIMEOUT):
            await client.recv()
    assert info.value.code == ErrorCode.SERVER_CLOSING
    async with asyncio.timeout(TIMEOUT):
        await task
        assert [msg async for msg in other] == []  # iteration ends at the notice
    assert client._ws.close_code == other._ws.close_code == 1001
    await client.close()
    await other.close()


# -- health ---------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_health_reports_rooms_connections_and_parties(start) -> None:
    server = await start()
    http_url = server.url.replace("ws://", "http://")
    status, kind, body = await asyncio.to_thread(_get, f"{http_url}/health")
    assert (status, kind) == (200, "application/json")
    assert json.loads(body) == {"status": "ok", "rooms": 0, "connections": 0, "parties": 0}
    async with connect(server.url) as a, connect(server.url) as b, connect(server.url):
        await _join(a, "r", 0, 3)
        await _join(b, "r", 1, 3)
        status, _, body = await asyncio.to_thread(_get, f"{http_url}/health?verbose=1")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "rooms": 1, "connections": 3, "parties": 2}
    for path in ("/", "/health/x", "/index.html"):
        status, _, body = await asyncio.to_thread(_get, f"{http_url}{path}")
        assert (status, body) == (404, "not found\n")


def test_handle_http_leaves_other_paths_to_a_chained_server() -> None:
    server = RoomServer()
    for path in ("/", "/app.js", "/healthz"):
        assert server.handle_http(None, Request(path, Headers())) is None  # type: ignore[arg-type]


# -- logs -----------------------------------------------------------------------------------------


def test_json_formatter_writes_one_object_per_line_with_the_extra_fields() -> None:
    record = logging.makeLogRecord({
        "name": "mpc_net.signaling", "levelno": logging.INFO, "levelname": "INFO",
        "msg": "room %s: party %d joined\nsecond line", "args": ("r", 2),
        "event": "joined", "room": "r", "party": 2, "code": ErrorCode.BAD_TOKEN,
    })
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {"level": "info", "logger": "mpc_net.signaling",
                     "message": "room r: party 2 joined\nsecond line", "event": "joined",
                     "room": "r", "party": 2, "code": "bad-token"}


def test_json_logs_of_a_server_process() -> None:
    """A server process with setup_logging("json"), as `mpc-net signal --log-format json`."""
    # -c puts the working directory, this checkout, first on the module path.
    code = textwrap.dedent("""
        import asyncio
        from mpc_net.signaling.logs import setup_logging
        from mpc_net.signaling.server import RoomServer, serve_until_signal
        setup_logging("json")
        asyncio.run(serve_until_signal(RoomServer("127.0.0.1", 0)))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = json.loads(proc.stderr.readline())
        assert first["event"] == "listening" and first["url"].startswith("ws://127.0.0.1:")
        asyncio.run(_join_and_leave(first["url"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=TIMEOUT + CLOSE_GRACE)[1]
    entries = [json.loads(line) for line in rest.splitlines()]
    events = [entry.get("event") for entry in entries]
    assert events == ["open-room", "joined", "left", "shutdown", "closing"], entries
    assert entries[1]["room"] == "logged" and entries[1]["client"].startswith("127.0.0.1:")
    assert proc.returncode == 0


async def _join_and_leave(url: str) -> None:
    client = SignalingClient()
    await client.connect(url)
    await client.join("logged", 0, 1, identity=key(0))
    await client.leave()
    await client.close()
