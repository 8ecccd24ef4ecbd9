"""Transport micro-benchmarks: MPyC-style TCP, raw UDP and WebRTC data channels on loopback.

    python benchmarks/transport.py TEST --link LINK [options]

prints one JSON object (the figures) as the last line of stdout. TEST is one of

- `pingpong`: round trips of one small message; median round-trip time;
- `stream`: one-way transfer of fixed-size messages; throughput;
- `small`: many tiny messages, `--burst` of them written per event-loop tick; message rate;
- `memory`: RSS growth of this process per open connection pair (both ends in-process);
- `imports`: what importing MPyC, and then mpc-net's party code, costs a fresh process.

The two-process tests start the responder (this script, `responder --link LINK`) as a child
and signal through its stdin and stdout: a TCP or UDP port, or the WebRTC offer and answer.

Links:
- `tcp`: an asyncio Protocol on a TCP transport, as MPyC's MessageExchanger runs on;
- `rtc`: the same Protocol on mpc-net's DataChannelTransport over an aiortc data channel (the
  product path: records, per-tick batching, flow control), without the authentication step;
- `rtc-raw`: aiortc's RTCDataChannel used directly, one `send` per message: what
  DataChannelTransport adds (records) or saves (batching) on top of aiortc;
- `udp`: asyncio datagrams, no reliability at all: the lower bound for any transport over UDP.

Only loopback: host candidates on 127.0.0.1 and an explicit, empty ICE server list (aiortc
would use a public STUN server if given None).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import statistics
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only: this file imports mpc-net where it uses it
    from mpc_net.signaling.protocol import SessionDescription

HOST = "127.0.0.1"

# Message opcodes (the first byte of every message).
ECHO = b"E"  # responder: send it back
SINK = b"D"  # responder: count it
FINISH = b"F"  # responder: reply with REPORT (after everything before it: links are ordered)
REPORT = b"R"

_HEADER = struct.Struct("!I")  # stream links: a length prefix per message, as MPyC frames


# -- links ------------------------------------------------------------------------------------


class Messenger:
    """Whole messages over a link; `handler` gets each received message."""

    def __init__(self, handler: Callable[[bytes], None]) -> None:
        self.handler = handler
        self.writable = asyncio.Event()  # cleared while the link asks the writer to pause
        self.writable.set()

    def send(self, message: bytes) -> None:
        raise NotImplementedError


class Framed(Messenger, asyncio.Protocol):
    """Length-prefixed messages on a byte stream: a TCP transport or a DataChannelTransport."""

    def __init__(self, handler: Callable[[bytes], None]) -> None:
        super().__init__(handler)
        self._buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start, end = 0, len(buffer)
        while end - start >= 4:
            (length,) = _HEADER.unpack_from(buffer, start)
            if end - start - 4 < length:
                break
            self.handler(bytes(buffer[start + 4 : start + 4 + length]))
            start += 4 + length
        del buffer[:start]

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def send(self, message: bytes) -> None:
        self.transport.write(_HEADER.pack(len(message)) + message)


class Datagrams(Messenger, asyncio.DatagramProtocol):
    """One message per UDP datagram (ping-pong only: nothing is retransmitted)."""

    def __init__(self, handler: Callable[[bytes], None]) -> None:
        super().__init__(handler)
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        self.handler(data)

    def send(self, message: bytes) -> None:
        self.transport.sendto(message, self.peer)


class RawChannel(Messenger):
    """One message per data channel message, straight on aiortc's RTCDataChannel."""

    def __init__(self, handler: Callable[[bytes], None], pc: RawPeerConnection) -> None:
        super().__init__(handler)
        self.channel = pc.channel
        pc.deliver_to(handler)

    def send(self, message: bytes) -> None:
        self.channel.send(message)


class Responder:
    """The far end: echoes, counts, and reports what it counted."""

    def __init__(self) -> None:
        self.messenger: Messenger | None = None
        self.count = 0
        self.bytes = 0

    def __call__(self, message: bytes) -> None:
        op = message[:1]
        if op == SINK:
            self.count += 1
            self.bytes += len(message)
        elif op == ECHO:
            self.messenger.send(message)
        elif op == FINISH:
            report = {"count": self.count, "bytes": self.bytes}
            self.messenger.send(REPORT + json.dumps(report).encode())


class Initiator:
    """The near end: hands each reply to whoever waits for it."""

    def __init__(self) -> None:
        self.messenger: Messenger | None = None
        self._waiter: asyncio.Future[bytes] | None = None

    def __call__(self, message: bytes) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(message)

    async def request(self, message: bytes) -> bytes:
        self._waiter = asyncio.get_running_loop().create_future()
        self.messenger.send(message)
        return await self._waiter


