"""Signaling messages as typed objects, their validation and their JSON (error codes in
errors.py, checks of single fields in fields.py, the signal payload in payload.py; all are to be
imported from here).

Pure Python without I/O: the room server, the native client and the browser client (Pyodide)
share this module, so every side applies exactly the same rules.

Every message is an immutable value (values.py); `parse_client_message` and
`parse_server_message` turn JSON text into one (keeping only its known fields, so the code
behind them never sees unvalidated input) and `encode` turns one into JSON text. Constructors
run the parser's checks, so a message that one side builds is one that the other side accepts.
A signal's data is opaque JSON to the room server; what the parties mean by it
(`SignalPayload`: a session description or a check-code step) is read by `parse_signal_data`
and written by `signal_data`.
"""

from __future__ import annotations

import json
import struct
from typing import Any, ClassVar

from ..values import Value, factory
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
from .payload import (
    CheckCodeMessage,
    SessionDescription,
    SignalPayload,
    parse_signal_data,
    signal_data,
)

# The names other modules use; errors.py, fields.py and payload.py are parts of this module.
__all__ = [
    "CHALLENGE_BYTES", "MAX_CREDENTIAL_CHARS", "MAX_DATA_DEPTH", "MAX_MESSAGE_BYTES",
    "MAX_PARTIES", "PROOF_BYTES", "SEAT_LABEL", "VERSION", "Challenge", "CheckCodeMessage",
    "ClientMessage", "Closing", "Error", "ErrorCode", "Hello", "IceServers", "Join", "Joined",
    "Leave", "Message", "OtherRoster", "PeerJoined", "PeerLeft", "ProtocolError", "RelayedSignal",
    "ServerMessage", "SessionDescription", "Signal", "SignalPayload", "SignalingError",
    "check_seat", "decode_bytes", "encode", "encode_bytes", "parse_client_message",
    "parse_server_message", "parse_signal_data", "seat_statement", "signal_data",
    "validate_ice_servers", "validate_room",
]

# 2: seats are proven with a signature over a server challenge; rooms are keyed by roster.
# 3: a join may be refused with `busy`, which a party answers by trying again shortly.
VERSION = 3
MAX_MESSAGE_BYTES = 64 * 1024
CHALLENGE_BYTES = 32
PROOF_BYTES = 64  # an Ed25519 signature
SEAT_LABEL = b"mpc-net/seat/v1"


# -- the messages --------------------------------------------------------------------------------


class _Message(Value):
    """A signaling message: built only with valid fields (the constructor runs the parser's own
    checks on the wire form and keeps what they return), so a message that one side builds is
    the one that the other side parses."""

    kind: ClassVar[str]  # the wire's "type"

    def __post_init__(self) -> None:
        for name, value in type(self)._fields(self.to_wire()).items():
            object.__setattr__(self, name, value)  # the one accepted form, e.g. ICE URL lists

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        """The constructor's arguments from a wire dict; raise ProtocolError."""
        return {}

    def to_wire(self) -> dict:
        return {"type": self.kind}


# client -> server


class Hello(_Message):
    """Asks the server for a fresh challenge, which the next join must sign."""

    kind: ClassVar[str] = "hello"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        _version(msg)
        return {}

    def to_wire(self) -> dict:
        return {"type": self.kind, "version": VERSION}


class Join(_Message):
    """Takes a seat; every seat is proven: the key signs the server's challenge (see
    seat_statement). With a roster the room is the roster's."""

    room: str
    party: int
    parties: int
    key: str
    proof: bytes
    roster: dict | None = None
    token: str | None = None
    kind: ClassVar[str] = "join"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        _version(msg)
        parties = fields.party_count(msg)
        out = {"room": fields.room(msg), "party": fields.party_in_room(msg, parties),
               "parties": parties}
        fields.optional_credential(msg, "key", out)
        if "key" not in out:
            raise fields.bad("join message lacks field 'key'")
        out["proof"] = decode_bytes(fields.exact_bytes(msg, "proof", PROOF_BYTES))
        if "roster" in msg:
            out["roster"] = fields.field(msg, "roster", dict, "an object")
        fields.optional_credential(msg, "token", out)
        return out

    def to_wire(self) -> dict:
        msg = {"type": self.kind, "version": VERSION, "room": self.room, "party": self.party,
               "parties": self.parties, "key": self.key,
               "proof": _text(self.proof)}
        optional = {"roster": self.roster, "token": self.token}
        msg.update((name, value) for name, value in optional.items() if value is not None)
        return msg


class Signal(_Message):
    """`data` for party `to`; the room server relays it as opaque JSON (see `SignalPayload`)."""

    to: int
    data: dict
    kind: ClassVar[str] = "signal"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"to": fields.party(msg, "to"), "data": fields.data(msg)}

    def to_wire(self) -> dict:
        return {"type": self.kind, "to": self.to, "data": self.data}

    def check_size(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        """The relayed copy names the sender instead and re-encodes the data; checking its size
        here means every accepted signal reaches its receiver within the same bound."""
        if len(encode(RelayedSignal(MAX_PARTIES - 1, self.data))) > max_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"relayed signal would exceed {max_bytes} bytes"
            )


class Leave(_Message):
    kind: ClassVar[str] = "leave"


ClientMessage = Hello | Join | Signal | Leave


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


def _text(value: bytes) -> str | None:
    """Bytes as the wire spells them; None (refused by the field's check) for anything else."""
    return encode_bytes(value) if isinstance(value, bytes) else None


