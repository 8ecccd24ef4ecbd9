"""What one room server allows each client, and the pure pieces that enforce it.

The server faces the internet, so every resource a client can make it hold is bounded: message
size and rate, rooms, connections in all and per address, time without a seat or without a
word, the bytes waiting for a slow reader. Nothing here does I/O; the server applies it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from enum import Enum

from ..values import Value
from .protocol import MAX_MESSAGE_BYTES


class Limits(Value):
    """What one room server allows each client; add_limit_arguments has an option for each.

    A timeout or max_connections_per_address of 0 means no limit.
    """

    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Signaling is a message or a few per peer (a description, trickled candidates), so the
    # burst lets a party offer to all others of the largest room at once (MAX_PARTIES), while a
    # flood is cut to the refill rate.
    messages_per_second: float = 50.0
    message_burst: int = 512
    max_rooms: int = 10_000
    # Bounds the server's memory: each connection holds at most its send queue, websockets'
    # buffers, and (idle) some 20 KiB, or 50 KiB with permessage-deflate: under 1 MiB in all with
    # the defaults (RELIABILITY.md).
    max_connections: int = 10_000
    # With --redis: joins waiting for Redis to say who holds their room (claims.py); more are
    # refused with `busy`, and the parties try again.
    max_pending_joins: int = 1000
    # Behind a reverse proxy every client has the proxy's address: raise it or set it to 0.
    max_connections_per_address: int = 64
    # How long a connection may stay without a seat in a room, after connecting or leaving.
    seat_timeout: float = 30.0
    # Longer than a party's default wait for the others (`mpc-net run --join-timeout`, 300 s),
    # during which it says nothing.
    idle_timeout: float = 600.0
    # Dozens of session descriptions, or four messages of the largest size.
    send_queue_messages: int = 256
    send_queue_bytes: int = 256 * 1024
    allowed_origins: tuple[str, ...] = ()
    join_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = ("max_message_bytes", "messages_per_second", "message_burst", "max_rooms",
                    "max_connections", "max_pending_joins", "send_queue_messages",
                    "send_queue_bytes")
        at_least_zero = ("max_connections_per_address", "seat_timeout", "idle_timeout")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        for name in at_least_zero:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative, not {getattr(self, name)}")
        # Otherwise one relayed signal of the allowed size could never be queued.
        if self.send_queue_bytes < self.max_message_bytes:
            raise ValueError("send_queue_bytes must be at least max_message_bytes")
        if any(not token for token in self.join_tokens):
            raise ValueError("join_tokens must not hold an empty token")

    def connection_refusal(self, connections: int, from_group: int, group: str) -> str | None:
        """Why one more connection from address `group` is refused, or None if it is welcome,
        given the connections admitted in all and from that group."""
        if connections >= self.max_connections:
            return f"the room server holds its limit of {self.max_connections} connections"
        limit = self.max_connections_per_address
        if limit and from_group >= limit:
            return f"more than {limit} connections from {group}"
        return None


class Verdict(Enum):
    PASS = "pass"
    REFUSE = "refuse"
    DISCONNECT = "disconnect"


class RateLimit:
    """Token bucket over one connection's messages.

    Refused messages cost a token too, so the balance goes negative: a client that ignores its
    rate-limited errors runs into debt and is disconnected once it owes a whole burst, while one
    that pauses recovers at the refill rate.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> Verdict:
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1
        if self._tokens >= 0:
            return Verdict.PASS
        return Verdict.DISCONNECT if self._tokens <= -self._burst else Verdict.REFUSE


class JoinTokens:
    """The join tokens a server requires, compared so that the time taken tells nothing."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        # Digests have one length, so comparing them takes the same time whatever was sent.
        self._digests = [_digest(token) for token in tokens]

    def accept(self, token: str | None) -> bool:
        """Whether a join with `token` may pass: always when no token is required."""
        if not self._digests:
            return True
        digest = _digest(token or "")
        # No early exit: the time taken must not tell which token came close.
        matched = False
        for expected in self._digests:
            matched |= hmac.compare_digest(digest, expected)
        return matched


def _digest(token: str) -> bytes:
    # surrogatepass: JSON may carry a lone surrogate, which plain UTF-8 refuses to encode.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def address_group(host: str) -> str:
    """What the per-address limit counts: an IPv4 address, or an IPv6 /64 (one subscriber's
    prefix, from which any number of addresses are to be had)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
