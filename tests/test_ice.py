"""ICE configuration: URLs, the environment, the room server's TURN REST credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest
from aiortc import RTCIceServer
from aiortc.rtcicetransport import connection_kwargs
from hypothesis import given, settings
from hypothesis import strategies as st
from seats import new_rooms, seat

from mpc_net.ice import (
    IceConfigError,
    TurnRest,
    from_environment,
    parse_url,
    turn_rest_credentials,
    unused,
)
from mpc_net.sdp import candidate_types
from mpc_net.signaling.protocol import IceServers

from helpers import DEMOS, mpc_net


@pytest.mark.parametrize("url, server", [
    ("stun:203.0.113.10", {"urls": ["stun:203.0.113.10"]}),
    ("turn:alice:s3cret@turn.example.org:3478",
     {"urls": ["turn:turn.example.org:3478"], "username": "alice", "credential": "s3cret"}),
    ("turn:a%40b:p%3Aq@203.0.113.10:3478?transport=tcp",
     {"urls": ["turn:203.0.113.10:3478?transport=tcp"], "username": "a@b", "credential": "p:q"}),
    ("turns:u:p@turn.example.org:5349",
     {"urls": ["turns:turn.example.org:5349"], "username": "u", "credential": "p"}),
])
def test_good_urls(url: str, server: dict) -> None:
    assert parse_url(url) == server


@pytest.mark.parametrize("url, message", [
    ("http://203.0.113.10", "malformed"),
    ("stun:u:p@203.0.113.10", "no credentials"),
    ("stun:203.0.113.10?transport=udp", "no credentials and no transport"),
    ("turn:203.0.113.10", "needs credentials"),
    ("turn:u:p@203.0.113.10?transport=sctp", "transport=udp or tcp"),
    ("turns:u:p@203.0.113.10?transport=udp", "transport=tcp"),
    ("stun:203.0.113.10:70000", "port out of range"),
    ("stun:[zz::1]", "malformed"),
    ("stun:[::1]:3478", "cannot use an IPv6 address"),
    ("turn:u:p@[2001:db8::1]:3478", "cannot use an IPv6 address"),
    ("stuns:203.0.113.10:5349", "does not support STUN over TLS"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(IceConfigError, match=message):
        parse_url(url)


def _aiortc_uses(server: dict) -> bool:
    """Whether aiortc's own parser takes `server` and uses it (as the only one given)."""
    try:
        used = connection_kwargs([RTCIceServer(**server)])
    except ValueError:  # aiortc: "malformed uri"
        return False
    return "stun_server" in used or "turn_server" in used


GOOD = ["stun:203.0.113.10", "stun:stun.example.org:3478", "turn:u:p@203.0.113.10",
        "turn:u:p@turn.example.org:3478?transport=tcp", "turn:u:p@h:3478?transport=udp",
        "turns:u:p@turn.example.org:5349", "turns:u:p@h?transport=tcp"]
# What aiortc rejects as malformed, or takes and then silently ignores.
AIORTC_CANNOT = ["stun:[::1]:3478", "stun:[2001:db8::1]", "turn:u:p@[::1]:3478",
                 "stuns:203.0.113.10", "stuns:h:5349", "turn:u:p@h?transport=sctp",
                 "turns:u:p@h?transport=udp", "stun:h?transport=udp", "stun:", "turn:u:p@"]


@pytest.mark.parametrize("url", GOOD)
def test_what_we_accept_aiortc_uses(url: str) -> None:
    assert _aiortc_uses(parse_url(url))


@pytest.mark.parametrize("url", AIORTC_CANNOT)
def test_what_aiortc_cannot_use_we_refuse(url: str) -> None:
    with pytest.raises(IceConfigError):
        parse_url(url)
    server = {"urls": [url.replace("u:p@", "")], "username": "u", "credential": "p"}
    assert not _aiortc_uses(server)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="stunr:[]@?=.0123456789abcdpx-", max_size=40))
def test_agreement_with_aiortc_on_any_text(text: str) -> None:
    """Whatever URL we accept, aiortc's parser takes and uses too."""
    try:
        server = parse_url(text)
    except IceConfigError:
        return
    assert _aiortc_uses(server), (text, server)


