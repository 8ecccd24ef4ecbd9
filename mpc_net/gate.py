"""The gate of one channel: until its handshake ends, only the handshake's records pass.

A new channel carries the peer's HELLO, AUTH and RESUME in this order (or a REFUSED) and
nothing else: any other record ends the attempt, so nothing an unauthenticated sender writes is
kept, counted or passed to MPyC, and at most one record per step waits for the handshake
(handshake.py), which reads them from here. The transport opens the stream only once the gate
says the peer is authenticated and has resumed.
"""

from __future__ import annotations

import asyncio
import enum

from .records import RecordError, RecordType, decode_offset


class Stage(enum.Enum):
    """How far the handshake of the current channel is."""

    HELLO = "HELLO"  # waiting for the peer's HELLO
    AUTH = "AUTH"  # waiting for the peer's AUTH
    RESUME = "RESUME"  # waiting for the peer's RESUME
    RESUMED = "nothing"  # its RESUME is here; waiting for our check of its AUTH
    LINKED = "linked"  # authenticated and resumed: the stream flows
    ENDED = "ended"  # the attempt failed or the channel died; what still arrives is dropped


class HandshakeGate(asyncio.Queue):
    """One channel's handshake: its stage, and the peer's records that the handshake has not
    read yet (or the RecordError that ended the attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = Stage.HELLO
        self.verified = False  # the handshake has checked the peer's AUTH on this channel
        self.peer_offset = 0  # what the peer's RESUME says it has of our stream

    @property
    def linked(self) -> bool:
        return self.stage is Stage.LINKED

    @property
    def ready(self) -> bool:
        """Whether the channel may link: the peer is authenticated and its RESUME is here."""
        return self.verified and self.stage is Stage.RESUMED

    async def receive(self) -> tuple[RecordType, bytes]:
        """The next handshake record; raises the RecordError that ended the attempt."""
        item = await self.get()
        if isinstance(item, RecordError):
            raise item
        return item

    def admit(self, kind: RecordType, body: memoryview) -> None:
        """A record on a channel that is not linked yet: the next handshake step or the end."""
        if self.stage is Stage.ENDED:
            return
        if kind is RecordType.REFUSED:
            self.stage = Stage.ENDED
            self.put_nowait((kind, bytes(body)))
        elif kind.name != self.stage.value:
            self.end(f"it sent {kind.name} where {self.stage.value} belongs in the handshake")
        elif kind is RecordType.RESUME:
            try:
                self.peer_offset = decode_offset(body)
            except RecordError as exc:
                self.end(f"its RESUME is malformed: {exc}")
                return
            self.stage = Stage.RESUMED
        else:
            self.stage = Stage.AUTH if kind is RecordType.HELLO else Stage.RESUME
            self.put_nowait((kind, bytes(body)))

    def verify(self) -> bool:
        """The handshake has checked the peer's AUTH; False if the attempt is over or this is
        news to nobody (it was checked already)."""
        if self.stage is Stage.ENDED or self.verified:
            return False
        self.verified = True
        return True

    def link(self) -> None:
        """The end of the handshake: tell it where the peer resumes our stream."""
        self.stage = Stage.LINKED
        self.put_nowait((RecordType.RESUME, self.peer_offset.to_bytes(8, "big")))

    def end(self, reason: str) -> None:
        """Fail this channel's handshake; what else arrives on the channel is dropped."""
        self.stage = Stage.ENDED
        self.put_nowait(RecordError(reason))

    def close(self) -> None:
        """The channel died: nothing more passes."""
        self.stage = Stage.ENDED
