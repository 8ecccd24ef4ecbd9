"""The receive path of mpc-net's connections: each datagram handled as it arrives.

aioice puts every datagram it receives in a queue, and aiortc's DTLS transport takes it from
there in a task of its own: a task wake-up, one more turn of the event loop, for every datagram
before it is even decrypted. On a round trip between two Python processes (loopback, or a
WAN whose parties share a loaded machine) those turns are part of the time.

Once DTLS is connected, `DatagramReceiver` hands each datagram to aiortc's own receive step
(`RTCDtlsTransport._recv_next`: decrypt, answer what OpenSSL has to answer, pass the data to
SCTP) right within aioice's `datagram_received`, in arrival order: a datagram that arrives while
one is still being handled (its handling had to wait, to send through a TURN server say) waits
behind it. Before that (the DTLS handshake), and whenever aiortc's task still has queued
datagrams to handle, datagrams take aioice's queue as before. The end of the connection is
aiortc's too: a closing DTLS peer or a failure makes its task see the connection lost.

Once connected, aioice's sockets also stop trying to parse every datagram as STUN first: a
datagram whose first byte says DTLS (20-63, RFC 7983's demultiplexing, as aiortc's own receive
step tells DTLS from RTP) goes to DTLS at once; anything else still takes aioice's parse.

The association asks this receiver whether more datagrams wait in the nominated pair's socket
(`FIONREAD`, a system call of 1-2.5 us, asked at most once per packet owing a SACK):
while they do, it acknowledges less often (`acks.py`). The datagrams themselves are still read
one per wake-up, as asyncio reads them: a reader that took all that waited (tried) had each of
the process's associations answer a batch at a time, and of two sharing a short queue the one
read first took most of it.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Callable
from functools import partial

from aioice import Connection
from aioice.ice import StunProtocol
from aiortc import RTCDataChannel, RTCDtlsTransport
from aiortc.rtcdtlstransport import State

from .acks import DelayedAckSctpTransport
from .sctp import run_eagerly
from .send import COMPONENT

if sys.platform != "win32":
    from fcntl import ioctl
    from termios import FIONREAD

logger = logging.getLogger("mpc_net.native")

_NOTHING = bytes(4)  # FIONREAD's answer when no datagram waits


class DatagramReceiver:
    """Feeds one DTLS transport its datagrams without a task wake-up each (once connected)."""

    def __init__(self, dtls: RTCDtlsTransport, association: DelayedAckSctpTransport) -> None:
        ice = dtls.transport
        self._dtls = dtls
        self._connection: Connection = ice._connection
        self._queued: Callable[[bytes, int], None] = self._connection.data_received
        self._aioice_recv = ice._recv
        self._held: bytes | None = None  # the datagram that the next receive step takes
        self._backlog: deque[tuple[bytes, int]] | None = None  # None: none being handled
        self._task_waiting = False  # aiortc's task waits on aioice's queue, having handled all
        self._demultiplexing = False  # aioice's sockets hand DTLS records straight here
        ice._recv = self._next_datagram
        self._connection.data_received = self.data_received
        if sys.platform != "win32":
            association.datagrams_waiting = self.datagrams_waiting  # type: ignore[method-assign]

    def datagrams_waiting(self) -> bool:
        """Whether a datagram waits in the nominated pair's socket, read on a later turn."""
        pair = self._connection._nominated.get(COMPONENT)
        if pair is None or type(pair.protocol) is not StunProtocol:
            return False  # not yet
        # A relayed pair's StunProtocol sits on aioice's TURN transport, which has no socket of
        # its own to ask (its allocation's socket carries other traffic too).
        socket = pair.protocol.transport.get_extra_info("socket")
        return socket is not None and ioctl(socket.fileno(), FIONREAD, _NOTHING) != _NOTHING

    def data_received(self, data: bytes, component: int) -> None:
        """aioice's hook for a datagram that is not STUN."""
        if self._backlog is not None:
            self._backlog.append((data, component))
        elif (self._dtls._state is State.CONNECTED and self._task_waiting
              and self._connection._queue.empty()):
            self._backlog = deque()
            if not self._demultiplexing:
                self._demultiplex()
            run_eagerly(self._handle(data))
        else:
            self._queued(data, component)

    def _demultiplex(self) -> None:
        """Tell DTLS records from STUN on aioice's sockets by their first byte from now on."""
        self._demultiplexing = True
        for protocol in self._connection._protocols:
            # A relayed candidate's StunProtocol too: its TURN transport hands it what the
            # relay unwrapped, the same datagrams.
            if type(protocol) is StunProtocol:
                protocol.datagram_received = partial(self._datagram_received, protocol)

    def _datagram_received(self, protocol: StunProtocol, data: bytes,
                           addr: tuple[str, int]) -> None:
        if data and 19 < data[0] < 64:
            self.data_received(data, protocol.local_candidate.component)
        else:
            StunProtocol.datagram_received(protocol, data, addr)

    async def _handle(self, data: bytes) -> None:
        try:
            while True:
                self._held = data
                await self._dtls._recv_next()
                if not self._backlog:
                    return
                data, _ = self._backlog.popleft()
        except Exception as exc:  # as aiortc's task ends on it: the connection is lost
            channel = _channel_of(exc)
            if channel is None:
                logger.debug("aiortc: %r", exc)
            else:  # an application's bug: said as aiortc's own receive task says it
                logger.warning("data channel %r (id %s): an event handler raised %r; the "
                               "connection ends", channel.label, channel.id, exc, exc_info=exc)
            self._held = None
            self._connection._queue.put_nowait(None)
        finally:
            self._backlog = None

    async def _next_datagram(self) -> bytes:
        """aiortc's receive step reads here: the held datagram, else aioice's queue."""
        if self._held is not None:
            data, self._held = self._held, None
            return data
        self._task_waiting = True
        try:
            return await self._aioice_recv()
        finally:
            self._task_waiting = False


def _channel_of(exc: Exception) -> RTCDataChannel | None:
    """The data channel whose event handler (`message`, say) raised `exc`, if one did: its emit
    is on the way."""
    frames = exc.__traceback__
    while frames is not None:
        owner = frames.tb_frame.f_locals.get("self")
        if isinstance(owner, RTCDataChannel):
            return owner
        frames = frames.tb_next
    return None
