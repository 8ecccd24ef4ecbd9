"""Room state of the signaling server, without I/O.

Connections are opaque hashable handles chosen by the I/O layer. Every method returns the
messages to send as (connection, message) pairs; the I/O layer delivers them in order. Because
nothing here awaits, each message is handled atomically with respect to all others.

A seat is proven: the join signs a fresh challenge of this server with the seat's key, and in a
room with a roster that key must be the roster's key of that index. Rooms are keyed by name and
the roster's session id, so people who know only a room name (or run another roster under it)
never meet its members; they may learn that another roster uses the name, nothing more.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ..auth import Roster, RosterError, decode_public_key
from ..ice import TurnRest
from . import protocol
from .protocol import CHALLENGE_BYTES, ErrorCode, ProtocolError

Outgoing = list[tuple[Hashable, protocol.ServerMessage]]
# (public key, signature, data) -> whether the signature verifies; Ed25519.
Verify = Callable[[bytes, bytes, bytes], bool]
Session = bytes | None  # a roster's session id; None for open seats (--trust-room-server)

# How long a closed room is remembered, so that a party of another roster that comes late still
# hears that the name was in use (parties leave the room once their channels stand).
RECENT_SECONDS = 600.0

logger = logging.getLogger("mpc_net.signaling")


@dataclass
class Room:
    name: str
    session: Session
    parties: int
    members: dict[int, Hashable] = field(default_factory=dict)
    keys: dict[int, str] = field(default_factory=dict)  # public keys the members proved
    told: bool = False  # whether its members heard that another roster uses its name

    @property
    def label(self) -> str:
        roster = self.session.hex()[:16] if self.session else "open seats"
        return f"{self.name} [{roster}]"


class Rooms:
    """All rooms of one server; a room exists from its first join until its last member leaves."""

    def __init__(
        self,
        verify: Verify,
        ice_servers: list[dict] | None = None,
        turn: TurnRest | None = None,
        *,
        max_rooms: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ice_servers = protocol.validate_ice_servers(ice_servers or [])
        self.turn = turn
        self.max_rooms = max_rooms
        self.rooms: dict[tuple[str, Session], Room] = {}
        self._verify = verify
        self._clock = clock
        self._seats: dict[Hashable, tuple[Room, int]] = {}
        self._challenges: dict[Hashable, bytes] = {}
        self._sessions: dict[str, set[Session]] = {}  # the live rooms of each name
        # Closed rooms by closing time, oldest first, and the same by name.
        self._recent: OrderedDict[tuple[str, Session], float] = OrderedDict()
        self._recent_by_name: dict[str, set[Session]] = {}

    @property
    def party_count(self) -> int:
        """How many connections hold a seat in a room."""
        return len(self._seats)

    def is_seated(self, conn: Hashable) -> bool:
        return conn in self._seats

    def handle(self, conn: Hashable, msg: protocol.ClientMessage) -> Outgoing:
        """Apply a message from parse_client_message; raise ProtocolError to reject it."""
        match msg:
            case protocol.Hello():
                return self._hello(conn)
            case protocol.Join():
                return self._join(conn, msg)
            case protocol.Signal():
                return self._signal(conn, msg)
            case protocol.Leave():
                return self._leave(conn)
        raise TypeError(f"not a client message: {msg!r}")

    def disconnect(self, conn: Hashable) -> Outgoing:
        """Forget a connection; its room's remaining members learn that it left."""
        self._challenges.pop(conn, None)
        seat = self._seats.pop(conn, None)
        if seat is None:
            return []
        room, party = seat
        del room.members[party]
        room.keys.pop(party, None)
        logger.info("room %s: party %d left (%s)", room.label, party, conn,
                    extra={"event": "left", "room": room.name, "party": party, "client": str(conn)})
        if not room.members:
            self._close(room)
        return [(other, protocol.PeerLeft(party)) for other in room.members.values()]

    def renew(self) -> Outgoing:
        """Fresh TURN credentials for every seat, before the ones it holds expire."""
        if self.turn is None:
            return []
        return [(conn, protocol.IceServers(self._servers(room.name, party)))
                for conn, (room, party) in self._seats.items()]

    def _hello(self, conn: Hashable) -> Outgoing:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        self._challenges[conn] = challenge
        return [(conn, protocol.Challenge(challenge))]

    def _join(self, conn: Hashable, msg: protocol.Join) -> Outgoing:
        self._not_seated(conn)
        return self.seat(conn, msg, self.prove(conn, msg))

    def prove(self, conn: Hashable, msg: protocol.Join) -> Session:
        """Check the join's proof against the challenge this server gave `conn` and return the
        session id of the roster whose seat it proves; this needs no room, so a process that
        does not hold the room checks it (cluster.py)."""
        # One join per challenge: a proof is never good twice.
        challenge = self._challenges.pop(conn, None)
        if challenge is None:
            raise ProtocolError(ErrorCode.NO_CHALLENGE,
                                "a join needs a fresh challenge: send hello first")
        return self._check_seat(msg, challenge)

    def seat(self, conn: Hashable, msg: protocol.Join, session: Session) -> Outgoing:
        """Seat `conn` by a join whose proof was checked (prove) for roster `session`."""
        self._not_seated(conn)
        name, party, parties = msg.room, msg.party, msg.parties
        room = self.rooms.get((name, session))
        if room is None:
            if self.max_rooms is not None and len(self.rooms) >= self.max_rooms:
                raise ProtocolError(
                    ErrorCode.TOO_MANY_ROOMS,
                    f"the room server holds its limit of {self.max_rooms} rooms; try later",
                )
            room = Room(name, session, parties)
        elif room.parties != parties:
            raise ProtocolError(
                ErrorCode.PARTY_COUNT_MISMATCH,
                f"room {name} has {room.parties} parties, not {parties}",
            )
        elif party in room.members:
            raise ProtocolError(ErrorCode.PARTY_TAKEN, f"party {party} of room {name} is taken")
        # Register only after every check passed, so a rejected join leaves no trace.
        if (name, session) not in self.rooms:
            self._open(room)
        others = dict(room.members)
        room.members[party] = conn
        room.keys[party] = msg.key
        self._seats[conn] = (room, party)
        logger.info("room %s: party %d/%d joined (%s)", room.label, party, parties, conn,
                    extra={"event": "joined", "room": name, "party": party, "parties": parties,
                           "open": session is None, "client": str(conn)})
        keys = {p: k for p, k in room.keys.items() if p in others}
        reply = protocol.Joined(name, party, parties, sorted(others),
                                self._servers(name, party), keys)
        notice = protocol.PeerJoined(party, msg.key)
        return ([(conn, reply)] + [(other, notice) for other in others.values()]
                + self._other_rosters(room, conn))

    def _not_seated(self, conn: Hashable) -> None:
        if conn in self._seats:
            room, party = self._seats[conn]
            raise ProtocolError(
                ErrorCode.ALREADY_JOINED, f"already joined room {room.name} as party {party}"
            )

    def _check_seat(self, msg: protocol.Join, challenge: bytes) -> Session:
        """The session id of the roster whose seat the join proves (None: an open seat)."""
        name, party, parties = msg.room, msg.party, msg.parties
        try:
            key = decode_public_key(msg.key)
        except RosterError as exc:
            raise ProtocolError(ErrorCode.BAD_PROOF, f"key: {exc}") from None
        session = None
        if msg.roster is not None:
            try:
                roster = Roster.from_json(json.dumps(msg.roster))
            except RosterError as exc:
                raise ProtocolError(ErrorCode.BAD_ROSTER, f"unusable roster: {exc}") from None
            if len(roster) != parties:
                raise ProtocolError(ErrorCode.BAD_ROSTER,
                                    f"the roster lists {len(roster)} parties, not {parties}")
            if roster.keys[party] != key:
                raise ProtocolError(ErrorCode.BAD_PROOF,
                                    f"the key is not the roster's key of party {party}")
            session = roster.session_id
        statement = protocol.seat_statement(challenge, name, party, parties, session)
        if not self._verify(key, msg.proof, statement):
            raise ProtocolError(ErrorCode.BAD_PROOF,
                                f"the proof does not verify with the key of party {party}")
        return session

    def _servers(self, name: str, party: int) -> list[dict]:
        if self.turn is None:
            return self.ice_servers
        return [*self.ice_servers, self.turn.server_for(f"{name}-{party}", self._clock())]

    def _open(self, room: Room) -> None:
        self.rooms[(room.name, room.session)] = room
        self._sessions.setdefault(room.name, set()).add(room.session)
        if room.session is None:
            logger.info("room %s: open seats (no roster, --trust-room-server): anyone who knows "
                        "the name can take one", room.label,
                        extra={"event": "open-room", "room": room.name})

    def _close(self, room: Room) -> None:
        del self.rooms[(room.name, room.session)]
        sessions = self._sessions[room.name]
        sessions.discard(room.session)
        if not sessions:
            del self._sessions[room.name]
        key = (room.name, room.session)
        self._recent.pop(key, None)
        self._recent[key] = self._clock()
        self._recent_by_name.setdefault(room.name, set()).add(room.session)
        self._forget_old_rooms()
        logger.debug("room %s: closed", room.label,
                     extra={"event": "room-closed", "room": room.name})

    def _forget_old_rooms(self) -> None:
        limit = self.max_rooms if self.max_rooms is not None else len(self._recent)
        expired = self._clock() - RECENT_SECONDS
        while self._recent:
            (name, session), closed = next(iter(self._recent.items()))
            if closed > expired and len(self._recent) <= limit:
                return
            del self._recent[(name, session)]
            sessions = self._recent_by_name[name]
            sessions.discard(session)
            if not sessions:
                del self._recent_by_name[name]

    def _other_rosters(self, room: Room, conn: Hashable) -> Outgoing:
        """Tell a joiner that another roster uses (or used) its room's name, and tell each other
        room of that name once: more is not needed, and an outsider that cycles through rosters
        cannot flood the members with notices."""
        self._forget_old_rooms()
        live = self._sessions.get(room.name, set()) - {room.session}
        recent = self._recent_by_name.get(room.name, set()) - {room.session}
        if not (live or recent or room.told):
            return []
        room.told = True
        notice = protocol.OtherRoster()
        out: Outgoing = [(conn, notice)]
        for session in live:
            other = self.rooms[(room.name, session)]
            if not other.told:
                other.told = True
                out += [(member, notice) for member in other.members.values()]
        logger.info("room %s: another roster uses this name", room.label,
                    extra={"event": "other-roster", "room": room.name})
        return out

    def _leave(self, conn: Hashable) -> Outgoing:
        if conn not in self._seats:
            raise ProtocolError(ErrorCode.NOT_JOINED, "leave before join")
        return self.disconnect(conn)

    def _signal(self, conn: Hashable, msg: protocol.Signal) -> Outgoing:
        seat = self._seats.get(conn)
        if seat is None:
            raise ProtocolError(ErrorCode.NOT_JOINED, "signal before join")
        room, party = seat
        to = msg.to
        if to == party or to not in room.members:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PEER, f"party {to} is not another member of room {room.name}"
            )
        return [(room.members[to], protocol.RelayedSignal(party, msg.data))]