def test_environment_and_what_aiortc_ignores() -> None:
    servers = from_environment("stun:203.0.113.1, stun:203.0.113.2 turn:u:p@203.0.113.3")
    assert [s["urls"][0] for s in servers] == ["stun:203.0.113.1", "stun:203.0.113.2",
                                               "turn:203.0.113.3"]
    assert unused(servers) == ["stun:203.0.113.2"]
    assert from_environment(None) == [] == from_environment("  ")


def test_turn_rest_credentials_follow_the_coturn_scheme() -> None:
    username, password = turn_rest_credentials("sesame", 1_900_000_000, "room-1")
    assert username == "1900000000:room-1"
    expected = hmac.new(b"sesame", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def test_room_server_hands_each_party_fresh_turn_credentials() -> None:
    now = [1_900_000_000.0]
    rooms = new_rooms(ice_servers=[{"urls": ["stun:203.0.113.10:3478"]}],
                      turn=TurnRest("turn:203.0.113.10:3478", "sesame"), clock=lambda: now[0])
    reply = seat(rooms, "conn-0", "lab", 0, 2)[0][1]
    stun, turn = reply.ice_servers
    assert stun == {"urls": ["stun:203.0.113.10:3478"]}
    assert turn["urls"] == ["turn:203.0.113.10:3478"]
    expires, user = turn["username"].split(":")
    # Ten minutes by default, and a seat that stays gets fresh ones before they expire.
    assert user == "lab-0" and int(expires) == now[0] + 600
    assert turn_rest_credentials("sesame", int(expires), user)[1] == turn["credential"]
    now[0] += 300
    [(conn, renewal)] = rooms.renew()
    assert conn == "conn-0" and isinstance(renewal, IceServers)
    assert renewal.ice_servers[1]["username"] == f"{int(now[0]) + 600}:lab-0"
    rooms.disconnect("conn-0")
    assert rooms.renew() == []


@pytest.mark.parametrize("turn, message", [
    (("stun:203.0.113.10", "s"), "not a TURN URL"),
    (("turn:u:p@203.0.113.10", "s"), "without credentials"),
    (("turn:203.0.113.10", ""), "empty"),
])
def test_bad_turn_rest_settings(turn: tuple[str, str], message: str) -> None:
    with pytest.raises(IceConfigError, match=message):
        TurnRest(*turn)


def test_candidate_types() -> None:
    sdp = ("v=0\r\na=candidate:1 1 udp 2130706431 10.0.1.2 5000 typ host\r\n"
           "a=candidate:2 1 udp 1694498815 203.0.113.11 5000 typ srflx raddr 10.0.1.2 rport 5000"
           "\r\na=candidate:3 1 udp 16777215 203.0.113.10 6000 typ relay raddr 0.0.0.0 rport 0\r\n")
    assert candidate_types(sdp) == ["host", "srflx", "relay"]


@pytest.mark.parametrize("args, message", [
    (["run", str(DEMOS / "auction.py"), "-M2", "-I", "0", "--room", "r", "--signal",
      "ws://127.0.0.1:9", "--trust-room-server", "--ice", "turn:203.0.113.10"],
     "needs credentials"),
    (["signal", "--turn-url", "turn:203.0.113.10"], "go together"),
    (["signal", "--turn-url", "turn:u:p@203.0.113.10", "--turn-secret", "s"],
     "without credentials"),
    (["signal", "--ice", "stun:"], "malformed"),
    (["run", str(DEMOS / "auction.py"), "-M2", "-I", "0", "--room", "r", "--signal",
      "ws://127.0.0.1:9", "--trust-room-server", "--ice", "stun:[::1]:3478"],
     "cannot use an IPv6 address"),
    (["run", str(DEMOS / "auction.py"), "-M3", "--ice", "stuns:203.0.113.10"],
     "does not support STUN over TLS"),
    (["signal", "--ice", "stuns:203.0.113.10"], "does not support STUN over TLS"),
])
def test_bad_ice_options_are_one_line_and_exit_code_2(args: list[str], message: str) -> None:
    done = mpc_net(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_malformed_environment_is_one_line_and_exit_code_2() -> None:
    env = {**os.environ, "MPC_NET_ICE": "stun:203.0.113.10 bogus"}
    done = mpc_net("run", str(DEMOS / "auction.py"), "-M2", "-I", "0", "--room", "r",
                   "--signal", "ws://127.0.0.1:9", "--trust-room-server", env=env)
    assert done.returncode == 2 and "bogus" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
