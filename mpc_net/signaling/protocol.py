"""Signaling message schema: validation, error codes and builders.

Pure Python without I/O: the room server, the native client and the browser client (Pyodide)
share this module, so every side applies exactly the same rules.

Parsers return fresh dicts holding only the known fields of a message, so the code behind them
never sees unvalidated input. Builders run the same validation on what they build, so a message
that one side builds is one that the other side accepts.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from enum import StrEnum
from typing import Any

# 2: seats are proven with a signature over a server challenge; rooms are keyed by roster.
VERSION = 2
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PARTIES = 256
MAX_CREDENTIAL_CHARS = 1024
# Far deeper than any SDP or ICE payload; the bound keeps re-encoding clear of recursion limits.
MAX_DATA_DEPTH = 32
CHALLENGE_BYTES = 32
PROOF_BYTES = 64  # an Ed25519 signature
SEAT_LABEL = b"mpc-net/seat/v1"

_ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ErrorCode(StrEnum):
    """Every code of a signaling failure: the room server's error replies, and the failures
    that a client (native or browser) sees on its own side."""

    BAD_JSON = "bad-json"
    BAD_MESSAGE = "bad-message"
    TOO_LARGE = "too-large"
    UNSUPPORTED_VERSION = "unsupported-version"
    BAD_ROOM = "bad-room"
    PARTY_OUT_OF_RANGE = "party-out-of-range"
    PARTY_COUNT_MISMATCH = "party-count-mismatch"
    PARTY_TAKEN = "party-taken"
    ALREADY_JOINED = "already-joined"
    NOT_JOINED = "not-joined"
    UNKNOWN_PEER = "unknown-peer"
    # Limits of the room server: it refuses the message, or closes the connection after it.
    RATE_LIMITED = "rate-limited"
    TOO_MANY_ROOMS = "too-many-rooms"
    TOO_MANY_CONNECTIONS = "too-many-connections"
    IDLE_TIMEOUT = "idle-timeout"
    BAD_TOKEN = "bad-token"
    # A seat needs a fresh challenge (from `hello`) and a proof of the seat's key.
    NO_CHALLENGE = "no-challenge"
    BAD_PROOF = "bad-proof"
    BAD_ROSTER = "bad-roster"
    # A client's own, which no room server sends: the server announced its shutdown (`closing`,
    # no error reply), the connection could not be opened, or it ended.
    SERVER_CLOSING = "server-closing"
    CONNECT_FAILED = "connect-failed"
    CONNECTION_CLOSED = "connection-closed"


class ProtocolError(Exception):
    """A message broke the protocol; `message` is one readable line for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


# -- parsing -------------------------------------------------------------------------------------


class SignalingError(Exception):
    """A client's signaling failure (an error reply, a lost or refused connection) with a code
    and one readable line of text; shared by the native and the browser client. The code is an
    ErrorCode, or a plain string from a newer server."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} ({self.code})"


def parse_client_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Validate a client -> server message; raise ProtocolError."""
    return _validate_client(_load(raw, max_bytes), max_bytes)


def parse_server_message(raw: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> dict:
    """Validate a server -> client message; raise ProtocolError."""
    return _validate_server(_load(raw, max_bytes))


def encode(msg: dict) -> str:
    """Compact JSON; ASCII only, so a lone surrogate in a string cannot break UTF-8 framing."""
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def _load(raw: str | bytes, max_bytes: int) -> dict:
    # Each character takes at least one byte, so the cheap length test comes first.
    if len(raw) > max_bytes or (
        isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers beyond Python's digit limit.
        raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {_first_line(exc)}") from None
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.BAD_JSON, "a message must be a JSON object")
    return value


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are Python extensions that browsers' JSON.parse rejects.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} out of range")
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- field checks --------------------------------------------------------------------------------


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, message)


def _field(msg: dict, name: str, kind: type, what: str) -> Any:
    if name not in msg:
        raise _bad(f"{msg['type']} message lacks field {name!r}")
    value = msg[name]
    # bool is a subclass of int, yet true is no party index.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"field {name!r} of {msg['type']} must be {what}")
    return value


def _int(msg: dict, name: str) -> int:
    return _field(msg, name, int, "an integer")


