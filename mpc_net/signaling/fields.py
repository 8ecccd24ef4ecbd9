"""Checks of single fields of signaling messages, and their JSON, for both directions.

Each check returns the field's value in its one accepted form, or raises ProtocolError with a
line that names the field; protocol.py builds its message schema from them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from .errors import ErrorCode, ProtocolError

MAX_PARTIES = 256
MAX_CREDENTIAL_CHARS = 1024
# Far deeper than any SDP or ICE payload; the bound keeps re-encoding clear of recursion limits.
MAX_DATA_DEPTH = 32

_ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def load_json(raw: str | bytes, max_bytes: int) -> dict:
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


def bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, message)


def field(msg: dict, name: str, kind: type, what: str) -> Any:
    if name not in msg:
        raise bad(f"{msg['type']} message lacks field {name!r}")
    value = msg[name]
    # bool is a subclass of int, yet true is no party index.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"field {name!r} of {msg['type']} must be {what}")
    return value


def integer(msg: dict, name: str) -> int:
    return field(msg, name, int, "an integer")


def party(msg: dict, name: str) -> int:
    value = integer(msg, name)
    if not 0 <= value < MAX_PARTIES:
        raise ProtocolError(
            ErrorCode.PARTY_OUT_OF_RANGE, f"{name} {value} is not in 0..{MAX_PARTIES - 1}"
        )
    return value


def party_count(msg: dict) -> int:
    value = integer(msg, "parties")
    if not 1 <= value <= MAX_PARTIES:
        raise ProtocolError(
            ErrorCode.PARTY_OUT_OF_RANGE, f"parties {value} is not in 1..{MAX_PARTIES}"
        )
    return value


def party_in_room(msg: dict, parties: int) -> int:
    value = integer(msg, "party")
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


def room(msg: dict) -> str:
    return validate_room(field(msg, "room", str, "a string"))


def data(msg: dict) -> dict:
    data = field(msg, "data", dict, "an object")
    # Walk iteratively: the depth is what we are bounding, so no recursion here.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise bad(f"signal data nested deeper than {MAX_DATA_DEPTH} levels")
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                raise bad("signal data has an object key that is not a string")
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        else:
            _json_leaf(value)
    return data


def _json_leaf(value: object) -> None:
    # Parsed JSON passes by construction; this catches what a builder's caller put in, which
    # protocol.encode() would otherwise refuse with a ValueError or TypeError.
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(f"signal data holds {value}, which JSON cannot express")
    if value is not None and not isinstance(value, str | int | float):
        raise bad(f"signal data holds a {type(value).__name__}, which is not JSON")


def optional_credential(msg: dict, name: str, out: dict) -> None:
    if name in msg:
        value = field(msg, name, str, "a string")
        if len(value) > MAX_CREDENTIAL_CHARS:
            raise bad(f"{name} longer than {MAX_CREDENTIAL_CHARS} characters")
        out[name] = value


def validate_ice_servers(servers: object) -> list[dict]:
    """Normalize W3C RTCIceServer dicts: `urls` always a non-empty list of strings."""
    if not isinstance(servers, list):
        raise bad("ice_servers must be a list")
    result = []
    for i, server in enumerate(servers):
        where = f"ice_servers[{i}]"
        if not isinstance(server, dict):
            raise bad(f"{where} must be an object")
        urls = server.get("urls")
        # The W3C dictionary allows one URL as a plain string; lists are easier to consume.
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
            raise bad(f"{where}.urls must be a string or a non-empty list of strings")
        entry: dict = {"urls": list(urls)}
        for key in ("username", "credential"):
            if key in server:
                if not isinstance(server[key], str):
                    raise bad(f"{where}.{key} must be a string")
                entry[key] = server[key]
        result.append(entry)
    return result


def message_type(msg: dict) -> str:
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise bad("message lacks a string field 'type'")
    return kind


def exact_bytes(msg: dict, name: str, size: int) -> str:
    """A field of exactly `size` bytes in unpadded base64url, in its one canonical spelling."""
    text = field(msg, name, str, "a string")
    if len(decode_bytes(text)) != size:
        raise bad(f"field {name!r} of {msg['type']} must be {size} bytes in unpadded base64url")
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
