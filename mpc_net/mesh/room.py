"""A party's visits to the room server: joining its room through the first of its room servers
that answers, and leaving once the channels no longer need it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..ice import unused
from ..signaling import protocol
from ..signaling.protocol import ErrorCode, SignalingError
from .interfaces import MeshConfig, Signaling

logger = logging.getLogger("mpc_net.mesh")


async def join(client: Signaling, config: MeshConfig, *, first: bool) -> protocol.Joined:
    """Connect to a room server and join the party's room (`first`: the first time, which says
    which ICE servers aiortc leaves unused)."""
    await connect_first(client, [config.signaling_url, *config.fallback_urls])
    joined = await client.join(config.room, config.pid, config.parties,
                               identity=config.identity, roster=config.roster,
                               token=config.join_token)
    servers = config.ice_servers + joined.ice_servers
    if first and unused(servers):
        logger.warning("aiortc uses only the first STUN and the first TURN server; "
                       "not using %s", ", ".join(unused(servers)))
    return joined


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