def _party(msg: dict, name: str) -> int:
    value = _int(msg, name)
    if not 0 <= value < MAX_PARTIES:
        raise ProtocolError(
            ErrorCode.PARTY_OUT_OF_RANGE, f"{name} {value} is not in 0..{MAX_PARTIES - 1}"
        )
    return value


def _party_count(msg: dict) -> int:
    value = _int(msg, "parties")
    if not 1 <= value <= MAX_PARTIES:
        raise ProtocolError(
            ErrorCode.PARTY_OUT_OF_RANGE, f"parties {value} is not in 1..{MAX_PARTIES}"
        )
    return value


def _party_in_room(msg: dict, parties: int) -> int:
    value = _int(msg, "party")
    if not 0 <= value < parties:
        raise ProtocolError(
            ErrorCode.PARTY_OUT_OF_RANGE,
            f"party {value} is not in 0..{parties - 1} for a room of {parties}",
        )
    return value


def validate_room(name: object) -> str:
    """Return a valid room name or raise ProtocolError(bad-room)."""
    if not isinstance(name, str) or not _ROOM_NAME.fullmatch(name):
        raise ProtocolError(
            ErrorCode.BAD_ROOM, f"room name {str(name)[:80]!r} is not 1..64 of [A-Za-z0-9._-]"
        )
    return name


def _room(msg: dict) -> str:
    return validate_room(_field(msg, "room", str, "a string"))


def _data(msg: dict) -> dict:
    data = _field(msg, "data", dict, "an object")
    # Walk iteratively: the depth is what we are bounding, so no recursion here.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise _bad(f"signal data nested deeper than {MAX_DATA_DEPTH} levels")
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                raise _bad("signal data has an object key that is not a string")
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        else:
            _json_leaf(value)
    return data


def _json_leaf(value: object) -> None:
    # Parsed JSON passes by construction; this catches what a builder's caller put in, which
    # encode() would otherwise refuse with a ValueError or TypeError.
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(f"signal data holds {value}, which JSON cannot express")
    if value is not None and not isinstance(value, str | int | float):
        raise _bad(f"signal data holds a {type(value).__name__}, which is not JSON")


def _optional_credential(msg: dict, name: str, out: dict) -> None:
    if name in msg:
        value = _field(msg, name, str, "a string")
        if len(value) > MAX_CREDENTIAL_CHARS:
            raise _bad(f"{name} longer than {MAX_CREDENTIAL_CHARS} characters")
        out[name] = value


def validate_ice_servers(servers: object) -> list[dict]:
    """Normalize W3C RTCIceServer dicts: `urls` always a non-empty list of strings."""
    if not isinstance(servers, list):
        raise _bad("ice_servers must be a list")
    result = []
    for i, server in enumerate(servers):
        where = f"ice_servers[{i}]"
        if not isinstance(server, dict):
            raise _bad(f"{where} must be an object")
        urls = server.get("urls")
        # The W3C dictionary allows one URL as a plain string; lists are easier to consume.
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise _bad(f"{where}.urls must be a string or a non-empty list of strings")
        entry: dict = {"urls": list(urls)}
        for key in ("username", "credential"):
            if key in server:
                if not isinstance(server[key], str):
                    raise _bad(f"{where}.{key} must be a string")
                entry[key] = server[key]
        result.append(entry)
    return result


def _type(msg: dict) -> str:
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise _bad("message lacks a string field 'type'")
    return kind


# -- client -> server ----------------------------------------------------------------------------


def _version(msg: dict) -> int:
    version = _int(msg, "version")
    if version != VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"signaling protocol version {version} is not the room server's version {VERSION}; "
            "every party and the room server need an mpc-net release that speaks the same one",
        )
    return version


def _bytes(msg: dict, name: str, size: int) -> str:
    """A field of exactly `size` bytes in unpadded base64url, in its one canonical spelling."""
    text = _field(msg, name, str, "a string")
    if len(decode_bytes(text)) != size:
        raise _bad(f"field {name!r} of {msg['type']} must be {size} bytes in unpadded base64url")
    return text


