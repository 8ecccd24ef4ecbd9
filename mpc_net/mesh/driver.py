"""The one asyncio driver of the mesh state machine (state.py), for the first connect and for
repairs: it turns room messages, peer connections and channels into events, carries out the
actions, and wakes for the state's next deadline (a timer, not a polling loop).

Backend-neutral: the peer connections and signaling clients come from factories (native/ and
browser/ hold one of each). Once every data channel is open this party leaves the room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..signaling import protocol
from ..signaling.protocol import ProtocolError, SignalingError
from ..transport import DataChannelTransport, PeerLost
from . import room
from .agreement import Agreement
from .events import (
    Action,
    CheckComplete,
    Close,
    Event,
    Fail,
    Joined,
    Lose,
    Offer,
    PeerJoined,
    PeerLeft,
    Repair,
    RepairProblem,
    Report,
    RosterKnown,
    Show,
    Tick,
    Unreachable,
)
from .interfaces import MeshConfig, MeshError, MeshObserver, PeerConnection, Signaling
from .peers import Peers
from .state import MeshState, Timeouts

logger = logging.getLogger("mpc_net.mesh")
# Whom a party waits for while connecting; the CLI shows it on a terminal (or with -v).
progress_logger = logging.getLogger("mpc_net.progress")


class Mesh:
    def __init__(
        self,
        config: MeshConfig,
        new_peer_connection: Callable[..., PeerConnection],
        on_lost: Callable[[PeerLost], None],
        new_signaling: Callable[[], Signaling],
        observer: MeshObserver | None = None,
    ) -> None:
        self.config = config
        self._new_signaling = new_signaling
        self._observer = observer
        self.peers = Peers(config, new_peer_connection, on_lost, self._feed, self._spawn)
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._failure: MeshError | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._repair_task: asyncio.Task | None = None
        self._departure: asyncio.Future[None] | None = None  # leaving the room once connected
        self._state: MeshState | None = None
        self._agreement: Agreement | None = None

    @property
    def transports(self) -> dict[int, DataChannelTransport]:
        """The authenticated channel to each party, by index (their counters feed reports)."""
        return self.peers.transports

    @property
    def paths(self) -> dict[int, tuple[str, str] | None]:
        """The selected candidate pair types (local, remote) to each party, by index."""
        return dict(self.peers.paths)

    @property
    def state(self) -> MeshState:
        assert self._state is not None, "connect() first"
        return self._state

    async def connect(self, ready: Awaitable | None = None) -> dict[int, DataChannelTransport]:
        """Open an authenticated data channel to every other party; returns the transports by
        party index. Peer connections are made once `ready` is (a native party's imports)."""
        cfg = self.config
        started = asyncio.get_running_loop().time()
        timeouts = Timeouts(cfg.join_timeout, cfg.connect_timeout, cfg.outage_limit)
        self._state = MeshState(cfg.pid, cfg.parties, cfg.room, started, timeouts,
                                roster_known=cfg.roster is not None)
        self._agreement = Agreement(cfg, self.peers.send_check)
        self.peers.roster = self._agreement.roster
        self.peers.client = room.Rejoining(self._new_signaling, cfg, started + cfg.join_timeout)
        try:
            joined = await self._join_by(started + cfg.join_timeout)
            logger.info("party %d joined room %r; present: %s", cfg.pid, cfg.room,
                        joined.peers or "nobody yet")
            if ready is not None:
                await ready
            if cfg.roster is None:
                logger.warning("WARNING: room %r has open seats (--trust-room-server, no "
                               "roster): anyone who knows its name can take one", cfg.room)
            self._enter(joined)
            await self._serve(lambda: self.state.done)
            self.state.connected = True
            # Leaving waits a round trip for the room server's close frame; the channels need
            # the room no more, so MPyC starts meanwhile.
            self._departure = asyncio.ensure_future(room.depart(self.peers.client))
        except (SignalingError, MeshError) as exc:
            self._fail(MeshError(str(exc)))  # from now on, events are echoes of this
            await self.peers.abandon()
            raise MeshError(self._agreement.explained(str(exc))) from None
        except BaseException:
            self._fail(MeshError("cancelled"))
            await self.peers.abandon()
            raise
        finally:
            await self.peers.drop_ahead()
            self.state.left_room()
            if not self.state.connected and self._timer is not None:
                self._timer.cancel()  # a failed or cancelled build has no deadlines left
            if self._departure is None:
                await self.peers.client.close()
            for task in self._tasks:
                task.cancel()
        logger.info("party %d connected to all %d peers in %.2f s", cfg.pid, len(self.transports),
                    asyncio.get_running_loop().time() - started)
        if self._observer is not None:
            self._observer.connected(self.transports)
        return self.transports

    async def close(self) -> None:
        """Close every peer connection once the peer has confirmed the end of the stream, then
        report each peer's path and traffic."""
        if self._repair_task is not None:
            self._repair_task.cancel()
        if self._departure is not None:
            await self._departure
        if self._timer is not None:
            self._timer.cancel()
        await self.peers.close(self.config.close_timeout)
        self.peers.report()

    # -- the room -----------------------------------------------------------------------------

    async def _join(self) -> protocol.Joined:
        return await room.join(self.peers.client, self.config, first=not self.state.connected)

    async def _join_by(self, deadline: float) -> protocol.Joined:
        """Our first join, answered by `deadline` (the join timeout's end): a join the room
        server lost (between processes sharing rooms) must not leave us waiting for ever."""
        try:
            async with asyncio.timeout_at(deadline) as limit:
                return await self._join()
        except TimeoutError:
            if not limit.expired():
                raise
        raise MeshError(f"the room server did not answer our join of room {self.config.room!r} "
                        f"within the join timeout ({self.config.join_timeout:g} s)")

    def _enter(self, joined: protocol.Joined) -> None:
        """We are in the room with `joined.peers`."""
        self.peers.ice_servers = self.config.ice_servers + joined.ice_servers
        roster_done = False
        if not self.state.connected:
            for j in joined.peers:
                roster_done |= self._agreement.greet(j, joined.keys.get(j), joined.peers)
            self.peers.prepare(j for j in range(self.config.parties) if j != self.config.pid)
        self._feed(Joined(tuple(joined.peers)))
        if roster_done:
            self._feed(RosterKnown())
        if self._agreement.reveal_when_ready(self.state.present):
            self._feed(CheckComplete())

    async def _serve(self, finished: Callable[[], bool]) -> None:
        """Handle room messages until `finished()`; the state's actions wake us."""
        receive = asyncio.ensure_future(self.peers.client.recv())
        try:
            while not finished():
                self._wake.clear()
                woken = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({receive, woken},
                                             return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if receive in done:
                    self._handle(receive.result())
                    receive = asyncio.ensure_future(self.peers.client.recv())
                if self._failure is not None:
                    raise self._failure
        finally:
            receive.cancel()

    def _handle(self, message: protocol.ServerMessage) -> None:
        match message:
            case protocol.PeerJoined(j, key):
                roster_done = not self.state.connected and self._agreement.greet(
                    j, key, self.state.present + [j])
                self._feed(PeerJoined(j))
                if roster_done:
                    self._feed(RosterKnown())
            case protocol.PeerLeft(j):
                tried = self.peers.attempt(j) if j in self.peers.connections else None
                self._feed(PeerLeft(j, self.peers.opened(j), tried))
            case protocol.RelayedSignal(j, data):
                self._signal_received(j, data)
            case protocol.OtherRoster():
                self._agreement.other_roster(
                    [j for j, k in self.state.links.items() if not k.present])
            case protocol.Joined():  # again, after the room server was lost (room.Rejoining)
                self._enter(message)
            case protocol.IceServers(servers):
                self.peers.ice_servers = self.config.ice_servers + servers
                self._spawn(self.peers.drop_ahead())  # made with the old credentials
            case protocol.Error(code, text):
                raise MeshError(f"room server: {text} ({code})")

    def _signal_received(self, j: int, data: dict) -> None:
        try:
            payload = protocol.parse_signal_data(data)
        except ProtocolError as exc:
            raise MeshError(f"party {j} sent {exc.message}") from None
        if isinstance(payload, protocol.CheckCodeMessage):
            if self._agreement.received(j, payload, self.state.present):
                self._feed(CheckComplete())
        else:
            self._spawn(self.peers.signal_received(j, payload))

    # -- the state machine's events and actions -------------------------------------------------

    def _feed(self, event: Event) -> None:
        if self._failure is not None:
            return  # the build failed: what still happens is the echo of that
        loop = asyncio.get_running_loop()
        for action in self.state.handle(event, loop.time()):
            self._act(action)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.state.next_deadline()
        # A delay, not loop.call_at: Pyodide's loop refuses a time in the past, which a deadline
        # can be where the clock is coarse (Firefox rounds performance.now() to a millisecond).
        self._timer = None if deadline is None else loop.call_later(
            max(0.0, deadline - loop.time()), self._feed, Tick())
        self._wake.set()

    def _act(self, action: Action) -> None:
        match action:
            case Offer(j):
                self.peers.offer(j)
            case Close(j):
                self.peers.forget(j)
            case Fail(message):
                self._fail(MeshError(message))
            case Unreachable(j) if self._failure is None:
                self._fail(MeshError(self.peers.unreachable(j)))
            case Lose(j, reason):
                self.transports[j].fail(reason)
            case Repair():
                if self._repair_task is None or self._repair_task.done():
                    self._repair_task = asyncio.ensure_future(self._repair())
            case Report(level, text, progress):
                (progress_logger if progress else logger).log(level, "%s", text)
            case Show(j, link) if self._observer is not None:
                self._observer.link_changed(j, link, self.peers.connections.get(j),
                                            self.transports.get(j))

    def _fail(self, error: MeshError) -> None:
        """Building failed: only the first failure is reported."""
        if self._failure is None and not self.state.connected:
            self._failure = error
            if self._timer is not None:
                self._timer.cancel()
            self._wake.set()

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if not self.state.connected:
            self._fail(exc if isinstance(exc, MeshError)
                       else MeshError(f"connecting failed: {exc}"))
        elif self.state.repairing:
            logger.warning("party %d: restoring a connection: %s", self.config.pid, exc)
            self._feed(RepairProblem(str(exc)))

    # -- restoring interrupted channels -------------------------------------------------------

    async def _repair(self) -> None:
        """Rejoin the room (the room server may have restarted meanwhile) until every
        interrupted channel is back or out of time."""
        while self.state.repairing:
            self.peers.client = self._new_signaling()
            try:
                self._enter(await self._join())
                await self._serve(lambda: not self.state.repairing)
                await room.leave(self.peers.client)
            except (SignalingError, MeshError, OSError) as exc:
                logger.info("restoring connections: %s; trying again", exc)
                self._feed(RepairProblem(str(exc)))
                await asyncio.sleep(1)
            finally:
                self.state.left_room()
                await self.peers.client.close()
