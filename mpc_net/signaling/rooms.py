"""Room state of the signaling server, without I/O.

Connections are opaque hashable handles chosen by the I/O layer. Every method returns the
messages to send as (connection, message) pairs; the I/O layer delivers them in order. Because
nothing here awaits, each message is handled atomically with respect to all others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from ..ice import TurnRest
from . import protocol
from .protocol import ErrorCode, ProtocolError

Outgoing = list[tuple[Hashable, dict]]

logger = logging.getLogger("mpc_net.signaling")


@dataclass
class Room:
    name: str
    parties: int
    members: dict[int, Hashable] = field(default_factory=dict)
    keys: dict[int, str] = field(default_factory=dict)  # public keys the members announced


class Rooms:
    """All rooms of one server; a room exists from its first join until its last member leaves."""

    def __init__(
        self,
        ice_servers: list[dict] | None = None,
        turn: TurnRest | None = None,
        *,
        max_rooms: int | None = None,
    ) -> None:
        self.ice_servers = protocol.validate_ice_servers(ice_servers or [])
        self.turn = turn
        self.max_rooms = max_rooms
        self.rooms: dict[str, Room] = {}
        self._seats: dict[Hashable, tuple[Room, int]] = {}

    @property
    def party_count(self) -> int:
        """How many connections hold a seat in a room."""
        return len(self._seats)

    def is_seated(self, conn: Hashable) -> bool:
        return conn in self._seats

    def handle(self, conn: Hashable, msg: dict) -> Outgoing:
        """Apply a message from parse_client_message; raise ProtocolError to reject it."""
        handlers = {"join": self._join, "signal": self._signal, "leave": self._leave}
        return handlers[msg["type"]](conn, msg)

    def disconnect(self, conn: Hashable) -> Outgoing:
        """Forget a connection; its room's remaining members learn that it left."""
        seat = self._seats.pop(conn, None)
        if seat is None:
            return []
        room, party = seat
        del room.members[party]
        room.keys.pop(party, None)
        logger.info("room %s: party %d left (%s)", room.name, party, conn,
                    extra={"event": "left", "room": room.name, "party": party, "client": str(conn)})
        if not room.members:
            del self.rooms[room.name]
            logger.debug("room %s: closed", room.name,
                         extra={"event": "room-closed", "room": room.name})
        return [(other, protocol.peer_left(party)) for other in room.members.values()]

    def _join(self, conn: Hashable, msg: dict) -> Outgoing:
        if conn in self._seats:
            room, party = self._seats[conn]
            raise ProtocolError(
                ErrorCode.ALREADY_JOINED, f"already joined room {room.name} as party {party}"
            )
        name, party, parties = msg["room"], msg["party"], msg["parties"]
        room = self.rooms.get(name)
        if room is None:
            if self.max_rooms is not None and len(self.rooms) >= self.max_rooms:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"the room server holds its limit of {self.max_rooms} rooms; try later",
                )
            room = Room(name, parties)
        elif room.parties != parties:
            raise ProtocolError(
                ErrorCode.PARTY_COUNT_MISMATCH,
                f"room {name} has {room.parties} parties, not {parties}",
            )
        elif party in room.members:
            raise ProtocolError(ErrorCode.PARTY_TAKEN, f"party {party} of room {name} is taken")
        # Register only after every check passed, so a rejected join leaves no trace.
        self.rooms[name] = room
        others = dict(room.members)
        room.members[party] = conn
        key = msg.get("key")
        if key is not None:
            room.keys[party] = key
        self._seats[conn] = (room, party)
        logger.info("room %s: party %d/%d joined (%s)", name, party, parties, conn,
                    extra={"event": "joined", "room": name, "party": party, "parties": parties,
                           "client": str(conn)})
        keys = {p: k for p, k in room.keys.items() if p in others}
        servers = self.ice_servers
        if self.turn is not None:
            servers = [*servers, self.turn.server_for(f"{name}-{party}", time.time())]
        reply = protocol.joined(name, party, parties, sorted(others), servers, keys)
        notice = protocol.peer_joined(party, key)
        return [(conn, reply)] + [(other, notice) for other in others.values()]

    def _leave(self, conn: Hashable, msg: dict) -> Outgoing:
        if conn not in self._seats:
            raise ProtocolError(ErrorCode.NOT_JOINED, "leave before join")
        return self.disconnect(conn)

    def _signal(self, conn: Hashable, msg: dict) -> Outgoing:
        seat = self._seats.get(conn)
        if seat is None:
            raise ProtocolError(ErrorCode.NOT_JOINED, "signal before join")
        room, party = seat
        to = msg["to"]
        if to == party or to not in room.members:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"party {to} is not another member of room {room.name}"
            )
        return [(room.members[to], protocol.relayed_signal(party, msg["data"]))]