# -- peer connections -------------------------------------------------------------------------


def _loopback_only() -> None:
    from mpc_net.native.peer import use_host_addresses

    use_host_addresses([HOST])


def _ignore_loss(error: Exception) -> None:
    """A lost channel after the figures are taken is the end of the run, not an error."""


def _attach_transport(pc, peer_pid: int, protocol: asyncio.Protocol) -> None:
    """mpc-net's transport on an open channel, as the mesh builds it, minus the handshake's
    checks: the stream starts at offset 0 on both sides, as after a first handshake."""
    from mpc_net.sdp import max_message_size
    from mpc_net.transport import DataChannelTransport

    transport = DataChannelTransport(pc.channel, peer_pid,
                                     max_message_size=max_message_size(pc.remote_sdp),
                                     on_lost=_ignore_loss)
    pc.bind(transport.events_for(pc.channel))
    transport.attach(protocol)  # what MPyC writes waits for the link
    _links.add(task := asyncio.ensure_future(_unchecked_handshake(transport)))
    task.add_done_callback(_links.discard)


_links: set[asyncio.Task] = set()


async def _unchecked_handshake(transport) -> None:
    """The handshake's records without its checks, so that the transport links as after a
    real handshake (whose cost is not the stream's)."""
    from mpc_net.records import RecordType

    transport.send_handshake(RecordType.HELLO, b"")
    transport.send_handshake(RecordType.AUTH, b"")
    for _ in range(2):
        await transport.receive_handshake()
    transport.peer_verified()
    await transport.receive_handshake()  # RESUME: linked


class RawPeerConnection:
    """An aiortc peer connection with the negotiated channel mpc-net uses, nothing on top."""

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("bench", negotiated=True, id=0, ordered=True)
        self.opened = asyncio.get_running_loop().create_future()
        self.channel.on("open", lambda: self.opened.done() or self.opened.set_result(None))
        # The peer may send as soon as its side is open, before we have a handler.
        self._handler: Callable[[bytes], None] | None = None
        self._early: list[bytes] = []
        self.channel.on("message", self._on_message)

    def deliver_to(self, handler: Callable[[bytes], None]) -> None:
        self._handler = handler
        early, self._early = self._early, []
        for message in early:
            handler(message)

    def _on_message(self, message: bytes) -> None:
        if self._handler is None:
            self._early.append(message)
        else:
            self._handler(message)

    async def create_offer(self) -> SessionDescription:
        from mpc_net.signaling.protocol import SessionDescription

        await self.pc.setLocalDescription(await self.pc.createOffer())
        return SessionDescription("offer", self.pc.localDescription.sdp)

    async def accept_offer(self, offer: SessionDescription) -> SessionDescription:
        from aiortc import RTCSessionDescription

        from mpc_net.signaling.protocol import SessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type=offer.type))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return SessionDescription("answer", self.pc.localDescription.sdp)

    async def accept_answer(self, answer: SessionDescription) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp,
                                                                 type=answer.type))

    async def close(self) -> None:
        await self.pc.close()


def _new_peer_connection(link: str):
    _loopback_only()  # also raises aioice's receive buffers, as mpc-net does
    if link == "rtc":
        from mpc_net.native.peer import NativePeerConnection

        return NativePeerConnection([])
    return RawPeerConnection()


def _messenger_on(link: str, pc, handler: Callable[[bytes], None], peer_pid: int) -> Messenger:
    if link == "rtc-raw":
        return RawChannel(handler, pc)
    framed = Framed(handler)
    _attach_transport(pc, peer_pid, framed)
    return framed


# -- two processes ----------------------------------------------------------------------------


