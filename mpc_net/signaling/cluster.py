"""Rooms shared by several room-server processes through Redis (`--redis`).

Each room name has one owner process at a time, whose Rooms decides every seat of that name, so
seat and room uniqueness stay exact. The owner is whoever first sets the name's owner key (SET NX
with an expiry that the owner renews while the name has live rooms). Any process checks a join's
proof against its own challenge (Rooms.prove), then hands the join to the owner; the owner seats
a client of another process as a Member handle and sends what Rooms answers back to the Member's
process. Every process listens on its own pub/sub channel; one publishing connection per
process keeps each client's messages in order. RELIABILITY.md explains the failure cases.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from websockets.frames import CloseCode

from . import protocol
from .claims import SLOW, Claims, RedisSlow
from .courier import Courier, Heartbeat, Presence
from .outbox import Client
from .protocol import ProtocolError
from .rooms import Outgoing, Rooms, Session
from .store import (
    HEARTBEAT,
    KEY_TTL_MS,
    RELEASE,
    RENEW,
    alive_key,
    owner_key,
    redis_client,
    redis_errors,
)

logger = logging.getLogger("mpc_net.signaling")

RENEW_BATCH = 1000
MOVED = "the room moved to another room-server process; join again"
# Messages between processes come from our own kind, checked when they came in; this bounds
# them only against a Redis that something else writes to.
MAX_FORWARDED = 1 << 20
UNREACHABLE = "the room server cannot reach Redis; connect again"

class Member(NamedTuple):
    """A client of another process, as the owner's Rooms seats it."""

    process: str
    client: str

    def __str__(self) -> str:
        return f"{self.client}@{self.process}"


@dataclass
class Seat:
    """A local client's seat (or join under way) in a room held by `owner`."""

    room: str
    client: str  # its id in messages between processes
    owner: str | None = None  # known once Redis said who holds the room
    # What the client said after its join while the owner was not known yet, in order.
    waiting: list[tuple[str, protocol.ClientMessage | None]] = field(default_factory=list)


def _stopped(task: asyncio.Task) -> None:
    """Each job runs for the process's life: one that ends early is a bug, said loudly."""
    if not task.cancelled():
        logger.critical("room server job %s ended: %r", task.get_coro().__name__,
                        task.exception(), exc_info=task.exception())


def _no_owner(client: Client, room: str, exc: BaseException) -> None:
    """Redis did not say who holds the room a client joins: in time (the client may try again
    on this connection), or at all."""
    if isinstance(exc, RedisSlow):
        logger.info("%s: no owner of room %s in time: %s", client, room, exc)
        client.send(protocol.Error(protocol.ErrorCode.BUSY, SLOW))
    else:
        logger.warning("%s: cannot find the owner of room %s: %s", client, room, exc)
        client.close(CloseCode.TRY_AGAIN_LATER, "Redis unreachable",
                     protocol.Closing(UNREACHABLE))


