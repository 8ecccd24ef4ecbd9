"""The send path of mpc-net's connections: each SCTP packet encrypted and handed to the socket in
one step.

aiortc sends a packet through five coroutines before it reaches asyncio's socket transport:
the DTLS transport's `_send_data` and `_write_ssl`, the ICE transport's `_send` (aioice's
`Connection.send`), `Connection.sendto`, which looks up the nominated candidate pair, and the
pair's protocol's `send_data`. None of them waits for anything on a direct UDP path; together
they were a fifth of a sender's CPU time per packet in a bulk transfer.

Once DTLS is connected and the nominated pair's protocol is aioice's `StunProtocol`,
`DatagramSender` does what those layers do, in the same order: OpenSSL encrypts the packet into
one record, the record goes to the pair's remote address through the protocol's transport,
as `StunProtocol.send_data` sends it (a socket's asyncio transport; for a relayed candidate
aioice's TURN transport, which wraps each datagram for the relay and may wait for a channel
binding, in order, in tasks of its own). Anything else,
and anything before or after that state, takes aiortc's own path. The DTLS transport's byte and
packet counters (only its `getStats` reads them, which mpc-net's parties never call) do not count
what this sends.
"""

from __future__ import annotations

from aioice import Connection
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport
from aiortc.rtcdtlstransport import SSL, State  # SSL: the OpenSSL bindings aiortc's DTLS uses

# aiortc reads at most this much of a record from OpenSSL (RFC 9260 packets stay well below).
RECORD_MAX = 1500

COMPONENT = 1  # a data channel's only ICE component (RTP's; rtcp-mux)


class DatagramSender:
    """Sends one DTLS transport's packets straight to the nominated pair's socket, once it
    can."""

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._connection: Connection = dtls.transport._connection
        self._aiortc_send_data = dtls._send_data
        dtls._send_data = self.send_data

    async def send_data(self, data: bytes) -> None:
        """What aiortc's `RTCDtlsTransport._send_data` does, without its layers."""
        dtls = self._dtls
        pair = self._connection._nominated.get(COMPONENT)
        if (dtls._state is not State.CONNECTED or pair is None
                or type(pair.protocol) is not StunProtocol):
            await self._aiortc_send_data(data)
            return
        ssl = dtls._ssl
        ssl.send(data)
        try:
            record = ssl.bio_read(RECORD_MAX)
        except SSL.Error:
            return  # as aiortc: nothing to send
        pair.protocol.transport.sendto(record, pair.remote_addr)
