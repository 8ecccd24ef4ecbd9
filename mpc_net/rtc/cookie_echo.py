"""An association's first messages with its COOKIE ECHO, not a round trip after it.

aiortc opens a negotiated data channel, and sends what is written on it, only once the
association is established: for the side that sends the COOKIE ECHO that is when the COOKIE ACK
comes back, a round trip later. RFC 9260 (5.1, step E) lets that side send DATA right after the
COOKIE ECHO; the peer processes the COOKIE ECHO first (it comes first) and the DATA then finds
an association. So here that side's negotiated channels open as the COOKIE ECHO leaves, and
mpc-net's handshake (HELLO and AUTH, which need nothing but the two certificates' fingerprints
from the session descriptions) goes in the same flight: the peer can answer it with its own and
with RESUME at once, and the channel links a round trip sooner. Chromium, Firefox and plain
aiortc peers take it (tests/browser, tests/test_sctp.py).

Only messages on negotiated channels go early (they need no DCEP open, whose stream id depends
on the DTLS role); the rest waits for the COOKIE ACK as before. A lost COOKIE ECHO is sent again
by its own timer (T1) and the DATA by the retransmission timer, as any lost DATA.
"""

from __future__ import annotations

from aiortc.rtcsctptransport import WEBRTC_DCEP, RTCSctpTransport


class CookieEchoDataSctpTransport(RTCSctpTransport):
    """Negotiated channels open, and their messages go, in the COOKIE-ECHOED state."""

    def _set_state(self, state: RTCSctpTransport.State) -> None:
        super()._set_state(state)
        if state == self.State.COOKIE_ECHOED:  # aiortc has just sent the COOKIE ECHO
            for channel in list(self._data_channels.values()):
                if channel.negotiated and channel.readyState == "connecting":
                    channel._setReadyState("open")

    async def _data_channel_flush(self) -> None:
        if self._association_state != self.State.COOKIE_ECHOED:
            await super()._data_channel_flush()
            return
        queue = self._data_channel_queue
        while queue and not self._outbound_queue:
            channel, protocol, data = queue[0]
            if (protocol == WEBRTC_DCEP or not channel.negotiated
                    or channel.maxPacketLifeTime or channel.maxRetransmits is not None):
                return  # these wait until established, as in aiortc
            queue.popleft()
            await self._send(channel.id, protocol, data, ordered=channel.ordered)
            channel._addBufferedAmount(-len(data))
