"""The signal payload: what the parties mean by a signal's data, which the room server relays
as opaque JSON. A part of protocol.py, from which the names are imported."""

from __future__ import annotations

from ..values import Value
from . import fields
from .fields import decode_bytes, encode_bytes


class SessionDescription(Value):
    """An SDP offer or answer (WebRTC's RTCSessionDescriptionInit, without trickle ICE)."""

    type: str
    sdp: str

    def __post_init__(self) -> None:
        if self.type not in ("offer", "answer") or not isinstance(self.sdp, str):
            raise fields.bad("a session description that is not an SDP offer or answer")


class CheckCodeMessage(Value):
    """One step of the check-code exchange (checkcode.py): a commitment or a nonce."""

    step: str
    value: bytes

    def __post_init__(self) -> None:
        if self.step not in ("commit", "reveal") or not isinstance(self.value, bytes):
            raise fields.bad("a malformed check-code message")


SignalPayload = SessionDescription | CheckCodeMessage


def parse_signal_data(data: dict) -> SignalPayload:
    """What a party meant by a signal's data; raise ProtocolError."""
    if "check" in data:
        check = data["check"]
        if not isinstance(check, dict) or len(check) != 1:
            raise fields.bad("a malformed check-code message")
        [(step, text)] = check.items()
        value = decode_bytes(text) if isinstance(text, str) else b""
        if not value and text != "":
            raise fields.bad("a malformed check-code message")
        return CheckCodeMessage(step, value)
    description = data.get("description")
    if not isinstance(description, dict):
        raise fields.bad("a signal that is neither a session description nor a check-code "
                         "message")
    return SessionDescription(description.get("type"), description.get("sdp"))


def signal_data(payload: SignalPayload) -> dict:
    """The signal data that parse_signal_data reads as `payload`."""
    if isinstance(payload, CheckCodeMessage):
        return {"check": {payload.step: encode_bytes(payload.value)}}
    return {"description": {"type": payload.type, "sdp": payload.sdp}}
