"""Peer connections on aiortc: the native backend."""

from __future__ import annotations

import asyncio
import logging
import os

from ..rtc.events import ChannelEventRelay
from ..rtc.lean import lean_imports
from ..rtc.patches import apply_process_patches, tune_association, use_host_addresses
from ..signaling.protocol import SessionDescription
from ..transport import ChannelEvents

with lean_imports():
    from aiortc import (
        RTCConfiguration,
        RTCIceServer,
        RTCIceTransportPolicy,
        RTCPeerConnection,
        RTCSessionDescription,
    )

__all__ = ["NativePeerConnection", "quiet_internal_errors", "use_host_addresses"]

logger = logging.getLogger("mpc_net.native")


def quiet_internal_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Send errors of aiortc's and aioice's own background tasks to mpc-net's debug log.

    Closing a peer connection while SCTP still transmits leaves such tasks failed ("protocol is
    shutdown"); the loop would report them through MPyC's handler, on the program's stdout.
    What they mean for the run, mpc-net reports itself.
    """
    previous = loop.get_exception_handler()
    # Our SCTP changes (rtc/) run as aiortc's own methods and fail the same way.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ours = os.path.join(package, "rtc", "")

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        future = context.get("future") or context.get("task")
        coro = future.get_coro() if isinstance(future, asyncio.Task) else None
        filename = getattr(getattr(coro, "cr_code", None), "co_filename", "")
        if "/aiortc/" in filename or "/aioice/" in filename or filename.startswith(ours):
            logger.debug("aiortc: %s", context.get("message"), exc_info=context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _ice_server(server: dict) -> RTCIceServer:
    return RTCIceServer(
        urls=server["urls"], username=server.get("username"), credential=server.get("credential")
    )


class NativePeerConnection:
    """One RTCPeerConnection with the single negotiated data channel mpc-net uses."""

    def __init__(self, ice_servers: list[dict], *, relay_only: bool = False,
                 host_addresses: list[str] | None = None) -> None:
        apply_process_patches()
        if host_addresses is not None:
            use_host_addresses(host_addresses)  # aioice gathers them process-wide
        # An explicit list, even an empty one: given None, aiortc silently uses a public STUN.
        policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
        config = RTCConfiguration(iceServers=[_ice_server(s) for s in ice_servers],
                                  iceTransportPolicy=policy)
        self._pc = RTCPeerConnection(config)
        self.channel = self._pc.createDataChannel("mpc-net", negotiated=True, id=0, ordered=True)
        tune_association(self._pc.sctp)
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._events = ChannelEventRelay()
        self.channel.on("open", self._on_open)
        self.channel.on("message", lambda m: self._events.forward(lambda t: t.on_message(m)))
        self.channel.on("close", lambda: self._events.forward(lambda t: t.on_channel_close()))
        self.channel.on("bufferedamountlow",
                        lambda: self._events.forward(lambda t: t.on_buffered_amount_low()))
        self._pc.on("connectionstatechange", self._on_connection_state)

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState

    @property
    def local_sdp(self) -> str:
        description = self._pc.localDescription
        return description.sdp if description else ""

    @property
    def remote_sdp(self) -> str:
        description = self._pc.remoteDescription
        return description.sdp if description else ""

    async def selected_path(self) -> tuple[str, str] | None:
        """Types of the nominated candidate pair (local, remote), e.g. ("host", "srflx").

        aiortc exposes the pair only through private attributes; this is the one place that
        reads them (pinned aiortc 1.16 / aioice 0.13).
        """
        try:
            pair = self._pc.sctp.transport.transport._connection._nominated[1]
        except (AttributeError, KeyError):
            return None
        return pair.local_candidate.type, pair.remote_candidate.type

    async def create_offer(self) -> SessionDescription:
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return self._local_description()

    async def accept_offer(self, offer: SessionDescription) -> SessionDescription:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return self._local_description()

    async def accept_answer(self, answer: SessionDescription) -> None:
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))

    def bind(self, transport: ChannelEvents) -> None:
        """Send the channel's events, including any that came before, to `transport`."""
        self._events.bind(transport)

    async def close(self) -> None:
        await self._pc.close()

    def _local_description(self) -> SessionDescription:
        description = self._pc.localDescription
        return SessionDescription(description.type, description.sdp)

    def _on_open(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state in ("failed", "closed") and not self.opened.done():
            self.opened.cancel()  # never opened; the mesh reports why when it gives up
        self._events.forward(lambda t: t.on_connection_state(state))
