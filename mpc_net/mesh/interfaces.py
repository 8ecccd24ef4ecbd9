"""What the mesh needs from the outside (a signaling client, peer connections), how it is
configured, and how others watch it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from ..auth import NO_PROGRAM, Roster
from ..handshake import Identity, Verify
from ..signaling.protocol import Joined, ServerMessage, SessionDescription, SignalPayload
from ..transport import PEER_TIMEOUT, ChannelEvents, DataChannel, DataChannelTransport
from ..values import Value, factory
from .events import Link


class Signaling(Protocol):
    """What the mesh needs of a signaling client (native: websockets; browsers: WebSocket)."""

    async def connect(self, url: str) -> None: ...

    async def join(self, room: str, party: int, parties: int, *, identity: Identity,
                   roster: Roster | None = None, token: str | None = None) -> Joined: ...

    async def send_signal(self, to: int, payload: SignalPayload) -> None: ...

    async def recv(self) -> ServerMessage: ...

    async def leave(self) -> None: ...

    async def close(self) -> None: ...


class PeerConnection(Protocol):
    """What the mesh needs of a backend's peer connection."""

    channel: DataChannel
    opened: asyncio.Future[None]

    @property
    def connection_state(self) -> str: ...

    @property
    def local_sdp(self) -> str: ...

    @property
    def remote_sdp(self) -> str: ...

    async def create_offer(self) -> SessionDescription: ...

    async def accept_offer(self, offer: SessionDescription) -> SessionDescription: ...

    async def accept_answer(self, answer: SessionDescription) -> None: ...

    def bind(self, events: ChannelEvents) -> None: ...

    async def selected_path(self) -> tuple[str, str] | None: ...

    async def close(self) -> None: ...


class MeshObserver(Protocol):
    """Watches the mesh (the page's status board does)."""

    def link_changed(self, party: int, link: Link, pc: PeerConnection | None,
                     transport: DataChannelTransport | None) -> None: ...

    def connected(self, transports: dict[int, DataChannelTransport]) -> None: ...


class MeshError(Exception):
    """The mesh could not be built; the message says which party and why."""


class MeshConfig(Value, mutable=True):
    signaling_url: str
    room: str
    pid: int
    parties: int
    identity: Identity
    verify: Verify
    # None: the weaker mode that trusts the keys the room server relays (`--trust-room-server`).
    roster: Roster | None
    ice_servers: list[dict] = factory(list)
    relay_only: bool = False  # offer and use relay candidates only: peers never learn addresses
    # Offer host candidates on exactly these local addresses (None: the backend's own choice).
    host_addresses: list[str] | None = None
    join_timeout: float = 300.0  # for every party to show up in the room
    connect_timeout: float = 20.0  # for one channel, once both parties are in the room
    peer_timeout: float = PEER_TIMEOUT
    close_timeout: float = 5.0
    # How long a channel lost mid-run may take to come back (0: a lost channel ends the run).
    outage_limit: float = 0.0
    join_token: str | None = None  # for room servers that require one (--join-token)
    # Room servers (processes sharing rooms through Redis) to try in order after signaling_url
    # when it cannot be reached.
    fallback_urls: tuple[str, ...] = ()
    # MPyC's portable program-counter hop and array transfers, which 32-bit (browser) parties
    # need; a room of native parties only may do without (--native-only). Checked in HELLO.
    mix32_64bit: bool = True
    # auth.program_hash() of the program this party runs; every peer must state the same one
    # in HELLO, unless we accept others (--allow-different-programs).
    program_hash: bytes = NO_PROGRAM
    allow_different_programs: bool = False
