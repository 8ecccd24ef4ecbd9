"""Records carried in data channel messages, and the outbound buffer that batches them.

Every data channel message is one record: a one-byte type, then the body. DATA bodies are
slices of the MPyC byte stream (MPyC reassembles its own frames, so slices may fall anywhere);
the other types authenticate the channel before MPyC gets it, and let each side tell a quiet
peer from a dead one and a clean close from a lost channel. Pure code, no I/O: native and
browser backends share it.
"""

from __future__ import annotations

import enum


class RecordType(enum.IntEnum):
    DATA = 0
    PING = 1  # keepalive; the body (the sender's clock) comes back in a PONG
    GOODBYE = 2  # the sender has written its last DATA record
    # The channel-binding handshake (auth.py), before any other record: HELLO, AUTH, RESUME.
    HELLO = 3
    AUTH = 4
    REFUSED = 5  # the handshake failed on the sender's side; the body says why (UTF-8)
    PONG = 6
    # Stream offsets (8 bytes): how many DATA bytes the sender has received so far. RESUME
    # ends the handshake of every channel, ACK lets the peer forget what arrived.
    RESUME = 7
    ACK = 8


def encode_offset(kind: RecordType, offset: int) -> bytes:
    return encode(kind, offset.to_bytes(8, "big"))


def decode_offset(body: bytes | memoryview) -> int:
    if len(body) != 8:
        raise RecordError("a stream offset has 8 bytes")
    return int.from_bytes(body, "big")


class RecordError(ValueError):
    """A data channel message that is not a record of ours."""


def encode(kind: RecordType, body: bytes | bytearray | memoryview = b"") -> bytes:
    return bytes((kind,)) + body


def decode(message: bytes) -> tuple[RecordType, memoryview]:
    if not message:
        raise RecordError("empty data channel message")
    try:
        kind = RecordType(message[0])
    except ValueError:
        raise RecordError(f"unknown record type {message[0]}") from None
    return kind, memoryview(message)[1:]


class SendBuffer:
    """The outgoing MPyC byte stream: bytes not yet sent, and bytes sent but not yet
    acknowledged, kept to be sent again on a new channel after an outage.

    Writes made in one event-loop tick are merged, so a burst of small MPyC messages costs a few
    large data channel messages instead of one SCTP packet (and one SACK) each.
    """

    def __init__(self, max_message_size: int) -> None:
        self.set_max_message_size(max_message_size)
        self._pending = bytearray()
        self._retained = bytearray()
        self.acknowledged = 0  # stream offset of the first retained byte

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def retained(self) -> int:
        return len(self._retained)

    @property
    def sent(self) -> int:
        """Stream offset up to which bytes have been handed to a channel."""
        return self.acknowledged + len(self._retained)

    def set_max_message_size(self, max_message_size: int) -> None:
        if max_message_size < 2:
            raise ValueError("max_message_size must leave room for a record body")
        self._body_size = max_message_size - 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += data

    def take(self, budget: int) -> list[bytes]:
        """DATA records for at most about `budget` pending bytes (at least one if any pending)."""
        records = []
        taken = 0
        while self._pending and (taken < budget or not records):
            body = self._pending[: self._body_size]
            records.append(encode(RecordType.DATA, body))
            taken += len(body)
            del self._pending[: len(body)]
            self._retained += body
        return records

    def acknowledge(self, offset: int) -> None:
        """The peer has received the stream up to `offset`: forget those bytes."""
        if not self.acknowledged <= offset <= self.sent:
            raise RecordError(f"acknowledged offset {offset} outside the sent range "
                              f"{self.acknowledged}..{self.sent}")
        del self._retained[: offset - self.acknowledged]
        self.acknowledged = offset

    def rewind(self, offset: int) -> None:
        """A new channel: the peer has the stream up to `offset`; send the rest again."""
        self.acknowledge(offset)
        self._pending[:0] = self._retained
        self._retained = bytearray()
