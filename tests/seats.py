"""Proven seats for signaling tests: keys that sign synchronously, and joins built from them."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Hashable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection

from mpc_net.auth import Roster, encode_public_key
from mpc_net.ed25519 import check_signature
from mpc_net.signaling import protocol
from mpc_net.signaling.rooms import Outgoing, Rooms

from helpers import RoomServerProcess


class SeatKey:
    """An Ed25519 identity (handshake.Identity and session.Signer) that can also sign at once."""

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_text = encode_public_key(self.public_key)

    def sign_now(self, data: bytes) -> bytes:
        return self._key.sign(data)

    async def sign(self, data: bytes) -> bytes:
        return self.sign_now(data)


@functools.cache
def key(i: int) -> SeatKey:
    """Party i's key in the tests (one per index, for the whole test session)."""
    return SeatKey()


def roster_of(count: int, first: int = 0) -> Roster:
    """The roster of keys first .. first+count-1."""
    return Roster.of([key(first + i).public_key for i in range(count)])


def new_rooms(**options: object) -> Rooms:
    return Rooms(check_signature, **options)


def join_message(challenge: bytes, room: str, party: int, parties: int, *,
                 signer: SeatKey | None = None, roster: Roster | None = None,
                 token: str | None = None) -> protocol.Join:
    """A join that proves its seat with `signer` (default: party's own key)."""
    signer = signer or key(party)
    session = roster.session_id if roster is not None else None
    statement = protocol.seat_statement(challenge, room, party, parties, session)
    document = json.loads(roster.to_json()) if roster is not None else None
    return protocol.Join(room, party, parties, key=signer.public_text,
                         proof=signer.sign_now(statement), roster=document, token=token)


def seat(rooms: Rooms, conn: Hashable, room: str, party: int, parties: int,
         **options: object) -> Outgoing:
    """hello then join on a Rooms; what the join sends."""
    [(_, challenge)] = rooms.handle(conn, protocol.Hello())
    return rooms.handle(conn, join_message(challenge.challenge, room, party, parties,
                                           **options))


async def raw_join(ws: ClientConnection, room: str, party: int, parties: int,
                   **options: object) -> dict:
    """hello then join over a raw websocket; the server's reply to the join."""
    await ws.send(protocol.encode(protocol.Hello()))
    reply = json.loads(await ws.recv())
    if reply["type"] != "challenge":
        return reply
    challenge = protocol.decode_bytes(reply["challenge"])
    await ws.send(protocol.encode(join_message(challenge, room, party, parties, **options)))
    return json.loads(await ws.recv())


# A room server that seats anyone by room name alone, unchecked, as a room server that lies
# may: what stays between strangers and a run is then the channel handshake.
_LAX_SERVER = """
import asyncio, logging, sys
from mpc_net.signaling.rooms import Rooms
from mpc_net.signaling.logs import setup_logging
from mpc_net.signaling.server import RoomServer, serve_until_signal

Rooms._check_seat = lambda self, msg, challenge: None
setup_logging()
asyncio.run(serve_until_signal(RoomServer("127.0.0.1", 0)))
"""


class LaxRoomServerProcess(RoomServerProcess):
    """A room server process that seats anyone (see _LAX_SERVER); `url` is where it listens."""

    def __init__(self) -> None:
        super().__init__(command=[sys.executable, "-c", _LAX_SERVER])
