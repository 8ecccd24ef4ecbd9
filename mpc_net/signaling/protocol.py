"""Signaling message schema: validation and builders (error codes in errors.py, checks of single
fields in fields.py; all are to be imported from here).

Pure Python without I/O: the room server, the native client and the browser client (Pyodide)
share this module, so every side applies exactly the same rules.

Parsers return fresh dicts holding only the known fields of a message, so the code behind them
never sees unvalidated input. Builders run the same validation on what they build, so a message
that one side builds is one that the other side accepts.
"""

from __future__ import annotations

import json
import struct

from . import fields
from .errors import ErrorCode, ProtocolError, SignalingError
from .fields import (
    MAX_CREDENTIAL_CHARS,
    MAX_DATA_DEPTH,
    MAX_PARTIES,
    decode_bytes,
    encode_bytes,
    validate_ice_servers,
    validate_room,
)

# The names other modules use; errors.py and fields.py are parts of this module.
__all__ = [
    "CHALLENGE_BYTES", "MAX_CREDENTIAL_CHARS", "MAX_DATA_DEPTH", "MAX_MESSAGE_BYTES",
    "MAX_PARTIES", "PROOF_BYTES", "SEAT_LABEL", "VERSION", "ErrorCode", "ProtocolError",
    "SignalingError", "challenge", "check_seat", "closing", "decode_bytes", "encode",
    "encode_bytes", "error", "hello", "ice_servers", "join", "joined", "leave", "other_roster",
    "parse_client_message", "parse_server_message", "peer_joined", "peer_left",
    "relayed_signal", "seat_statement", "signal", "validate_ice_servers", "validate_room",
]

# 2: seats are proven with a signature over a server challenge; rooms are keyed by roster.
VERSION = 2
MAX_MESSAGE_BYTES = 64 * 1024
CHALLENGE_BYTES = 32
PROOF_BYTES = 64  # an Ed25519 signature
SEAT_LABEL = b"mpc-net/seat/v1"


# -- parsing -------------------------------------------------------------------------------------


def parse_client_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Validate a client -> server message; raise ProtocolError."""
    return _validate_client(fields.load_json(raw, max_bytes), max_bytes)


def parse_server_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Validate a server -> client message; raise ProtocolError."""
    return _validate_server(fields.load_json(raw, max_bytes))


def encode(msg: dict) -> str:
    """Compact JSON; ASCII only, so a lone surrogate in a string cannot break UTF-8 framing."""
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


# -- client -> server ----------------------------------------------------------------------------


def _version(msg: dict) -> int:
    version = fields.integer(msg, "version")
    if version != VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"signaling protocol version {version} is not the room server's version {VERSION}; "
            "every party and the room server need an mpc-net release that speaks the same one",
        )
    return version


def _validate_client(msg: dict, max_bytes: int) -> dict:
    kind = fields.message_type(msg)
    if kind == "hello":
        return {"type": "hello", "version": _version(msg)}
    if kind == "join":
        _version(msg)
        room = fields.room(msg)
        parties = fields.party_count(msg)
        out = {
            "type": "join",
            "version": VERSION,
            "room": room,
            "party": fields.party_in_room(msg, parties),
            "parties": parties,
        }
        # Every seat is proven: the key signs the server's challenge (see seat_statement).
        fields.optional_credential(msg, "key", out)
        if "key" not in out:
            raise fields.bad("join message lacks field 'key'")
        out["proof"] = fields.exact_bytes(msg, "proof", PROOF_BYTES)
        if "roster" in msg:
            out["roster"] = fields.field(msg, "roster", dict, "an object")
        fields.optional_credential(msg, "token", out)
        return out
    if kind == "signal":
        out = {"type": "signal", "to": fields.party(msg, "to"), "data": fields.data(msg)}
        # The relayed copy names the sender instead and re-encodes the data; checking its size
        # here means every accepted signal reaches its receiver within the same bound.
        if len(encode(relayed_signal(MAX_PARTIES - 1, out["data"]))) > max_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"relayed signal would exceed {max_bytes} bytes"
            )
        return out
    if kind == "leave":
        return {"type": "leave"}
    raise fields.bad(f"unknown client message type {kind[:40]!r}")


def hello() -> dict:
    """Asks the server for a fresh challenge, which the next join must sign."""
    return {"type": "hello", "version": VERSION}


def check_seat(room: str, party: int, parties: int) -> None:
    """Raise ProtocolError unless this is a seat a join may ask for."""
    msg = {"type": "join", "room": room, "party": party, "parties": parties}
    fields.room(msg)
    fields.party_in_room(msg, fields.party_count(msg))


def seat_statement(
    challenge: bytes, room: str, party: int, parties: int, session_id: bytes | None
) -> bytes:
    """What a joining party signs with its key: the server's fresh challenge (so no proof is
    replayed on another connection), the room, the seat and the roster's session id (none in
    rooms without a roster). The label keeps these signatures apart from the channel's."""
    check_seat(room, party, parties)
    name = room.encode()
    roster = b"\x01" + session_id if session_id is not None else b"\x00"
    return b"".join([SEAT_LABEL, challenge, struct.pack(">H", len(name)), name,
                     struct.pack(">HH", party, parties), roster])


