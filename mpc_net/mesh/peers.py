"""The peer connections of a mesh: making them, authenticating their channels, describing what
was tried, closing them. Each outcome goes to the state machine as an event (`feed`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..auth import AuthError, ChannelView, Roster
from ..handshake import authenticate
from ..ice import server_kinds
from ..sdp import (
    candidate_types,
    check_fingerprint_lines,
    check_media_sections,
    fingerprints,
    max_message_size,
)
from ..signaling.protocol import CheckCodeMessage, SessionDescription, SignalPayload
from ..transport import DataChannelTransport, PeerLost
from .events import (
    AttemptFailed,
    AttemptStarted,
    Authenticated,
    ChannelDown,
    ChannelOpen,
    Event,
    Refused,
)
from .interfaces import MeshConfig, MeshError, PeerConnection, Signaling

logger = logging.getLogger("mpc_net.mesh")


def _description(sender: int, payload: SignalPayload, kind: str) -> SessionDescription:
    if not isinstance(payload, SessionDescription) or payload.type != kind:
        raise MeshError(f"party {sender} sent a signal that is not an SDP {kind}")
    try:
        check_media_sections(payload.sdp)
        check_fingerprint_lines(payload.sdp)
    except ValueError as exc:
        raise MeshError(f"party {sender} sent an SDP {kind} with {exc}") from None
    return payload


def path_text(path: tuple[str, str] | None) -> str:
    """A selected candidate pair as the logs show it: `host -> srflx`."""
    return " -> ".join(path) if path else "unknown"

class Peers:
    def __init__(self, config: MeshConfig, new_peer_connection: Callable[..., PeerConnection],
                 on_lost: Callable[[PeerLost], None], feed: Callable[[Event], None],
                 spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self.config = config
        self._new_peer_connection = new_peer_connection
        self._on_lost = on_lost
        self._feed = feed
        self._spawn = spawn
        self.connections: dict[int, PeerConnection] = {}  # the current attempt, by party
        self.transports: dict[int, DataChannelTransport] = {}  # authenticated, by party
        # Selected candidate pair types (local, remote), for the logs and the run report.
        self.paths: dict[int, tuple[str, str] | None] = {}
        self.ice_servers: list[dict] = []
        self.client: Signaling | None = None  # while in the room
        self.roster: asyncio.Future[Roster] | None = None
        # Our certificates' fingerprints so far: the handshake's freshness rests on a new one
        # for every connection (SECURITY.md, "The handshake").
        self._certificates: set[str] = set()
        # Peer connections made ahead (with our offer, where we offer), by party: making one
        # (a certificate) and an offer (gathering candidates) is CPU and waiting that need not
        # fall between a party's arrival and its channel.
        self._ahead: dict[int, tuple[PeerConnection, asyncio.Future[SessionDescription] | None]] \
            = {}

    def prepare(self, parties: Iterable[int]) -> None:
        """Make the peer connections to `parties` now, and our offers to those we offer to, so
        that each is ready when its party arrives or its offer does (the first connect)."""
        for j in parties:
            if j not in self._ahead:
                pc = self._new_peer_connection(self.ice_servers,
                                               relay_only=self.config.relay_only,
                                               host_addresses=self.config.host_addresses)
                offer = None
                if self.config.pid < j:
                    offer = asyncio.ensure_future(pc.create_offer())
                    # A failure shows when an attempt takes the offer; unused, it is dropped.
                    offer.add_done_callback(lambda f: f.cancelled() or f.exception())
                self._ahead[j] = pc, offer

    async def drop_ahead(self) -> None:
        """Close the connections made ahead that no attempt took (the ICE servers changed, or
        the first connect is over)."""
        ahead, self._ahead = list(self._ahead.values()), {}
        for _, offer in ahead:
            if offer is not None:
                offer.cancel()
        await asyncio.gather(*(pc.close() for pc, _ in ahead), return_exceptions=True)

    def offer(self, j: int) -> None:
        # The new attempt is in place at once, so that nothing sees none under way and offers
        # a second time while this one is still being created.
        pc, made = self._ahead.pop(j, (None, None))
        pc = self._replace(j, pc)
        self._spawn(self._send_offer(j, pc, made))

    async def _send_offer(self, j: int, pc: PeerConnection,
                          made: asyncio.Future[SessionDescription] | None) -> None:
        await self._send_description(j, await (made or pc.create_offer()))

    async def _send_description(self, j: int, description: SessionDescription) -> None:
        types = ", ".join(candidate_types(description.sdp)) or "none"
        logger.debug("party %d: sent %s to party %d; candidates: %s", self.config.pid,
                     description.type, j, types)
        await self.client.send_signal(j, description)

    async def signal_received(self, j: int, payload: SignalPayload) -> None:
        if j < self.config.pid:
            offer = _description(j, payload, "offer")
            pc = self._replace(j, self._ahead.pop(j, (None, None))[0])
            self._feed(AttemptStarted(j))
            await self._send_description(j, await pc.accept_offer(offer))
        else:
            answer = _description(j, payload, "answer")
            pc = self.connections.get(j)
            if pc is None:
                return  # an answer to an offer we have since given up on
            await pc.accept_answer(answer)

    def send_check(self, j: int, message: CheckCodeMessage) -> None:
        """A check-code message to party j, through the room."""
        self._spawn(self.client.send_signal(j, message))

    def opened(self, j: int) -> bool:
        """Whether the current attempt to reach party j has its channel open."""
        pc = self.connections.get(j)
        return pc is not None and pc.opened.done() and not pc.opened.cancelled()

    def _replace(self, j: int, pc: PeerConnection | None = None) -> PeerConnection:
        """The new attempt to reach party j: `pc`, made ahead, or a new one."""
        self.forget(j)
        pc = pc or self._new_peer_connection(self.ice_servers, relay_only=self.config.relay_only,
                                             host_addresses=self.config.host_addresses)
        self.connections[j] = pc
        pc.opened.add_done_callback(lambda f: self._channel_opened(j, pc, f))
        return pc

    def forget(self, j: int) -> None:
        pc = self.connections.pop(j, None)
        if pc is not None:
            self._spawn(pc.close())

    def _channel_opened(self, j: int, pc: PeerConnection, opened: asyncio.Future[None]) -> None:
        if self.connections.get(j) is not pc:
            return  # a superseded attempt
        if opened.cancelled() or opened.exception():
            self._feed(AttemptFailed(j))
            return
        size = max_message_size(pc.remote_sdp)
        transport = self.transports.get(j)
        if transport is None:
            transport = DataChannelTransport(
                pc.channel, j, max_message_size=size, on_lost=self._on_lost,
                on_interrupted=self._channel_down, peer_timeout=self.config.peer_timeout)
        else:
            transport.replace_channel(pc.channel, size)  # after an outage
        pc.bind(transport.events_for(pc.channel))
        self._feed(ChannelOpen(j))
        self._spawn(self._authenticate(j, pc, transport))

    def _channel_down(self, j: int, reason: str) -> None:
        transport = self.transports.get(j)
        self._feed(ChannelDown(j, reason, transport is not None and transport.attached))

    async def _authenticate(self, j: int, pc: PeerConnection,
                            transport: DataChannelTransport) -> None:
        """Only an authenticated channel counts as connected, and only then gets MPyC."""
        cfg = self.config
        roster = await self.roster
        view = ChannelView(roster, cfg.room, cfg.pid, j, fingerprints(pc.local_sdp),
                           fingerprints(pc.remote_sdp), cfg.mix32_64bit, cfg.program_hash,
                           cfg.allow_different_programs)
        try:
            if view.local_fingerprints in self._certificates:
                raise AuthError("our own DTLS certificate was used on an earlier connection, "
                                "and the handshake needs a new one for each")
            self._certificates.add(view.local_fingerprints)
            theirs = await authenticate(transport, view, cfg.identity, cfg.verify)
        except AuthError as exc:
            self._feed(Refused(j, f"authentication of {roster.label(j)} failed: {exc}",
                               current=self.connections.get(j) is pc))
            return
        difference = view.program_difference(theirs)
        if difference is not None:
            logger.warning("party %d: %s runs another program, as allowed "
                           "(--allow-different-programs): %s", cfg.pid, roster.label(j),
                           difference)
        if self.connections.get(j) is not pc:
            return
        # Read the path while it is there: closing a connection forgets its candidate pair.
        transport.ping()  # a first round-trip time for the path report
        self.paths[j] = await pc.selected_path()
        self.transports[j] = transport
        self._feed(Authenticated(j, roster.label(j), path_text(self.paths[j])))

    def unreachable(self, j: int) -> str:
        state = self.connections[j].connection_state if j in self.connections else "closed"
        return (f"could not connect to party {j} within {self.config.connect_timeout:g} s "
                f"(peer connection {state}); {self.attempt(j)}")

    def attempt(self, j: int) -> str:
        """What was tried to reach party j, and what to do about it."""
        pc = self.connections[j]
        ours = ", ".join(candidate_types(pc.local_sdp)) or "none"
        text = f"candidates we offered: {ours}"
        if not pc.remote_sdp:
            return text + f"; party {j} never sent its session description (is it running?)"
        text += f"; party {j} offered: {', '.join(candidate_types(pc.remote_sdp)) or 'none'}"
        _, turn = server_kinds(self.ice_servers)
        if turn and "relay" not in candidate_types(pc.local_sdp):
            return text + (f"; no relay candidate although TURN server {turn[0]} is configured: "
                           "its credentials may be wrong or expired, or it is unreachable")
        if not turn:
            return text + ("; without a direct path (for example both parties behind symmetric "
                           "NATs) a TURN relay is needed: --ice turn:USER:PASS@HOST:3478")
        return text + "; the TURN relay did not get through either (firewall? TURN server down?)"

    async def abandon(self) -> None:
        """Close every peer connection of a failed attempt, so the peers notice at once."""
        peers, self.connections = list(self.connections.values()), {}
        await asyncio.gather(self.drop_ahead(), *(pc.close() for pc in peers),
                             return_exceptions=True)

    async def close(self, close_timeout: float) -> None:
        """Close every peer connection once the peer has confirmed the end of the stream."""
        await asyncio.gather(*(self._close_peer(j, close_timeout)
                               for j in list(self.connections)))

    async def _close_peer(self, j: int, close_timeout: float) -> None:
        pc = self.connections.pop(j)
        transport = self.transports.get(j)
        if transport is not None:
            try:
                await asyncio.wait_for(asyncio.shield(transport.ended), close_timeout)
            except TimeoutError:
                logger.warning("party %d did not confirm the end of the stream", j)
        await pc.close()

    def report(self) -> None:
        """Each peer's path and traffic, for the log."""
        for j, t in sorted(self.transports.items()):
            path = path_text(self.paths.get(j))
            rtt = f"{t.round_trip_time * 1000:.1f} ms" if t.round_trip_time else "unknown"
            channels = f", {t.channels_used} channels" if t.channels_used > 1 else ""
            logger.info("party %d -> party %d: path %s, rtt %s, %d MPyC messages, %d bytes, in %d "
                        "data channel messages%s", self.config.pid, j, path, rtt, t.mpyc_writes,
                        t.bytes_written, t.messages_sent, channels)
