"""The failures of signaling: every error code, and the exceptions that carry one."""

from __future__ import annotations

from enum import StrEnum


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
    # Too many joins wait already (room servers sharing rooms through Redis): try again soon.
    BUSY = "busy"
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