class Cluster:
    """The rooms of this process's clients, wherever their owner is; the same calls as Rooms."""

    def __init__(self, url: str, rooms: Rooms, *, clock: Callable[[], float],
                 pending_joins: int) -> None:
        self.rooms = rooms  # the rooms this process owns; members are Clients or Members
        self.process = secrets.token_hex(8)
        self._redis = redis_client(url)
        self._renew = self._redis.register_script(RENEW)
        self._release = self._redis.register_script(RELEASE)
        self._errors = redis_errors()
        self._seats: dict[Client, Seat] = {}
        self._ids: dict[Client, str] = {}
        self._clients: dict[str, Client] = {}
        self._next_id = itertools.count()
        self._joins: set[asyncio.Task] = set()  # finding the owners of rooms being joined
        self._claims = Claims(self._redis, self.process, self._errors, pending_joins)
        self._courier = Courier(self._redis, self.process, self._errors, self._received)
        # Whether Redis answers: /health says it, and whether we listen (`reachable`).
        self.presence = Presence(self._redis, self.process, self._errors, clock, self._renew_names,
                                 Heartbeat(url, self.process, self._errors, clock))
        self._tasks: list[asyncio.Task] = []

    @property
    def party_count(self) -> int:
        return len(self._seats)

    @property
    def reachable(self) -> bool:
        """Whether Redis answers and we listen on our channel: only then are rooms shared."""
        return self.presence.reachable and self._courier.listening.is_set()

    def is_seated(self, client: Client) -> bool:
        return client in self._seats

    async def start(self) -> None:
        await self.presence.first()
        self._tasks = [asyncio.create_task(job()) for job in
                       (self.presence.keep, self._courier.listen, self._courier.publish,
                        self._claims.run)]
        for task in self._tasks:
            task.add_done_callback(_stopped)
        if self.presence.reachable:  # then listening follows at once: serve when it does
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT):
                    await self._courier.listening.wait()

    async def close(self) -> None:
        """Hand what clients said last to the owners, give up our names and stop."""
        try:
            async with asyncio.timeout(HEARTBEAT):
                await asyncio.gather(*list(self._joins))
                await self._courier.sent()
                names = [owner_key(name) for name, _ in self.rooms.rooms]
                await self._release(keys=names, args=[self.process])
                await self.presence.leave()
        except (TimeoutError, *self._errors) as exc:
            logger.info("leaving Redis: %s", exc or "timed out")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    # -- what local clients send ---------------------------------------------------------------

    def handle(self, client: Client, msg: protocol.ClientMessage) -> Outgoing:
        seat = self._seats.get(client)
        match msg:
            case protocol.Hello():
                self._id(client)
                return self.rooms.handle(client, msg)
            case protocol.Join():
                if seat is not None:
                    raise ProtocolError(protocol.ErrorCode.ALREADY_JOINED,
                                        f"already joined room {seat.room}")
                self._claims.admit()
                session = self.rooms.prove(client, msg)
                owner = self._claims.claim(msg.room)
                seat = self._seats[client] = Seat(msg.room, self._id(client))
                task = asyncio.create_task(self._join(client, seat, msg, session, owner))
                self._joins.add(task)
                task.add_done_callback(self._joins.discard)
            case protocol.Signal() | protocol.Leave():
                if seat is None:
                    raise ProtocolError(protocol.ErrorCode.NOT_JOINED, f"{msg.kind} before join")
                if isinstance(msg, protocol.Leave):
                    del self._seats[client]
                self._command(client, seat, msg.kind, msg)
        return []

    def disconnect(self, client: Client) -> Outgoing:
        seat = self._seats.pop(client, None)
        if seat is None:
            self.rooms.disconnect(client)  # its challenge, if any
        else:
            self._command(client, seat, "gone", None)
        client_id = self._ids.pop(client, None)
        self._clients.pop(client_id, None)
        return []

    def renew(self) -> Outgoing:
        return self._route(self.rooms.renew())

    # -- the owner's side ----------------------------------------------------------------------

    def _command(self, client: Client, seat: Seat, kind: str,
                 msg: protocol.ClientMessage | None) -> None:
        """Apply, or hand to the owner, a local client's signal, leave or disconnection; after
        its join if the owner is not known yet, so that the owner sees them in order."""
        if seat.owner is None:
            seat.waiting.append((kind, msg))
        elif seat.owner == self.process:
            self._apply(client, kind, msg)
        else:
            self._courier.to(seat.owner, op=kind, process=self.process, client=seat.client,
                             msg=None if msg is None else protocol.encode(msg))

    async def _join(self, client: Client, seat: Seat, msg: protocol.Join, session: Session,
                    owner: asyncio.Future[str]) -> None:
        try:
            seat.owner = await owner
        except (RedisSlow, *self._errors) as exc:
            if self._seats.get(client) is seat:
                del self._seats[client]
            _no_owner(client, msg.room, exc)
            return
        if seat.owner == self.process:
            self._apply(client, "join", msg, session)
        else:
            self._courier.to(seat.owner, op="join", process=self.process, client=seat.client,
                             msg=protocol.encode(msg), session=session.hex() if session else None)
        for kind, later in seat.waiting:
            self._command(client, seat, kind, later)
        seat.waiting.clear()

    def _apply(self, conn: Client | Member, kind: str, msg: Any,
               session: Session = None) -> None:
        """A command of one of our rooms' members, local or not."""
        try:
            match kind:
                case "join":
                    out = self.rooms.seat(conn, msg, session)
                case "signal":
                    out = self.rooms.handle(conn, msg)
                case _:  # leave, gone
                    out = self.rooms.disconnect(conn)
        except ProtocolError as exc:
            if kind == "join" and isinstance(conn, Client):
                self._seats.pop(conn, None)
            out = [(conn, protocol.Error(exc.code, exc.message))]
            self._send(self._route(out, refused=kind == "join"))
            return
        self._send(self._route(out))

    def _received(self, data: bytes) -> None:
        """A message on our channel: for a room we own, or for one of our clients."""
        m = json.loads(data)
        op = m["op"]
        if op in ("deliver", "close"):
            client = self._clients.get(m["to"])
            if client is None:
                return  # gone meanwhile
            if op == "close":
                self._seats.pop(client, None)
                client.close(CloseCode.SERVICE_RESTART, "room moved", protocol.Closing(MOVED))
                return
            if m.get("refused"):
                self._seats.pop(client, None)
            client.send(protocol.parse_server_message(m["msg"], max_bytes=MAX_FORWARDED))
            return
        member = Member(m["process"], m["client"])
        msg = None if m["msg"] is None else protocol.parse_client_message(m["msg"],
                                                                         max_bytes=MAX_FORWARDED)
        session = bytes.fromhex(m["session"]) if m.get("session") else None
        self._apply(member, op, msg, session)

    def _route(self, outgoing: Outgoing, *, refused: bool = False) -> Outgoing:
        """Publish what goes to Members; return what goes to our own clients."""
        local: Outgoing = []
        for conn, msg in outgoing:
            if isinstance(conn, Member):
                self._courier.to(conn.process, op="deliver", to=conn.client,
                                 msg=protocol.encode(msg), refused=refused)
            else:
                local.append((conn, msg))
        return local

    def _send(self, outgoing: Outgoing) -> None:
        for client, msg in outgoing:
            client.send(msg)

    # -- Redis ---------------------------------------------------------------------------------

    async def _renew_names(self, settled: bool) -> None:
        """Keep our names; once every living process has renewed its keys (`settled`: not
        right after Redis restarted), drop seats whose other side is gone."""
        names = sorted({name for name, _ in self.rooms.rooms})
        for start in range(0, len(names), RENEW_BATCH):
            keys = [owner_key(name) for name in names[start:start + RENEW_BATCH]]
            for key in await self._renew(keys=keys, args=[self.process, KEY_TTL_MS]):
                self._lose(key.decode().removeprefix(owner_key("")))
        if settled:
            await self._drop_dead_members()
            await self._drop_moved_seats()

    def _lose(self, name: str) -> None:
        """Another process took the name (after Redis lost our key): our rooms of that name go,
        and their members join again, at the new owner."""
        logger.warning("room %s: now held by another process; its members join again", name,
                       extra={"event": "room-moved", "room": name})
        for room in [r for (n, _), r in self.rooms.rooms.items() if n == name]:
            for member in list(room.members.values()):
                self.rooms.disconnect(member)
                if isinstance(member, Member):
                    self._courier.to(member.process, op="close", to=member.client)
                else:
                    self._seats.pop(member, None)
                    member.close(CloseCode.SERVICE_RESTART, "room moved", protocol.Closing(MOVED))

    async def _drop_dead_members(self) -> None:
        members = [m for room in self.rooms.rooms.values() for m in room.members.values()
                   if isinstance(m, Member)]
        processes = sorted({m.process for m in members})
        if not processes:
            return
        dead = set(processes) - await self.presence.living(processes)
        for member in members:
            if member.process in dead:
                logger.info("%s: its room-server process is gone", member,
                            extra={"event": "process-gone", "client": str(member)})
                self._send(self._route(self.rooms.disconnect(member)))

    async def _drop_moved_seats(self) -> None:
        """Our clients in rooms whose owner died or changed join again. An owner key that only
        expired (a starved owner renews late) is no move while its owner lives."""
        remote = [(c, s) for c, s in self._seats.items()
                  if s.owner is not None and s.owner != self.process]
        if not remote:
            return
        names = sorted({s.room for _, s in remote})
        holders = sorted({s.owner for _, s in remote if s.owner is not None})
        keys = [owner_key(n) for n in names] + [alive_key(p) for p in holders]
        values = await self._redis.mget(keys)
        owners = {n: v.decode() if v else None for n, v in zip(names, values, strict=False)}
        living = {p for p, v in zip(holders, values[len(names):], strict=True) if v}
        for client, seat in remote:
            owner = owners[seat.room]
            moved = owner != seat.owner if owner is not None else seat.owner not in living
            if moved and self._seats.get(client) is seat:
                del self._seats[client]
                client.close(CloseCode.SERVICE_RESTART, "room moved", protocol.Closing(MOVED))

    # -- names -------------------------------------------------------------------------------------

    def _id(self, client: Client) -> str:
        if client not in self._ids:
            self._ids[client] = client_id = str(next(self._next_id))
            self._clients[client_id] = client
        return self._ids[client]
