"""A party's visits to the room server: joining its room through the first of its room servers
that answers, and leaving once the channels no longer need it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from ..ice import unused
from ..signaling import protocol
from ..signaling.protocol import ErrorCode, SignalingError
from .interfaces import MeshConfig, Signaling

logger = logging.getLogger("mpc_net.mesh")

# A room server refuses joins as `busy` while too many wait for Redis: try again after a random
# pause (so that a wave of refused parties spreads out), longer each time, for this long in all;
# within the room server's --seat-timeout (30 s by default), which ends a connection without seat.
BUSY_PAUSE = (0.2, 4.0)  # the first and the longest pause
BUSY_FOR = 20.0
# While building the mesh, a party that lost its room server (its process died or stopped, or
# the room moved to another process sharing rooms through Redis) joins again this long after.
REJOIN_PAUSE = 1.0
GONE = (ErrorCode.CONNECTION_CLOSED, ErrorCode.SERVER_CLOSING, ErrorCode.CONNECT_FAILED)


async def join(client: Signaling, config: MeshConfig, *, first: bool) -> protocol.Joined:
    """Connect to a room server and join the party's room (`first`: the first time, which says
    which ICE servers aiortc leaves unused)."""
    await connect_first(client, [config.signaling_url, *config.fallback_urls])
    joined = await join_when_free(client, config)
    servers = config.ice_servers + joined.ice_servers
    if first and unused(servers):
        logger.warning("aiortc uses only the first STUN and the first TURN server; "
                       "not using %s", ", ".join(unused(servers)))
    return joined


async def join_when_free(client: Signaling, config: MeshConfig) -> protocol.Joined:
    """Join, trying again while the room server says it is busy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_FOR
    pause = BUSY_PAUSE[0]
    while True:
        try:
            return await client.join(config.room, config.pid, config.parties,
                                     identity=config.identity, roster=config.roster,
                                     token=config.join_token)
        except SignalingError as exc:
            wait = random.uniform(pause / 2, pause)
            if exc.code != ErrorCode.BUSY or loop.time() + wait > deadline:
                raise
            logger.info("%s; trying again in %.1f s", exc, wait)
        await asyncio.sleep(wait)
        pause = min(2 * pause, BUSY_PAUSE[1])


async def connect_first(client: Signaling, urls: Sequence[str]) -> None:
    """Connect to the first room server of `urls` that can be reached (processes sharing rooms
    through Redis): one that answers and refuses is not passed over."""
    for url, following in zip(urls, [*urls[1:], None], strict=True):
        try:
            await client.connect(url)
            return
        except SignalingError as exc:
            if following is None or exc.code != ErrorCode.CONNECT_FAILED:
                raise
            logger.info("%s; trying %s", exc, following)


def lost(exc: SignalingError, was_in_room: bool) -> bool:
    """Whether joining again may help after `exc`: only for a party that was in its room (a
    first join that fails stays failed: a room server that is not there, or shuts down, says so
    at once). Its seat then stays taken by the lost connection until the room's owner notices
    (with Redis, once the dead process's keys expire), so a taken seat is tried again too."""
    return was_in_room and (exc.code in GONE or exc.code == ErrorCode.PARTY_TAKEN)


class Rejoining:
    """A party's signaling client while it builds its mesh: once the party is in its room, a
    room server lost (`lost`) is joined again through the first one that answers, REJOIN_PAUSE
    later and until `deadline`; `recv` then returns the new `joined`. Signals that were lost
    with it are dropped: room-mates see the party leave and come back, and offer anew."""

    def __init__(self, new_client: Callable[[], Signaling], config: MeshConfig,
                 deadline: float) -> None:
        self._new_client = new_client
        self._client = new_client()
        self._config = config
        self._deadline = deadline
        self._in_room = False

    async def connect(self, url: str) -> None:
        await self._client.connect(url)

    async def join(self, *args, **options) -> protocol.Joined:
        joined = await self._client.join(*args, **options)
        self._in_room = True
        return joined

    async def send_signal(self, to: int, payload: protocol.SignalPayload) -> None:
        try:
            await self._client.send_signal(to, payload)
        except SignalingError as exc:
            if not lost(exc, self._in_room):
                raise

    async def recv(self) -> protocol.ServerMessage:
        try:
            return await self._client.recv()
        except SignalingError as exc:
            error = exc
        loop = asyncio.get_running_loop()
        while lost(error, self._in_room) and loop.time() + REJOIN_PAUSE < self._deadline:
            logger.info("party %d: %s; joining the room again", self._config.pid, error)
            await self._client.close()
            await asyncio.sleep(REJOIN_PAUSE)
            self._client = self._new_client()
            try:
                joined = await join(self._client, self._config, first=False)
            except SignalingError as exc:
                error = exc
                continue
            logger.info("party %d joined room %r again; present: %s", self._config.pid,
                        self._config.room, joined.peers or "nobody yet")
            return joined
        raise error

    async def leave(self) -> None:
        await self._client.leave()

    async def close(self) -> None:
        await self._client.close()


async def leave(client: Signaling) -> None:
    """The channels no longer need the room server, so failing to say goodbye is harmless."""
    try:
        await client.leave()
    except SignalingError as exc:
        logger.debug("leaving the room: %s", exc)


async def depart(client: Signaling) -> None:
    """Leave the room and close the connection to the room server."""
    await leave(client)
    await client.close()
