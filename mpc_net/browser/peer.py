"""Peer connections on the browser's RTCPeerConnection, through Pyodide: the browser backend.

It mirrors the native backend: one negotiated, ordered data channel (id 0) per peer; no trickle
ICE (a description leaves once gathering is complete); the channel's events go to the
DataChannelTransport, and those that come before it is bound are replayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from js import RTCPeerConnection
from pyodide.ffi import JsProxy, to_js

from ..rtc.events import ChannelEventRelay
from ..sdp import candidate_types
from ..signaling.protocol import SessionDescription
from ..transport import ChannelEvents
from .candidates import keep_host_candidates
from .jsffi import Handlers, js_object

DRAIN_SECONDS = 1.0  # at most, for a closing channel to send its backlog
# Gathering ends once every STUN and TURN server has answered or been given up on, which for a
# server that an interface cannot reach takes the browser tens of seconds; working servers
# answer within a few round trips.
GATHERING_SECONDS = 5.0


class _Channel:
    """The browser's RTCDataChannel as the transport sees it: bytes in, bytes out."""

    def __init__(self, channel: JsProxy) -> None:
        self._channel = channel

    @property
    def readyState(self) -> str:  # noqa: N802 (W3C name)
        return self._channel.readyState

    @property
    def bufferedAmount(self) -> int:  # noqa: N802 (W3C name)
        return self._channel.bufferedAmount

    @property
    def bufferedAmountLowThreshold(self) -> int:  # noqa: N802 (W3C name)
        return self._channel.bufferedAmountLowThreshold

    @bufferedAmountLowThreshold.setter
    def bufferedAmountLowThreshold(self, value: int) -> None:  # noqa: N802 (W3C name)
        self._channel.bufferedAmountLowThreshold = value

    def send(self, data: bytes) -> None:
        self._channel.send(to_js(data))  # a Uint8Array; send() copies it at once

    def close(self) -> None:
        self._channel.close()