class Child:
    """The responder process and the pipe we signal through."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, link: str, loop: str) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable, os.path.abspath(__file__), "responder", "--link", link, "--loop", loop,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(process)

    def tell(self, data: dict) -> None:
        self.process.stdin.write(json.dumps(data).encode() + b"\n")

    async def hear(self) -> dict:
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("the responder exited before signaling")
        return json.loads(line)

    async def stop(self) -> dict:
        """Close its stdin (its cue to exit); returns its CPU figures."""
        self.process.stdin.close()
        report = await self.hear()
        await self.process.wait()
        return report


async def connect(link: str, initiator: Initiator,
                  loop_name: str) -> tuple[Child, Callable[[], Awaitable]]:
    """Open `link` to a new responder process; returns it and how to close our end."""
    loop = asyncio.get_running_loop()
    child = await Child.start(link, loop_name)
    if link in ("tcp", "udp"):
        port = (await child.hear())["port"]
        if link == "tcp":
            transport, protocol = await loop.create_connection(lambda: Framed(initiator), HOST,
                                                               port)
        else:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: Datagrams(initiator), remote_addr=(HOST, port))
            protocol.peer = (HOST, port)
        initiator.messenger = protocol

        async def close_socket() -> None:
            transport.close()

        return child, close_socket
    from mpc_net.signaling.protocol import parse_signal_data, signal_data

    pc = _new_peer_connection(link)
    child.tell({"offer": signal_data(await pc.create_offer())})
    await pc.accept_answer(parse_signal_data((await child.hear())["answer"]))
    await asyncio.wait_for(pc.opened, 30)
    initiator.messenger = _messenger_on(link, pc, initiator, peer_pid=1)
    return child, pc.close


async def respond(link: str) -> None:
    """The responder process: serve one link until stdin closes, then report CPU time."""
    loop = asyncio.get_running_loop()
    responder = Responder()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(data: dict) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    closer: Callable[[], Awaitable] | None = None
    if link == "tcp":
        def serve() -> Framed:
            responder.messenger = Framed(responder)
            return responder.messenger

        server = await loop.create_server(serve, HOST, 0)
        say({"port": server.sockets[0].getsockname()[1]})
    elif link == "udp":
        transport, responder.messenger = await loop.create_datagram_endpoint(
            lambda: Datagrams(responder), local_addr=(HOST, 0))
        say({"port": transport.get_extra_info("sockname")[1]})
    else:
        pc = _new_peer_connection(link)
        from mpc_net.signaling.protocol import parse_signal_data, signal_data

        offer = parse_signal_data(json.loads(await reader.readline())["offer"])
        say({"answer": signal_data(await pc.accept_offer(offer))})
        await asyncio.wait_for(pc.opened, 30)
        responder.messenger = _messenger_on(link, pc, responder, peer_pid=0)
        closer = pc.close
    cpu = time.process_time()
    await reader.read()  # until EOF: the initiator is done
    say({"cpu_s": time.process_time() - cpu})
    if closer is not None:
        await closer()


# -- the tests --------------------------------------------------------------------------------


def _udp_counters() -> dict[str, int]:
    from harness.processes import udp_counters  # benchmarks/ is this script's directory

    return udp_counters()


class Meter:
    """Wall time, our CPU time, and UDP datagrams over a timed section."""

    def __enter__(self) -> Meter:
        self.udp = _udp_counters()
        self.cpu = time.process_time()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu_s = time.process_time() - self.cpu
        after = _udp_counters()
        self.datagrams = after["datagrams"] - self.udp["datagrams"]
        self.drops = after["drops"] - self.udp["drops"]

    def figures(self, per: int) -> dict[str, float]:
        return {"seconds": self.seconds, "cpu_us_per_message": 1e6 * self.cpu_s / per,
                "udp_datagrams_per_message": self.datagrams / per, "udp_drops": self.drops}


async def pingpong(initiator: Initiator, count: int, size: int, warmup: int) -> dict:
    message = ECHO + bytes(size - 1)
    for _ in range(warmup):
        await initiator.request(message)
    times = []
    with Meter() as meter:
        for _ in range(count):
            start = time.perf_counter()
            await initiator.request(message)
            times.append(time.perf_counter() - start)
    times.sort()
    return {"rtt_us": 1e6 * statistics.median(times), "rtt_p10_us": 1e6 * times[count // 10],
            "rtt_p90_us": 1e6 * times[count * 9 // 10], "count": count, "size": size,
            **meter.figures(count)}


async def send_many(initiator: Initiator, count: int, size: int, burst: int) -> dict:
    """`count` SINK messages of `size` bytes, `burst` per loop tick, then FINISH; the clock
    stops when the responder's report arrives, that is, when it has received everything."""
    messenger = initiator.messenger
    message = SINK + bytes(size - 1)
    with Meter() as meter:
        sent = 0
        while sent < count:
            for _ in range(min(burst, count - sent)):
                messenger.send(message)
            sent += burst
            await messenger.writable.wait()  # TCP's flow control, as a well-behaved writer
            await asyncio.sleep(0)
        report = json.loads((await initiator.request(FINISH))[1:])
    if report["count"] != count:
        raise RuntimeError(f"the responder counted {report['count']} of {count} messages")
    return {"messages_per_s": count / meter.seconds, "mb_per_s": count * size / meter.seconds / 1e6,
            "count": count, "size": size, "burst": burst, **meter.figures(count)}


