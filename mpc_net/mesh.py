"""Connect this party to every other party of a room, and take the connections down again.

Roles are fixed by party index: the lower index offers, so offers never cross. The room server
only relays the session descriptions; once every data channel is open this party leaves it.
Backend-neutral: the peer connections come from a factory (aiortc natively, the browser's
RTCPeerConnection under Pyodide).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Protocol

from .auth import (
    AuthError,
    ChannelView,
    Roster,
    RosterError,
    decode_public_key,
)
from .checkcode import CheckCodeError, CheckExchange
from .handshake import Identity, Verify, authenticate
from .ice import server_kinds, unused
from .sdp import candidate_types, check_fingerprint_lines, fingerprints, max_message_size
from .signaling.protocol import SignalingError
from .transport import PEER_TIMEOUT, ChannelEvents, DataChannel, DataChannelTransport, PeerLost

logger = logging.getLogger("mpc_net.mesh")
# Whom a party waits for while connecting; the CLI shows it on a terminal (or with -v).
progress_logger = logging.getLogger("mpc_net.progress")
PROGRESS_INTERVAL = 10.0  # seconds between progress lines

LOSS_GRACE = 2.0  # seconds a lost channel waits while connecting before it fails the attempt


class Signaling(Protocol):
    """What the mesh needs of a signaling client (native: websockets; browsers: WebSocket)."""

    async def connect(self, url: str) -> None: ...

    async def join(self, room: str, party: int, parties: int, *, identity: Identity,
                   roster: Roster | None = None, token: str | None = None) -> dict: ...

    async def send_signal(self, to: int, data: dict) -> None: ...

    async def recv(self) -> dict: ...

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

    async def create_offer(self) -> dict[str, str]: ...

    async def accept_offer(self, offer: dict[str, str]) -> dict[str, str]: ...

    async def accept_answer(self, answer: dict[str, str]) -> None: ...

    def bind(self, events: ChannelEvents) -> None: ...

    async def selected_path(self) -> tuple[str, str] | None: ...

    async def close(self) -> None: ...


class MeshError(Exception):
    """The mesh could not be built; the message says which party and why."""


@dataclasses.dataclass
class MeshConfig:
    signaling_url: str
    room: str
    pid: int
    parties: int
    identity: Identity
    verify: Verify
    # None: the weaker mode that trusts the keys the room server relays (`--trust-room-server`).
    roster: Roster | None
    ice_servers: list[dict] = dataclasses.field(default_factory=list)
    relay_only: bool = False  # offer and use relay candidates only: peers never learn addresses
    join_timeout: float = 300.0  # for every party to show up in the room
    connect_timeout: float = 20.0  # for one channel, once both parties are in the room
    peer_timeout: float = PEER_TIMEOUT
    close_timeout: float = 5.0
    # How long a channel lost mid-run may take to come back (0: a lost channel ends the run).
    outage_limit: float = 0.0
    join_token: str | None = None  # for room servers that require one (--join-token)
    # MPyC's portable program-counter hop and array transfers, which 32-bit (browser) parties
    # need; a room of native parties only may do without (--native-only). Checked in HELLO.
    mix32_64bit: bool = True


def _description(sender: int, data: object, kind: str) -> dict[str, str]:
    description = data.get("description") if isinstance(data, dict) else None
    if (
        not isinstance(description, dict)
        or description.get("type") != kind
        or not isinstance(description.get("sdp"), str)
    ):
        raise MeshError(f"party {sender} sent a signal that is not an SDP {kind}")
    try:
        check_fingerprint_lines(description["sdp"])
    except ValueError as exc:
        raise MeshError(f"party {sender} sent an SDP {kind} with {exc}") from None
    return {"type": kind, "sdp": description["sdp"]}


def _path_text(path: tuple[str, str] | None) -> str:
    return " -> ".join(path) if path else "unknown"


class Mesh:
    def __init__(
        self,
        config: MeshConfig,
        new_peer_connection: Callable[..., PeerConnection],
        on_lost: Callable[[PeerLost], None],
        new_signaling: Callable[[], Signaling] | None = None,
    ) -> None:
        self.config = config
        if new_signaling is None:
            from .signaling.client import SignalingClient  # websockets: native only

            new_signaling = SignalingClient
        self._new_signaling = new_signaling
        self._new_peer_connection = new_peer_connection
        self._on_lost = on_lost
        self._peers: dict[int, PeerConnection] = {}
        self._since: dict[int, float] = {}  # when the attempt to reach each peer began
        self.transports: dict[int, DataChannelTransport] = {}
        self._ice_servers: list[dict] = []
        self._failure: asyncio.Future[None] | None = None  # set while connecting
        self.connected = False  # from then on a lost peer is the runtime's business
        self._tasks: set[asyncio.Task] = set()
        self._announced: dict[int, bytes] = {}  # keys relayed by the room server
        self._other_roster = False  # whether another roster uses our room's name
        self._check = CheckExchange(config.pid, config.parties)
        self._check_shown = False
        self._present: set[int] = set()
        # Parties that left before connecting: since when we tried to reach them, and how.
        self._left: dict[int, tuple[float, str | None]] = {}
        self._roster: asyncio.Future[Roster] | None = None
        self._client: Signaling | None = None
        self._repairs: dict[int, float] = {}  # interrupted parties, and their deadlines
        self._repair_errors: dict[int, str] = {}
        self._repair_task: asyncio.Task | None = None
        # Selected candidate pair types (local, remote), for the logs and the run report.
        self._paths: dict[int, tuple[str, str] | None] = {}
        self._progress: asyncio.Future[None] = asyncio.Future()  # replaced while connecting

    @property
    def paths(self) -> dict[int, tuple[str, str] | None]:
        """Each connected peer's selected candidate pair types (local, remote), if known."""
        return dict(self._paths)

    @property
    def others(self) -> list[int]:
        return [j for j in range(self.config.parties) if j != self.config.pid]

    async def connect(self) -> dict[int, DataChannelTransport]:
        """Open an authenticated data channel to every other party; returns the transports by
        party index."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        self._roster = loop.create_future()
        if cfg.roster is not None:
            self._roster.set_result(cfg.roster)
        self._announced[cfg.pid] = cfg.identity.public_key
        started = time.monotonic()
        self._client = self._new_signaling()
        try:
            joined = await self._join()
            self._ice_servers = cfg.ice_servers + joined["ice_servers"]
            if unused(self._ice_servers):
                logger.warning("aiortc uses only the first STUN and the first TURN server; "
                               "not using %s", ", ".join(unused(self._ice_servers)))
            logger.info("party %d joined room %r; present: %s", cfg.pid, cfg.room,
                        joined["peers"] or "nobody yet")
            if cfg.roster is None:
                logger.warning("WARNING: room %r has open seats (--trust-room-server, no "
                               "roster): anyone who knows its name can take one", cfg.room)
            for j in joined["peers"]:
                self._peer_present(j, joined["keys"].get(j))
            self._reveal_when_ready()
            await self._run_signaling(started)
            self.connected = True
            await self._leave_room()
        except (SignalingError, MeshError) as exc:
            await self._abandon()
            raise MeshError(self._explained(str(exc))) from None
        except BaseException:
            await self._abandon()
            raise
        finally:
            if self._failure.done():
                self._failure.exception()  # only the first failure is reported; mark all seen
            self._failure = None
            await self._client.close()
            for task in self._tasks:
                task.cancel()
        logger.info("party %d connected to all %d peers in %.2f s", cfg.pid, len(self.others),
                    time.monotonic() - started)
        return self.transports

    async def close(self) -> None:
        """Close every peer connection once the peer has confirmed the end of the stream, then
        report each peer's path and traffic."""
        if self._repair_task is not None:
            self._repair_task.cancel()
        await asyncio.gather(*(self._close_peer(j) for j in list(self._peers)))
        for j, t in sorted(self.transports.items()):
            path = _path_text(self._paths.get(j))
            rtt = f"{t.round_trip_time * 1000:.1f} ms" if t.round_trip_time else "unknown"
            channels = f", {t.channels_used} channels" if t.channels_used > 1 else ""
            logger.info("party %d -> party %d: path %s, rtt %s, %d MPyC messages, %d bytes, in %d "
                        "data channel messages%s", self.config.pid, j, path, rtt, t.mpyc_writes,
                        t.bytes_written, t.messages_sent, channels)

    async def _leave_room(self) -> None:
        """The channels no longer need the room server, so failing to say goodbye is harmless."""
        try:
            await self._client.leave()
        except SignalingError as exc:
            logger.debug("leaving the room: %s", exc)

    # -- building -----------------------------------------------------------------------------

    async def _run_signaling(self, started: float) -> None:
        receive = asyncio.ensure_future(self._client.recv())
        reported = started
        try:
            while len(self.transports) < len(self.others) or not self._check.complete:
                # Woken by a message, a failure, or a channel becoming ready; the timeout
                # only paces the deadline checks.
                self._progress = asyncio.get_running_loop().create_future()
                done, _ = await asyncio.wait({receive, self._failure, self._progress},
                                             timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if self._failure in done:
                    self._failure.result()
                if receive in done:
                    self._handle(receive.result())
                    receive = asyncio.ensure_future(self._client.recv())
                self._check_deadlines(started)
                if time.monotonic() - reported >= PROGRESS_INTERVAL:
                    reported = time.monotonic()
                    progress_logger.info("%s", self._waiting(started))
        finally:
            receive.cancel()

    def _waiting(self, started: float) -> str:
        """Whom this party still waits for, and the time left until the first of them fails
        its deadline (see _check_deadlines)."""
        cfg = self.config
        missing = [j for j in self.others if j not in self.transports]
        deadlines = []
        for j in missing:
            since = self._left[j][0] if j in self._left else self._since.get(j)
            deadlines.append(started + cfg.join_timeout if since is None
                             else since + cfg.connect_timeout)
        left = max(0.0, min(deadlines) - time.monotonic())
        who = ("party " if len(missing) == 1 else "parties ") + ", ".join(map(str, missing))
        return f"waiting for {who}: {left:.0f} s left"

    def _handle(self, message: dict) -> None:
        kind = message["type"]
        if kind == "peer-joined":
            self._peer_present(message["party"], message.get("key"))
        elif kind == "peer-left":
            self._peer_gone(message["party"])
        elif kind == "signal" and isinstance(message["data"].get("check"), dict):
            self._check_received(message["from"], message["data"]["check"])
        elif kind == "signal":
            self._spawn(self._signal_received(message["from"], message["data"]))
        elif kind == "other-roster":
            self._warn_other_roster()
        elif kind == "ice-servers":
            self._ice_servers = self.config.ice_servers + message["ice_servers"]
        elif kind == "error":
            raise MeshError(f"room server: {message['message']} ({message['code']})")

    def _explained(self, failure: str) -> str:
        """A failure while another roster uses our room's name is most likely that mistake."""
        if not self._other_roster:
            return failure
        return (f"{failure}; parties with another roster use room {self.config.room!r}: check "
                "that every party has the same roster file")

    def _warn_other_roster(self) -> None:
        """Parties of another roster use our room's name: they and we never meet, so a party
        of ours that runs with another roster file would be waited for in vain. We still wait
        (a stranger must not end our run), bounded by the join timeout, and say why."""
        if self._other_roster:
            return
        self._other_roster = True
        cfg = self.config
        if cfg.roster is None:
            ours = "we run without a roster (--trust-room-server)"
        else:
            ours = f"ours has session id {cfg.roster.session_id.hex()[:16]}..."
        missing = [j for j in self.others if j not in self._present]
        waiting = (f"; waiting for parties {missing} of our roster up to the join timeout "
                   f"({cfg.join_timeout:g} s)") if missing else ""
        logger.warning("party %d: room %r is also used by parties with another roster (or "
                       "with none), now or a moment ago; they cannot meet ours. If one of them "
                       "is meant to be one of our parties, it runs with another roster file: "
                       "every party needs the same roster file (%s)%s", cfg.pid, cfg.room,
                       ours, waiting)

    def _peer_present(self, j: int, key: str | None) -> None:
        self._present.add(j)
        self._left.pop(j, None)
        if not self.connected:  # a newcomer, or a party back: where the exchange stands
            self._send_check(j, self._check.commit())
            if self._check.revealed:
                self._send_check(j, self._check.reveal())
        if self.config.roster is None and not self._roster.done():
            self._learn_key(j, key)
            if not self._roster.done():
                return  # offers wait until every key is known
            targets = sorted(self._present)  # the roster is complete: offer to all present
        else:
            targets = [j]
        for i in targets:
            if i > self.config.pid and self._needs_channel(i):  # the lower index offers
                self._offer(i)

    def _needs_channel(self, j: int) -> bool:
        return j not in self.transports or j in self._repairs

    def _learn_key(self, j: int, key: str | None) -> None:
        """Trust-room-server mode: build the roster from the keys the room server relays."""
        if key is None:
            raise MeshError(f"party {j} announced no key, so it cannot be authenticated")
        try:
            self._announced[j] = decode_public_key(key)
            if len(self._announced) < self.config.parties:
                return
            roster = Roster.of([self._announced[i] for i in range(self.config.parties)])
        except RosterError as exc:
            raise MeshError(f"the keys announced in the room are unusable: {exc}") from None
        logger.warning("WARNING: trusting the keys relayed by the room server "
                       "(--trust-room-server): whoever runs it could pose as any party; "
                       "compare the check code that follows with every other party.")
        self._roster.set_result(roster)
        self._reveal_when_ready()

    # -- the check code -----------------------------------------------------------------------

    def _send_check(self, j: int, message: dict) -> None:
        self._spawn(self._client.send_signal(j, {"check": message}))

    def _reveal_when_ready(self) -> None:
        """Reveal our nonce once every commitment is in and our roster is fixed."""
        if self._check.ready and self._roster.done():
            message = self._check.reveal()
            for j in sorted(self._present):
                self._send_check(j, message)
        self._show_check_code()

    def _check_received(self, j: int, message: dict) -> None:
        try:
            self._check.received(j, message)
        except CheckCodeError as exc:
            raise MeshError(str(exc)) from None
        self._reveal_when_ready()

    def _show_check_code(self) -> None:
        if not self._check.complete or not self._roster.done() or self._check_shown:
            return
        self._check_shown = True
        code = self._check.code(self._roster.result().session_id)
        level = logging.WARNING if self.config.roster is None else logging.INFO
        logger.log(level, "party %d: check code of this run: %s (compare it with every other "
                   "party by voice, not through the room server: equal codes mean that all "
                   "hold the same keys)", self.config.pid, code)
        if not self._progress.done():
            self._progress.set_result(None)

    def _peer_gone(self, j: int) -> None:
        self._present.discard(j)
        if not self._needs_channel(j):
            return  # the channel stands on its own; the room server is no longer needed
        pc = self._peers.get(j)
        if pc is not None and pc.opened.done() and not pc.opened.cancelled():
            # Our channel is open: the peer finished its side of the handshake and left the
            # room, as it should; ours completes over the channel itself.
            return
        if j in self._repairs:
            self._forget(j)
            return
        logger.info("party %d left the room before connecting; waiting %g s for it to return", j,
                    self.config.connect_timeout)
        tried = self._attempt(j) if j in self._peers else None
        self._left[j] = (self._since.get(j, time.monotonic()), tried)
        self._forget(j)

    def _offer(self, j: int) -> None:
        # The new attempt is in place at once, so that a repair does not see none under way
        # and offer a second time while this one is still being created.
        pc = self._replace_peer(j)
        self._spawn(self._send_offer(j, pc))

    async def _send_offer(self, j: int, pc: PeerConnection) -> None:
        await self._send_description(j, await pc.create_offer())

    async def _send_description(self, j: int, description: dict[str, str]) -> None:
        types = ", ".join(candidate_types(description["sdp"])) or "none"
        logger.debug("party %d: sent %s to party %d; candidates: %s", self.config.pid,
                     description["type"], j, types)
        await self._client.send_signal(j, {"description": description})

    async def _signal_received(self, j: int, data: object) -> None:
        if j < self.config.pid:
            offer = _description(j, data, "offer")
            pc = self._replace_peer(j)
            await self._send_description(j, await pc.accept_offer(offer))
        else:
            answer = _description(j, data, "answer")
            pc = self._peers.get(j)
            if pc is None:
                return  # an answer to an offer we have since given up on
            await pc.accept_answer(answer)

    def _replace_peer(self, j: int) -> PeerConnection:
        self._forget(j)
        pc = self._new_peer_connection(self._ice_servers, relay_only=self.config.relay_only)
        self._peers[j] = pc
        self._since[j] = time.monotonic()
        pc.opened.add_done_callback(lambda f: self._channel_opened(j, pc, f))
        return pc

    def _forget(self, j: int) -> None:
        pc = self._peers.pop(j, None)
        self._since.pop(j, None)
        if pc is not None:
            self._spawn(pc.close())

    def _channel_opened(self, j: int, pc: PeerConnection, opened: asyncio.Future[None]) -> None:
        if self._peers.get(j) is not pc or opened.cancelled() or opened.exception():
            return  # a superseded attempt, or a failure the deadline check reports
        size = max_message_size(pc.remote_sdp)
        transport = self.transports.get(j)
        if transport is None:
            resumable = self.config.outage_limit > 0
            transport = DataChannelTransport(
                pc.channel, j, max_message_size=size, on_lost=self._lost,
                on_interrupted=self._interrupted if resumable else None,
                peer_timeout=self.config.peer_timeout)
        else:
            transport.replace_channel(pc.channel, size)  # after an outage
        pc.bind(transport.events_for(pc.channel))
        self._spawn(self._authenticate(j, pc, transport))

    async def _authenticate(self, j: int, pc: PeerConnection,
                            transport: DataChannelTransport) -> None:
        """Only an authenticated channel counts as connected, and only then gets MPyC."""
        cfg = self.config
        roster = await self._roster
        view = ChannelView(roster, cfg.room, cfg.pid, j, fingerprints(pc.local_sdp),
                           fingerprints(pc.remote_sdp), cfg.mix32_64bit)
        try:
            await authenticate(transport, view, cfg.identity, cfg.verify)
        except AuthError as exc:
            if self.connected:  # a repair: the next attempt may reach the real party
                self._repair_failed(j, pc, f"authentication of {roster.label(j)} failed: {exc}")
                return
            raise MeshError(f"authentication of {roster.label(j)} failed: {exc}") from None
        if j in self._repairs and self._peers.get(j) is pc:
            del self._repairs[j]
            self._repair_errors.pop(j, None)
            await self._note_path(j, pc, transport)
            logger.warning("party %d: the connection to party %d is restored (path %s); the stream "
                           "goes on where it stopped", cfg.pid, j,
                           _path_text(self._paths[j]))
        elif self._peers.get(j) is pc:
            await self._note_path(j, pc, transport)
            logger.info("party %d: channel to %s open and authenticated; path %s", cfg.pid,
                        roster.label(j), _path_text(self._paths[j]))
            # Counted as connected only now: connect() cancels the tasks still running then.
            self.transports[j] = transport
            if not self._progress.done():
                self._progress.set_result(None)

    def _repair_failed(self, j: int, pc: PeerConnection, reason: str) -> None:
        """Whoever answered may not have been party j (its seat in the room is free once it
        has connected): say so, drop that channel, and let the repair go on."""
        logger.warning("party %d: restoring the connection to party %d: %s", self.config.pid, j,
                       reason)
        self._repair_errors[j] = reason
        if self._peers.get(j) is pc:
            self._forget(j)

    async def _note_path(self, j: int, pc: PeerConnection, transport: DataChannelTransport,
                         ) -> None:
        """Read the path while it is there: closing a connection forgets its candidate pair."""
        transport.ping()  # a first round-trip time for the path report
        self._paths[j] = await pc.selected_path()

    def _lost(self, error: PeerLost) -> None:
        if self.connected:
            self._on_lost(error)
        elif self._failure is not None and not self._failure.done():
            # A channel that dies while connecting is often the echo of another party's
            # failure (it gave up and closed everything); a refusal of our own that is about
            # to come says more, so it gets a moment to win.
            failure = self._failure
            asyncio.get_running_loop().call_later(
                LOSS_GRACE, lambda: failure.done() or failure.set_exception(MeshError(str(error))))
        # Otherwise the attempt has failed already, and that failure is the one to report.

    def _check_deadlines(self, started: float) -> None:
        cfg = self.config
        now = time.monotonic()
        for j, since in self._since.items():
            if j not in self.transports and now - since > cfg.connect_timeout:
                raise MeshError(self._unreachable(j))
        for j, (since, tried) in self._left.items():
            if now - since > cfg.connect_timeout:
                raise MeshError(f"could not connect to party {j} within {cfg.connect_timeout:g} s: "
                                "it left the room before the channel was up and did not return "
                                f"(did it fail? see its output); {tried or 'nothing was tried'}")
        if now - started > cfg.join_timeout:
            missing = [j for j in self.others if j not in self._present]
            if not missing and len(self.transports) == len(self.others):
                raise MeshError(f"the check-code exchange did not finish within "
                                f"{cfg.join_timeout:g} s: a party or the room server held back "
                                "its messages")
            raise MeshError(f"parties {missing} did not join room {cfg.room!r} "
                            f"within {cfg.join_timeout:g} s")

    def _unreachable(self, j: int) -> str:
        return (f"could not connect to party {j} within {self.config.connect_timeout:g} s "
                f"(peer connection {self._peers[j].connection_state}); {self._attempt(j)}")

    def _attempt(self, j: int) -> str:
        """What was tried to reach party j, and what to do about it."""
        pc = self._peers[j]
        ours = ", ".join(candidate_types(pc.local_sdp)) or "none"
        text = f"candidates we offered: {ours}"
        if not pc.remote_sdp:
            return text + f"; party {j} never sent its session description (is it running?)"
        text += f"; party {j} offered: {', '.join(candidate_types(pc.remote_sdp)) or 'none'}"
        _, turn = server_kinds(self._ice_servers)
        if turn and "relay" not in candidate_types(pc.local_sdp):
            return text + (f"; no relay candidate although TURN server {turn[0]} is configured: "
                           "its credentials may be wrong or expired, or it is unreachable")
        if not turn:
            return text + ("; without a direct path (for example both parties behind symmetric "
                           "NATs) a TURN relay is needed: --ice turn:USER:PASS@HOST:3478")
        return text + "; the TURN relay did not get through either (firewall? TURN server down?)"

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(exc if isinstance(exc, MeshError) else MeshError(
                f"connecting failed: {exc}"))
        elif self._repairs:
            logger.warning("party %d: restoring a connection: %s", self.config.pid, exc)
            for j in self._repairs:
                self._repair_errors[j] = str(exc)

    # -- restoring interrupted channels -------------------------------------------------------

    def _interrupted(self, j: int, reason: str) -> None:
        """A channel died mid-run (the transport keeps the stream): build a new one in time."""
        pc = self._peers.get(j)
        if pc is not None and pc.channel is self.transports[j].channel:
            self._forget(j)
        if j in self._repairs:
            return
        limit = self.config.outage_limit
        logger.warning("party %d: the connection to party %d was interrupted (%s); restoring it "
                       "for up to %g s", self.config.pid, j, reason, limit)
        self._repairs[j] = time.monotonic() + limit
        if self._repair_task is None or self._repair_task.done():
            self._repair_task = asyncio.ensure_future(self._repair())

    async def _repair(self) -> None:
        """Rejoin the room (the room server may have restarted meanwhile) until every
        interrupted channel is back or out of time."""
        while self._repairs:
            try:
                await self._repair_session()
            except (SignalingError, MeshError, OSError) as exc:
                logger.info("restoring connections: %s; trying again", exc)
                for j in self._repairs:
                    self._repair_errors[j] = str(exc)
                self._expire_repairs()
                await asyncio.sleep(1)

    async def _join(self) -> dict:
        """Connect the signaling client to the room server and join our room."""
        cfg = self.config
        await self._client.connect(cfg.signaling_url)
        return await self._client.join(cfg.room, cfg.pid, cfg.parties, identity=cfg.identity,
                                       roster=cfg.roster, token=cfg.join_token)

    async def _repair_session(self) -> None:
        self._client = self._new_signaling()
        try:
            joined = await self._join()
            self._present = set()
            for j in joined["peers"]:
                self._peer_present(j, joined["keys"].get(j))
            receive = asyncio.ensure_future(self._client.recv())
            try:
                while self._repairs:
                    done, _ = await asyncio.wait({receive}, timeout=0.5)
                    if receive in done:
                        self._handle(receive.result())
                        receive = asyncio.ensure_future(self._client.recv())
                    self._expire_repairs()
                    self._retry_stalled_repairs()
            finally:
                receive.cancel()
            await self._leave_room()
        finally:
            await self._client.close()

    def _retry_stalled_repairs(self) -> None:
        now = time.monotonic()
        for j in self._repairs:
            if j < self.config.pid or j not in self._present:
                continue  # the lower index offers, once the peer is back in the room
            pc = self._peers.get(j)
            if (pc is None or pc.connection_state in ("failed", "closed")
                    or now - self._since.get(j, 0.0) > self.config.connect_timeout):
                self._offer(j)

    def _expire_repairs(self) -> None:
        now = time.monotonic()
        for j, deadline in list(self._repairs.items()):
            if now > deadline:
                del self._repairs[j]
                self._forget(j)
                detail = self._repair_errors.pop(j, None)
                self.transports[j].fail(
                    f"the connection broke and was not restored within "
                    f"{self.config.outage_limit:g} s" + (f" (last problem: {detail})"
                                                         if detail else ""))

    # -- closing ------------------------------------------------------------------------------

    async def _abandon(self) -> None:
        """Close every peer connection of a failed attempt, so the peers notice at once."""
        peers, self._peers = list(self._peers.values()), {}
        await asyncio.gather(*(pc.close() for pc in peers), return_exceptions=True)

    async def _close_peer(self, j: int) -> None:
        pc = self._peers.pop(j)
        transport = self.transports.get(j)
        if transport is not None:
            try:
                await asyncio.wait_for(asyncio.shield(transport.ended), self.config.close_timeout)
            except TimeoutError:
                logger.warning("party %d did not confirm the end of the stream", j)
        await pc.close()