def join(
    room: str,
    party: int,
    parties: int,
    *,
    key: str,
    proof: bytes,
    roster: dict | None = None,
    token: str | None = None,
) -> dict:
    msg = {"type": "join", "version": VERSION, "room": room, "party": party, "parties": parties,
           "key": key, "proof": encode_bytes(proof)}
    optional = {"roster": roster, "token": token}
    msg.update((name, value) for name, value in optional.items() if value is not None)
    return _validate_client(msg, MAX_MESSAGE_BYTES)


def signal(to: int, data: dict) -> dict:
    return _validate_client({"type": "signal", "to": to, "data": data}, MAX_MESSAGE_BYTES)


def leave() -> dict:
    return {"type": "leave"}


# -- server -> client ----------------------------------------------------------------------------


def _validate_server(msg: dict) -> dict:
    kind = fields.message_type(msg)
    if kind == "joined":
        parties = fields.party_count(msg)
        party = fields.party_in_room(msg, parties)
        peers = fields.field(msg, "peers", list, "a list")
        if any(not isinstance(p, int) or isinstance(p, bool) for p in peers):
            raise fields.bad("peers must be party indexes")
        if (
            peers != sorted(set(peers))
            or party in peers
            or any(not 0 <= p < parties for p in peers)
        ):
            raise fields.bad("peers must be sorted distinct other parties of the room")
        return {
            "type": "joined",
            "room": fields.room(msg),
            "party": party,
            "parties": parties,
            "peers": list(peers),
            "ice_servers": validate_ice_servers(fields.field(msg, "ice_servers", list, "a list")),
            "keys": _announced_keys(msg, peers),
        }
    if kind == "challenge":
        return {"type": kind, "challenge": fields.exact_bytes(msg, "challenge", CHALLENGE_BYTES)}
    if kind == "other-roster":
        return {"type": kind}
    if kind == "ice-servers":
        servers = fields.field(msg, "ice_servers", list, "a list")
        return {"type": kind, "ice_servers": validate_ice_servers(servers)}
    if kind == "peer-joined":
        out = {"type": kind, "party": fields.party(msg, "party")}
        fields.optional_credential(msg, "key", out)
        return out
    if kind == "peer-left":
        return {"type": kind, "party": fields.party(msg, "party")}
    if kind == "signal":
        return {"type": "signal", "from": fields.party(msg, "from"), "data": fields.data(msg)}
    if kind == "error":
        # Codes stay plain strings: a newer server may send codes this version does not know.
        return {
            "type": "error",
            "code": fields.field(msg, "code", str, "a string"),
            "message": fields.field(msg, "message", str, "a string"),
        }
    if kind == "closing":
        return {"type": "closing", "message": fields.field(msg, "message", str, "a string")}
    raise fields.bad(f"unknown server message type {kind[:40]!r}")


def _announced_keys(msg: dict, peers: list[int]) -> dict[int, str]:
    """The public keys present peers announced when joining (JSON object keys are strings)."""
    keys = msg.get("keys", {})
    if not isinstance(keys, dict):
        raise fields.bad("keys must be an object")
    out = {}
    for party, key in keys.items():
        if not str(party).isdigit() or int(party) not in peers:
            raise fields.bad("keys must be indexed by present peers")
        fields.optional_credential({"key": key}, "key", out)
        out[int(party)] = out.pop("key")
    return out


def joined(
    room: str,
    party: int,
    parties: int,
    peers: list[int],
    ice_servers: list[dict],
    keys: dict[int, str] | None = None,
) -> dict:
    # JSON object keys are strings on the wire; json.dumps turns the party indexes into them.
    return _validate_server(
        {
            "type": "joined",
            "room": room,
            "party": party,
            "parties": parties,
            "peers": peers,
            "ice_servers": ice_servers,
            "keys": {str(p): k for p, k in (keys or {}).items()},
        }
    )


def challenge(value: bytes) -> dict:
    return _validate_server({"type": "challenge", "challenge": encode_bytes(value)})


def other_roster() -> dict:
    """Parties of another roster (or of none) use this room name, or did a short while ago:
    the rooms do not meet, and a party of either that waits for the other waits in vain."""
    return {"type": "other-roster"}


def ice_servers(servers: list[dict]) -> dict:
    """Fresh ICE servers (TURN credentials) for a party that stays in its room."""
    return _validate_server({"type": "ice-servers", "ice_servers": servers})


def peer_joined(party: int, key: str | None = None) -> dict:
    msg = {"type": "peer-joined", "party": party}
    if key is not None:
        msg["key"] = key
    return _validate_server(msg)


def peer_left(party: int) -> dict:
    return _validate_server({"type": "peer-left", "party": party})


def relayed_signal(sender: int, data: dict) -> dict:
    return _validate_server({"type": "signal", "from": sender, "data": data})


def error(code: ErrorCode | str, message: str) -> dict:
    return _validate_server({"type": "error", "code": str(code), "message": message})


def closing(message: str) -> dict:
    """The server is shutting down and closes the connection next (code 1001)."""
    return _validate_server({"type": "closing", "message": message})