async def two_process_test(options: argparse.Namespace) -> dict:
    initiator = Initiator()
    child, close = await connect(options.link, initiator, options.loop)
    try:
        if options.test == "pingpong":
            result = await pingpong(initiator, options.count, options.size, options.warmup)
        else:
            result = await send_many(initiator, options.count, options.size, options.burst)
    finally:
        await close()
    result["responder_cpu_s"] = (await child.stop())["cpu_s"]
    result["link"] = options.link
    return result


# -- memory and imports (one process) ---------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def open_pair(link: str) -> list:
    """Both ends of one connection in this process, open and used."""
    loop = asyncio.get_running_loop()
    responder, initiator = Responder(), Initiator()
    if link == "tcp":
        def serve() -> Framed:
            responder.messenger = Framed(responder)
            return responder.messenger

        server = await loop.create_server(serve, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        _, initiator.messenger = await loop.create_connection(lambda: Framed(initiator), HOST,
                                                              port)
        held = [server]
    else:
        offerer, answerer = _new_peer_connection(link), _new_peer_connection(link)
        await offerer.accept_answer(await answerer.accept_offer(await offerer.create_offer()))
        await asyncio.wait_for(asyncio.gather(offerer.opened, answerer.opened), 30)
        initiator.messenger = _messenger_on(link, offerer, initiator, peer_pid=1)
        responder.messenger = _messenger_on(link, answerer, responder, peer_pid=0)
        held = [offerer, answerer]
    # Some traffic, so that buffers and queues that grow with use are counted too.
    await initiator.request(ECHO + bytes(99))
    for _ in range(64):
        initiator.messenger.send(SINK + bytes(4095))
    await initiator.request(FINISH)
    return [*held, initiator, responder]


async def memory(options: argparse.Namespace) -> dict:
    await open_pair(options.link)  # warm-up: lazy imports and caches are not per connection
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    pairs = [await open_pair(options.link) for _ in range(options.count)]
    setup_s = (time.perf_counter() - start) / options.count
    gc.collect()
    grown = rss_bytes() - before
    del pairs
    return {"link": options.link, "pairs": options.count, "rss_growth_bytes": grown,
            "bytes_per_pair": grown / options.count,
            "bytes_per_peer_connection": grown / (2 * options.count),
            "setup_ms_per_pair": 1e3 * setup_s}


def imports() -> dict:
    """Seconds a fresh process spends importing MPyC, then what mpc-net's parties add."""
    sys.argv = sys.argv[:1]  # mpyc.runtime parses sys.argv when imported
    start = time.perf_counter()
    import mpyc.runtime  # noqa: F401

    middle = time.perf_counter()
    import mpc_net.cli  # noqa: F401
    import mpc_net.native.party  # noqa: F401
    import mpc_net.native.peer  # noqa: F401

    end = time.perf_counter()
    return {"mpyc_s": middle - start, "mpc_net_s": end - middle}


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("test", choices=["pingpong", "stream", "small", "memory", "imports",
                                         "responder"])
    parser.add_argument("--link", choices=["tcp", "rtc", "rtc-raw", "udp"], default="tcp")
    parser.add_argument("--count", type=int, default=2000,
                        help="messages (pingpong: round trips; memory: connection pairs)")
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument("--burst", type=int, default=1000,
                        help="messages written per event-loop tick (stream, small)")
    parser.add_argument("--warmup", type=int, default=50, help="pingpong: untimed round trips")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default=_default_loop(),
                        help="event loop of both processes (default: uvloop where installed, "
                             "as MPyC chooses)")
    return parser.parse_args(argv)


def _default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def use_loop(name: str) -> None:
    if name == "uvloop":
        # Optional on purpose, as in MPyC, which runs on uvloop only where it is installed; no
        # dependency brings it, so it is looked up by name (the default takes it only if found).
        uvloop = importlib.import_module("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> None:
    # Measure the mpc-net of this checkout, not whichever copy pip installed last.
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    options = parse_args(argv)
    use_loop(options.loop)
    if options.test == "imports":
        result = imports()
    elif options.test == "responder":
        asyncio.run(respond(options.link))
        return
    elif options.test == "memory":
        result = asyncio.run(memory(options))
    else:
        if options.link == "udp" and options.test != "pingpong":
            sys.exit("--link udp is for pingpong only: nothing would retransmit a lost datagram")
        result = asyncio.run(two_process_test(options))
    result["test"] = options.test
    result["loop"] = options.loop
    print(json.dumps(result))


if __name__ == "__main__":
    main()