class BrowserPeerConnection:
    """One RTCPeerConnection with the single negotiated data channel mpc-net uses."""

    def __init__(self, ice_servers: list[dict], *, relay_only: bool = False,
                 host_addresses: list[str] | None = None,
                 entry: Callable[[Callable[[], None]], None] | None = None) -> None:
        """`entry`: how the connection's and channel's listeners run their work (`Handlers`)."""
        # Chromium offers 127.0.0.1 only with --allow-loopback-in-peer-connection and camera and
        # microphone permission for the page; otherwise it hides addresses behind mDNS names.
        # So the chosen addresses filter what the browser gathers (None: keep it all).
        self._host_addresses = host_addresses
        # An explicit list, even an empty one, as natively.
        self._pc = RTCPeerConnection.new(js_object({
            "iceServers": ice_servers, "iceTransportPolicy": "relay" if relay_only else "all"}))
        js_channel = self._pc.createDataChannel("mpc-net", js_object(
            {"negotiated": True, "id": 0, "ordered": True}))
        js_channel.binaryType = "arraybuffer"
        self.channel = _Channel(js_channel)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self._gathered: asyncio.Future[None] = loop.create_future()
        self._events = ChannelEventRelay()
        self._closed = False
        # The remote description as the peer sent it. Chromium's `remoteDescription` is its own
        # re-serialization and keeps one of several fingerprints; the handshake binds them all.
        self._remote_sdp = ""
        self._path: tuple[str, str] | None = None
        self._handlers = Handlers(entry)
        self._handlers.on(js_channel, "open", lambda _: _settle(self.opened))
        self._handlers.on(js_channel, "message", self._on_message)
        self._handlers.on(js_channel, "close",
                          lambda _: self._events.forward(lambda t: t.on_channel_close()))
        self._handlers.on(js_channel, "bufferedamountlow",
                          lambda _: self._events.forward(lambda t: t.on_buffered_amount_low()))
        self._handlers.on(self._pc, "connectionstatechange", self._on_connection_state)
        self._handlers.on(self._pc, "icegatheringstatechange", self._on_gathering_state)

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState

    @property
    def local_sdp(self) -> str:
        description = self._pc.localDescription
        return description.sdp if description else ""

    @property
    def remote_sdp(self) -> str:
        return self._remote_sdp

    async def selected_path(self) -> tuple[str, str] | None:
        """Types of the selected candidate pair (local, remote), e.g. ("host", "srflx"); after
        close, the last ones seen (a closed connection has no candidate pair)."""
        pair = await self._selected_pair()
        if pair is not None:
            self._path = (pair[0].candidateType, pair[1].candidateType)
        return self._path

    async def round_trip_time(self) -> float | None:
        """ICE's own measure of the selected pair's round-trip time, in seconds."""
        pair = await self._selected_pair()
        return None if pair is None else getattr(pair[2], "currentRoundTripTime", None)

    async def create_offer(self) -> SessionDescription:
        await self._pc.setLocalDescription(await self._pc.createOffer())
        return await self._local_description()

    async def accept_offer(self, offer: SessionDescription) -> SessionDescription:
        await self._set_remote(offer)
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return await self._local_description()

    async def accept_answer(self, answer: SessionDescription) -> None:
        await self._set_remote(answer)

    def bind(self, transport: ChannelEvents) -> None:
        """Send the channel's events, including any that came before, to `transport`."""
        self._events.bind(transport)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # The transport is done with the channel (GOODBYE, or given up): no more events for it.
        self._handlers.clear()
        # pc.close() drops whatever the channel has not sent yet, such as the REFUSED record
        # that tells a peer why: close the channel first, which sends its backlog, and give
        # that a moment.
        self.channel.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while self.channel.readyState != "closed" and loop.time() < deadline:
            await asyncio.sleep(0.02)
        self._pc.close()

    async def _set_remote(self, description: SessionDescription) -> None:
        # Before the await: the channel may open before this coroutine resumes.
        self._remote_sdp = description.sdp
        await self._pc.setRemoteDescription(
            js_object({"type": description.type, "sdp": description.sdp}))

    async def _local_description(self) -> SessionDescription:
        """The local description once ICE gathering is complete (no trickle ICE), or with what
        was gathered after GATHERING_SECONDS."""
        if self._pc.iceGatheringState != "complete":
            try:
                await asyncio.wait_for(asyncio.shield(self._gathered), GATHERING_SECONDS)
            except TimeoutError:
                pass
        sdp = self._pc.localDescription.sdp
        if self._host_addresses is not None:
            sdp = keep_host_candidates(sdp, self._host_addresses)
            if not candidate_types(sdp):
                raise ConnectionError(
                    f"the browser offered no ICE candidate on {', '.join(self._host_addresses)}; "
                    "Chromium offers 127.0.0.1 only when started with "
                    "--allow-loopback-in-peer-connection, Firefox only with "
                    "media.peerconnection.ice.loopback set, and both only with camera and "
                    "microphone permission for this page")
        return SessionDescription(self._pc.localDescription.type, sdp)

    async def _selected_pair(self) -> tuple[JsProxy, JsProxy, JsProxy] | None:
        if self._closed:
            return None
        reports = {report.id: report for report in (await self._pc.getStats()).values()}
        for report in reports.values():
            pair = reports.get(getattr(report, "selectedCandidatePairId", None))
            if report.type == "transport" and pair is not None:
                return reports[pair.localCandidateId], reports[pair.remoteCandidateId], pair
        return None

    def _on_message(self, event: JsProxy) -> None:
        data = event.data
        # Convert now: the event object is gone once this handler returns.
        message = data if isinstance(data, str) else data.to_bytes()
        self._events.forward(lambda t: t.on_message(message))

    def _on_connection_state(self, _: JsProxy) -> None:
        state = self._pc.connectionState
        if state in ("failed", "closed") and not self.opened.done():
            self.opened.set_exception(ConnectionError(f"the peer connection {state}"))
        self._events.forward(lambda t: t.on_connection_state(state))

    def _on_gathering_state(self, _: JsProxy) -> None:
        if self._pc.iceGatheringState == "complete":
            _settle(self._gathered)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