def _version(msg: dict) -> int:
    version = fields.integer(msg, "version")
    if version != VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"signaling protocol version {version} is not the room server's version {VERSION}; "
            "every party and the room server need an mpc-net release that speaks the same one",
        )
    return version


# server -> client


class Challenge(_Message):
    challenge: bytes
    kind: ClassVar[str] = "challenge"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"challenge": decode_bytes(fields.exact_bytes(msg, "challenge", CHALLENGE_BYTES))}

    def to_wire(self) -> dict:
        return {"type": self.kind, "challenge": _text(self.challenge)}


class Joined(_Message):
    """The seat is ours; `peers` are the parties present, `keys` the keys they proved."""

    room: str
    party: int
    parties: int
    peers: list[int]
    ice_servers: list[dict]
    keys: dict[int, str] = factory(dict)
    kind: ClassVar[str] = "joined"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
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
            "room": fields.room(msg),
            "party": party,
            "parties": parties,
            "peers": list(peers),
            "ice_servers": validate_ice_servers(fields.field(msg, "ice_servers", list, "a list")),
            "keys": _announced_keys(msg, peers),
        }

    def to_wire(self) -> dict:
        # JSON object keys are strings on the wire.
        return {"type": self.kind, "room": self.room, "party": self.party,
                "parties": self.parties, "peers": self.peers, "ice_servers": self.ice_servers,
                "keys": {str(p): k for p, k in self.keys.items()}}


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


class OtherRoster(_Message):
    """Parties of another roster (or of none) use this room name, or did a short while ago:
    the rooms do not meet, and a party of either that waits for the other waits in vain."""

    kind: ClassVar[str] = "other-roster"


class IceServers(_Message):
    """Fresh ICE servers (TURN credentials) for a party that stays in its room."""

    ice_servers: list[dict]
    kind: ClassVar[str] = "ice-servers"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        servers = fields.field(msg, "ice_servers", list, "a list")
        return {"ice_servers": validate_ice_servers(servers)}

    def to_wire(self) -> dict:
        return {"type": self.kind, "ice_servers": self.ice_servers}


class PeerJoined(_Message):
    party: int
    key: str | None = None
    kind: ClassVar[str] = "peer-joined"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        out = {"party": fields.party(msg, "party")}
        fields.optional_credential(msg, "key", out)
        return out

    def to_wire(self) -> dict:
        msg = {"type": self.kind, "party": self.party}
        if self.key is not None:
            msg["key"] = self.key
        return msg


class PeerLeft(_Message):
    party: int
    kind: ClassVar[str] = "peer-left"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"party": fields.party(msg, "party")}

    def to_wire(self) -> dict:
        return {"type": self.kind, "party": self.party}


class RelayedSignal(_Message):
    """A signal's data as the receiver gets it, from party `sender`."""

    sender: int
    data: dict
    kind: ClassVar[str] = "signal"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"sender": fields.party(msg, "from"), "data": fields.data(msg)}

    def to_wire(self) -> dict:
        return {"type": self.kind, "from": self.sender, "data": self.data}


class Error(_Message):
    # Codes stay plain strings: a newer server may send codes this version does not know.
    code: str
    message: str
    kind: ClassVar[str] = "error"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"code": fields.field(msg, "code", str, "a string"),
                "message": fields.field(msg, "message", str, "a string")}

    def to_wire(self) -> dict:
        return {"type": self.kind, "code": str(self.code), "message": self.message}


class Closing(_Message):
    """The server is shutting down and closes the connection next (code 1001)."""

    message: str
    kind: ClassVar[str] = "closing"

    @staticmethod
    def _fields(msg: dict) -> dict[str, Any]:
        return {"message": fields.field(msg, "message", str, "a string")}

    def to_wire(self) -> dict:
        return {"type": self.kind, "message": self.message}


ServerMessage = (Challenge | Joined | OtherRoster | IceServers | PeerJoined | PeerLeft
                 | RelayedSignal | Error | Closing)
Message = ClientMessage | ServerMessage

_CLIENT_KINDS: dict[str, type[_Message]] = {c.kind: c for c in (Hello, Join, Signal, Leave)}
_SERVER_KINDS: dict[str, type[_Message]] = {
    c.kind: c for c in (Challenge, Joined, OtherRoster, IceServers, PeerJoined, PeerLeft,
                        RelayedSignal, Error, Closing)
}


# -- parsing and serialising ---------------------------------------------------------------------


def parse_client_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientMessage:
    """A client -> server message from its JSON text; raise ProtocolError."""
    msg = _from_wire(fields.load_json(raw, max_bytes), _CLIENT_KINDS, "client")
    if isinstance(msg, Signal):
        msg.check_size(max_bytes)
    return msg


def parse_server_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> ServerMessage:
    """A server -> client message from its JSON text; raise ProtocolError."""
    return _from_wire(fields.load_json(raw, max_bytes), _SERVER_KINDS, "server")


def _from_wire(msg: dict, kinds: dict[str, type[_Message]], side: str) -> Any:
    kind = fields.message_type(msg)
    cls = kinds.get(kind)
    if cls is None:
        raise fields.bad(f"unknown {side} message type {kind[:40]!r}")
    return cls(**cls._fields(msg))


def encode(msg: Message) -> str:
    """Compact JSON; ASCII only, so a lone surrogate in a string cannot break UTF-8 framing."""
    return json.dumps(msg.to_wire(), separators=(",", ":"), allow_nan=False)