def encode_bytes(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_bytes(text: str) -> bytes:
    """The bytes of a canonical unpadded base64url text; b"" for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""
    return raw if encode_bytes(raw) == text else b""


def _validate_client(msg: dict, max_bytes: int) -> dict:
    kind = _type(msg)
    if kind == "hello":
        return {"type": "hello", "version": _version(msg)}
    if kind == "join":
        _version(msg)
        room = _room(msg)
        parties = _party_count(msg)
        out = {
            "type": "join",
            "version": VERSION,
            "room": room,
            "party": _party_in_room(msg, parties),
            "parties": parties,
        }
        # Every seat is proven: the key signs the server's challenge (see seat_statement).
        _optional_credential(msg, "key", out)
        if "key" not in out:
            raise _bad("join message lacks field 'key'")
        out["proof"] = _bytes(msg, "proof", PROOF_BYTES)
        if "roster" in msg:
            out["roster"] = _field(msg, "roster", dict, "an object")
        _optional_credential(msg, "token", out)
        return out
    if kind == "signal":
        out = {"type": "signal", "to": _party(msg, "to"), "data": _data(msg)}
        # The relayed copy names the sender instead and re-encodes the data; checking its size
        # here means every accepted signal reaches its receiver within the same bound.
        if len(encode(relayed_signal(MAX_PARTIES - 1, out["data"]))) > max_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE, f"relayed signal would exceed {max_bytes} bytes"
            )
        return out
    if kind == "leave":
        return {"type": "leave"}
    raise _bad(f"unknown client message type {kind[:40]!r}")


def hello() -> dict:
    """Asks the server for a fresh challenge, which the next join must sign."""
    return {"type": "hello", "version": VERSION}


def check_seat(room: str, party: int, parties: int) -> None:
    """Raise ProtocolError unless this is a seat a join may ask for."""
    msg = {"type": "join", "room": room, "party": party, "parties": parties}
    _room(msg)
    _party_in_room(msg, _party_count(msg))


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
    kind = _type(msg)
    if kind == "joined":
        parties = _party_count(msg)
        party = _party_in_room(msg, parties)
        peers = _field(msg, "peers", list, "a list")
        if any(not isinstance(p, int) or isinstance(p, bool) for p in peers):
            raise _bad("peers must be party indexes")
        if (
            peers != sorted(set(peers))
            or party in peers
            or any(not 0 <= p < parties for p in peers)
        ):
            raise _bad("peers must be sorted distinct other parties of the room")
        return {
            "type": "joined",
            "room": _room(msg),
            "party": party,
            "parties": parties,
            "peers": list(peers),
            "ice_servers": validate_ice_servers(_field(msg, "ice_servers", list, "a list")),
            "keys": _announced_keys(msg, peers),
        }
    if kind == "challenge":
        return {"type": kind, "challenge": _bytes(msg, "challenge", CHALLENGE_BYTES)}
    if kind == "other-roster":
        return {"type": kind}
    if kind == "ice-servers":
        return {"type": kind,
                "ice_servers": validate_ice_servers(_field(msg, "ice_servers", list, "a list"))}
    if kind == "peer-joined":
        out = {"type": kind, "party": _party(msg, "party")}
        _optional_credential(msg, "key", out)
        return out
    if kind == "peer-left":
        return {"type": kind, "party": _party(msg, "party")}
    if kind == "signal":
        return {"type": "signal", "from": _party(msg, "from"), "data": _data(msg)}
    if kind == "error":
        # Codes stay plain strings: a newer server may send codes this version does not know.
        return {
            "type": "error",
            "code": _field(msg, "code", str, "a string"),
            "message": _field(msg, "message", str, "a string"),
        }
    if kind == "closing":
        return {"type": "closing", "message": _field(msg, "message", str, "a string")}
    raise _bad(f"unknown server message type {kind[:40]!r}")


def _announced_keys(msg: dict, peers: list[int]) -> dict[int, str]:
    """The public keys present peers announced when joining (JSON object keys are strings)."""
    keys = msg.get("keys", {})
    if not isinstance(keys, dict):
        raise _bad("keys must be an object")
    out = {}
    for party, key in keys.items():
        if not str(party).isdigit() or int(party) not in peers:
            raise _bad("keys must be indexed by present peers")
        _optional_credential({"key": key}, "key", out)
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
