"""Open a channel for the stream: the channel-binding handshake of auth.py, then RESUME.

Each side sends HELLO (its claims) and AUTH (its signature over them and both certificates'
fingerprints) at once, as soon as the channel opens, and RESUME (how much of the peer's stream
it has) once the peer's AUTH has verified: a round trip in all. RESUME is also the word that a
side accepts the other, so neither side's stream flows before both checks have passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from .auth import AuthError, ChannelView, Hello
from .records import RecordError, RecordType
from .text import printable
from .transport import DataChannelTransport

HANDSHAKE_TIMEOUT = 10.0


class Identity(Protocol):
    """This party's identity key; signing may be asynchronous (WebCrypto is)."""

    public_key: bytes

    async def sign(self, data: bytes) -> bytes: ...


class Refused(AuthError):
    """The peer ended the handshake and said why."""


Verify = Callable[[bytes, bytes, bytes], Awaitable[bool]]  # (public key, signature, data)


async def authenticate(transport: DataChannelTransport, view: ChannelView, identity: Identity,
                       verify: Verify, timeout: float = HANDSHAKE_TIMEOUT) -> Hello:
    """Prove our identity to the peer and check its proof; raise AuthError with the reason.
    Returns the peer's HELLO, whose claims its signature has proven.

    On failure the peer is told why (a REFUSED record), so both sides stop with a reason.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(transport, view, identity, verify)
    except TimeoutError:
        raise AuthError(f"it did not complete the handshake within {timeout:g} s") from None
    except AuthError as exc:
        if not isinstance(exc, Refused):
            transport.send_handshake(RecordType.REFUSED, str(exc).encode()[:1000])
        raise


async def _exchange(transport: DataChannelTransport, view: ChannelView, identity: Identity,
                    verify: Verify) -> Hello:
    signature = await identity.sign(view.statement(view.pid, view.program_hash))
    transport.send_handshake(RecordType.HELLO, view.hello(identity.public_key).encode())
    transport.send_handshake(RecordType.AUTH, signature)
    theirs = Hello.decode(await _expect(transport, RecordType.HELLO))
    view.check_hello(theirs)
    peer_signature = await _expect(transport, RecordType.AUTH)
    peer_key = view.roster.keys[view.peer_pid]
    if not await verify(peer_key, peer_signature,
                        view.statement(view.peer_pid, theirs.program_hash)):
        raise AuthError("bad signature: it does not hold its roster key, or this handshake was "
                        "replayed or tampered with")
    # Where each side's stream goes on: at 0 on a first channel, after an outage wherever the
    # peer got to. The transport links the channel once the peer's RESUME is here too; only
    # then may DATA flow, both ways.
    transport.peer_verified()
    await _expect(transport, RecordType.RESUME)
    return theirs


async def _expect(transport: DataChannelTransport, kind: RecordType) -> bytes:
    try:
        got, body = await transport.receive_handshake()
    except RecordError as exc:
        raise AuthError(str(exc)) from None
    if got is RecordType.REFUSED:
        reason = printable(body.decode(errors="replace"))
        raise Refused(f"it refused the handshake, saying of us: {reason}")
    if got is not kind:
        raise AuthError(f"it sent {got.name} where {kind.name} belongs")
    return body
