"""The transport core (records, batching, liveness, SDP facts) and DataChannelTransport, first
against a scripted channel, then over a real aiortc connection in this process (with mpc-net's
SCTP changes and with aiortc's SCTP as shipped)."""

from __future__ import annotations

import asyncio

import pytest

from mpc_net.liveness import Liveness
from mpc_net.records import RecordError, RecordType, SendBuffer, decode, encode, encode_offset
from mpc_net.sdp import DEFAULT_MAX_MESSAGE_SIZE, MESSAGE_SIZE_CAP, max_message_size
from mpc_net.transport import HIGH_WATER, DataChannelTransport, PeerLost


def test_records_round_trip() -> None:
    kind, body = decode(encode(RecordType.DATA, b"abc"))
    assert kind is RecordType.DATA and bytes(body) == b"abc"
    assert decode(encode(RecordType.GOODBYE))[0] is RecordType.GOODBYE


@pytest.mark.parametrize("message", [b"", b"\x7fxyz"])
def test_foreign_messages_are_rejected(message: bytes) -> None:
    with pytest.raises(RecordError):
        decode(message)


def test_send_buffer_merges_writes_and_splits_at_the_message_size() -> None:
    buffer = SendBuffer(max_message_size=11)
    for i in range(25):
        buffer.write(bytes([i]))
    records = buffer.take(budget=1 << 20)
    assert [len(r) for r in records] == [11, 11, 6]
    assert b"".join(bytes(decode(r)[1]) for r in records) == bytes(range(25))
    assert len(buffer) == 0


def test_send_buffer_takes_at_least_one_record_and_respects_the_budget() -> None:
    buffer = SendBuffer(max_message_size=101)
    buffer.write(bytes(1000))
    assert len(buffer.take(budget=1)) == 1
    assert len(buffer.take(budget=250)) == 3
    assert len(buffer) == 600


def test_liveness() -> None:
    live = Liveness.starting(now=0.0, interval=1.0, timeout=10.0)
    assert not live.keepalive_due(0.5) and live.keepalive_due(1.0)
    live.sent(1.0)
    assert not live.keepalive_due(1.5)
    live.received(5.0)
    assert not live.is_dead(14.9) and live.is_dead(15.0)
    with pytest.raises(ValueError):
        Liveness.starting(now=0.0, interval=10.0, timeout=10.0)


@pytest.mark.parametrize("sdp, size", [
    ("v=0\r\n", DEFAULT_MAX_MESSAGE_SIZE),
    ("v=0\r\na=max-message-size:1000\r\n", 1000),
    ("v=0\r\na=max-message-size:0\r\n", MESSAGE_SIZE_CAP),
    ("v=0\r\na=max-message-size:1073741823\r\n", MESSAGE_SIZE_CAP),
])
def test_max_message_size_from_sdp(sdp: str, size: int) -> None:
    assert max_message_size(sdp) == size


class ScriptedChannel:
    """A W3C-shaped data channel that records what is sent; the test plays the network."""

    def __init__(self) -> None:
        self.readyState = "open"
        self.bufferedAmount = 0
        self.bufferedAmountLowThreshold = 0
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.readyState = "closed"

    def records(self) -> list[tuple[RecordType, bytes]]:
        return [(kind, bytes(body)) for kind, body in map(decode, self.sent)]


class RecordingProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[object] = []

    def connection_made(self, transport) -> None:
        self.events.append("made")

    def data_received(self, data) -> None:
        self.events.append(bytes(data))

    def connection_lost(self, exc) -> None:
        self.events.append(("lost", exc))


def play_handshake(transport: DataChannelTransport, peer_received: int = 0) -> None:
    """The peer's side of a channel's handshake, played into `transport`, with our side's check
    of its AUTH taken as passed (handshake.py's checks are test_auth.py's)."""
    transport.on_message(encode(RecordType.HELLO, b"hello"))
    transport.on_message(encode(RecordType.AUTH, b"auth"))
    transport.peer_verified()
    transport.on_message(encode_offset(RecordType.RESUME, peer_received))


async def unchecked_handshake(transport: DataChannelTransport) -> None:
    """Both sides run this over a real channel or wire: the handshake's records without its
    checks, so that the transport links as after a real one."""
    transport.send_handshake(RecordType.HELLO, b"hello")
    transport.send_handshake(RecordType.AUTH, b"auth")
    for kind in (RecordType.HELLO, RecordType.AUTH):
        assert (await transport.receive_handshake())[0] is kind
    transport.peer_verified()
    assert (await transport.receive_handshake())[0] is RecordType.RESUME
    assert transport.linked


def make_transport(**kwargs) -> tuple[DataChannelTransport, ScriptedChannel, list[PeerLost]]:
    channel = ScriptedChannel()
    lost: list[PeerLost] = []
    transport = DataChannelTransport(channel, 7, max_message_size=1024, on_lost=lost.append,
                                     **kwargs)
    play_handshake(transport)  # as on a first channel
    assert channel.records() == [(RecordType.RESUME, bytes(8))]
    channel.sent.clear()
    return transport, channel, lost


async def next_tick() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_writes_in_one_tick_become_one_message() -> None:
    transport, channel, _ = make_transport()
    for _ in range(100):
        transport.write(b"x" * 5)
    transport.writelines([b"y", b"z"])
    assert channel.sent == []  # nothing leaves before the tick ends
    await next_tick()
    assert channel.records() == [(RecordType.DATA, b"x" * 500 + b"yz")]
    assert transport.mpyc_writes == 102


async def test_bytes_received_before_attach_follow_connection_made() -> None:
    transport, _, _ = make_transport()
    transport.on_message(encode(RecordType.DATA, b"early"))
    protocol = RecordingProtocol()
    transport.attach(protocol)
    transport.on_message(encode(RecordType.DATA, b"late"))
    assert protocol.events == ["made", b"early", b"late"]


async def test_flow_control_keeps_the_surplus_until_the_buffer_drains() -> None:
    transport, channel, _ = make_transport()
    channel.bufferedAmount = HIGH_WATER
    transport.write(b"a" * 3000)
    await next_tick()
    assert channel.sent == [] and transport.get_write_buffer_size() == HIGH_WATER + 3000
    channel.bufferedAmount = 0
    transport.on_buffered_amount_low()
    await next_tick()
    assert b"".join(body for _, body in channel.records()) == b"a" * 3000
    assert all(len(message) <= 1024 for message in channel.sent)


async def test_close_sends_goodbye_after_the_data_and_ends_the_protocol_once() -> None:
    transport, channel, lost = make_transport()
    protocol = RecordingProtocol()
    transport.attach(protocol)
    transport.write(b"last words")
    transport.close()
    await next_tick()
    assert channel.records() == [(RecordType.DATA, b"last words"), (RecordType.GOODBYE, b"")]
    assert protocol.events == ["made", ("lost", None)]
    # The peer's reply and the channel going away afterwards are the normal end, not a loss.
    transport.on_message(encode(RecordType.GOODBYE))
    transport.on_channel_close()
    assert transport.ended.done() and lost == []
    assert protocol.events == ["made", ("lost", None)]


async def test_peer_goodbye_ends_the_protocol_and_is_answered() -> None:
    transport, channel, lost = make_transport()
    protocol = RecordingProtocol()
    transport.attach(protocol)
    transport.on_message(encode(RecordType.DATA, b"bye"))
    transport.on_message(encode(RecordType.GOODBYE))
    await next_tick()
    assert protocol.events == ["made", b"bye", ("lost", None)]
    assert channel.records() == [(RecordType.GOODBYE, b"")]
    assert lost == []


@pytest.mark.parametrize("event", ["channel-close", "failed", "text", "garbage"])
async def test_a_broken_channel_is_a_lost_party(event: str) -> None:
    transport, _, lost = make_transport()
    transport.attach(RecordingProtocol())
    {"channel-close": transport.on_channel_close,
     "failed": lambda: transport.on_connection_state("failed"),
     "text": lambda: transport.on_message("hello"),
     "garbage": lambda: transport.on_message(b"\xff")}[event]()
    assert [error.peer_pid for error in lost] == [7]
    assert "party 7" in str(lost[0])


async def test_silence_is_a_lost_party_and_keepalives_prevent_it() -> None:
    quiet, _, lost = make_transport(keepalive_interval=0.05, peer_timeout=0.3)
    chatty, channel, _ = make_transport(keepalive_interval=0.05, peer_timeout=0.3)
    for _ in range(10):  # the chatty transport hears keepalives; the quiet one hears nothing
        await asyncio.sleep(0.05)
        chatty.on_message(encode(RecordType.PING, b"12345678"))
    assert len(lost) == 1 and "nothing received" in lost[0].reason
    kinds = [kind for kind, _ in channel.records()]
    assert RecordType.PING in kinds  # its own keepalives
    assert (RecordType.PONG, b"12345678") in channel.records()  # answers to the peer's
    assert not chatty.is_closing()
    chatty.abort()


async def test_real_aiortc_channel_carries_a_large_stream_in_order_and_closes_cleanly(
        sctp: str) -> None:
    from mpc_net.native.peer import NativePeerConnection, use_host_addresses

    use_host_addresses(["127.0.0.1"])
    try:
        offerer, answerer = NativePeerConnection([]), NativePeerConnection([])
        answer = await answerer.accept_offer(await offerer.create_offer())
        await offerer.accept_answer(answer)
        await asyncio.wait_for(asyncio.gather(offerer.opened, answerer.opened), 20)
        lost: list[PeerLost] = []
        ends = {}
        for name, pc in (("offerer", offerer), ("answerer", answerer)):
            transport = DataChannelTransport(pc.channel, 1, on_lost=lost.append,
                                             max_message_size=max_message_size(pc.remote_sdp))
            pc.bind(transport.events_for(pc.channel))
            protocol = RecordingProtocol()
            ends[name] = (transport, protocol)
        await asyncio.gather(*(unchecked_handshake(t) for t, _ in ends.values()))
        for transport, protocol in ends.values():
            transport.attach(protocol)
        stream = bytes(range(256)) * 8192  # 2 MiB: several maximal messages, flow control
        sender, _ = ends["offerer"]
        receiver, received = ends["answerer"]
        for i in range(0, len(stream), 1000):
            sender.write(stream[i:i + 1000])
        sender.close()
        await asyncio.wait_for(asyncio.gather(sender.ended, receiver.ended), 30)
        assert b"".join(e for e in received.events if isinstance(e, bytes)) == stream
        assert received.events[-1] == ("lost", None)
        assert sender.messages_sent < 20  # 2000 writes went out as a few large messages
        # The path report: the nominated pair, and a round trip measured over the channel.
        assert await offerer.selected_path() == ("host", "host")
        sender.ping()
        for _ in range(100):
            if sender.round_trip_time is not None:
                break
            await asyncio.sleep(0.01)
        assert 0 < sender.round_trip_time < 1
        await asyncio.gather(offerer.close(), answerer.close())
        assert lost == []
    finally:
        use_host_addresses(None)


class LossyWire(ScriptedChannel):
    """A channel to another transport that can be cut: then what is sent is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.peer: DataChannelTransport | None = None
        self.cut = False

    def send(self, data: bytes) -> None:
        super().send(data)
        if not self.cut:
            asyncio.get_running_loop().call_soon(self.peer.on_message, data)


def lossy_pair(**kwargs):
    wires = LossyWire(), LossyWire()
    interrupted: list[int] = []
    ends = [DataChannelTransport(w, 1 - i, max_message_size=1000, on_lost=pytest.fail,
                                 on_interrupted=lambda pid, _: interrupted.append(pid), **kwargs)
            for i, w in enumerate(wires)]
    wires[0].peer, wires[1].peer = ends[1], ends[0]
    return ends, wires, interrupted


async def test_stream_resumes_on_a_new_channel_without_loss_or_repetition() -> None:
    (a, b), wires, interrupted = lossy_pair(keepalive_interval=0.05, peer_timeout=5)
    received = RecordingProtocol()
    a.attach(RecordingProtocol())
    b.attach(received)
    await asyncio.gather(unchecked_handshake(a), unchecked_handshake(b))
    stream = bytes(range(256)) * 40
    a.write(stream[:4000])
    await asyncio.sleep(0.2)  # delivered, and acknowledged by b's keepalive tick
    assert a._buffer.retained == 0

    wires[0].cut = wires[1].cut = True  # the network goes away
    a.write(stream[4000:7000])  # sent into the void, kept for later
    await next_tick()
    a.on_channel_close()
    b.on_channel_close()
    assert sorted(interrupted) == [0, 1] and not a.is_closing()  # no PeerLost: on_lost fails
    a.write(stream[7000:])  # MPyC goes on writing during the outage

    new = LossyWire(), LossyWire()
    new[0].peer, new[1].peer = b, a
    a.replace_channel(new[0], 1000)
    b.replace_channel(new[1], 1000)
    await asyncio.gather(unchecked_handshake(a), unchecked_handshake(b))  # RESUME: received
    await asyncio.sleep(0.1)
    assert b"".join(e for e in received.events if isinstance(e, bytes)) == stream
    for t in (a, b):
        t.abort()


async def test_resuming_at_an_offset_never_sent_is_refused() -> None:
    (a, _), wires, _ = lossy_pair()
    wires[0].cut = True
    a.attach(RecordingProtocol())
    play_handshake(a)
    a.write(b"abc")
    await next_tick()
    a.on_channel_close()
    a.replace_channel(new := LossyWire(), 1000)
    new.cut = True
    play_handshake(a, peer_received=10)  # 3 bytes were sent, not 10
    for kind in (RecordType.HELLO, RecordType.AUTH):
        assert (await a.receive_handshake())[0] is kind
    with pytest.raises(RecordError, match="cannot resume our stream"):
        await a.receive_handshake()
    assert not a.linked
    a.abort()


async def test_events_of_a_replaced_channel_are_ignored() -> None:
    (a, b), wires, interrupted = lossy_pair()
    a.attach(RecordingProtocol())
    old = a.events_for(wires[0])
    a.on_channel_close()
    a.replace_channel(LossyWire(), 1000)
    old.on_channel_close()  # the old channel's late close must not interrupt the new one
    old.on_message(encode(RecordType.DATA, b"stale"))
    assert interrupted == [1] and a.received == 0  # once, naming a's peer
    for t in (a, b):
        t.abort()


# -- nothing before authentication reaches the stream ----------------------------------------

# How far a channel's handshake got before the stray record, as the records that got it there
# (and whether our side had checked the peer's AUTH), and the record that comes next.
STAGES = {
    "before HELLO": ([], False, RecordType.HELLO),
    "before AUTH": ([RecordType.HELLO], False, RecordType.AUTH),
    "before RESUME": ([RecordType.HELLO, RecordType.AUTH], False, RecordType.RESUME),
    "before RESUME, AUTH checked": ([RecordType.HELLO, RecordType.AUTH], True, RecordType.RESUME),
    "after RESUME, AUTH not checked yet": (
        [RecordType.HELLO, RecordType.AUTH, RecordType.RESUME], False, None),
}
STRAY = {
    RecordType.DATA: b"\x00" * 12 + b"forged!!",  # a 20-byte MPyC frame
    RecordType.GOODBYE: b"",
    RecordType.ACK: (20).to_bytes(8, "big"),
    RecordType.PING: bytes(8),
    RecordType.PONG: bytes(8),
    RecordType.HELLO: b"hello",
    RecordType.AUTH: b"auth",
    RecordType.RESUME: (20).to_bytes(8, "big"),
}
BODIES = {RecordType.HELLO: b"hello", RecordType.AUTH: b"auth", RecordType.RESUME: bytes(8)}


def interrupted_transport() -> tuple[DataChannelTransport, RecordingProtocol]:
    """A transport mid-run: 3 bytes received, 100 sent and not acknowledged, channel lost."""
    interruptions: list[int] = []
    transport = DataChannelTransport(ScriptedChannel(), 7, max_message_size=1024,
                                     on_lost=pytest.fail,
                                     on_interrupted=lambda pid, _: interruptions.append(pid))
    protocol = RecordingProtocol()
    transport.attach(protocol)
    play_handshake(transport)
    transport.on_message(encode(RecordType.DATA, b"abc"))
    transport.write(b"x" * 100)
    transport._flush()
    transport.on_channel_close()
    assert interruptions == [7] and transport.received == 3
    return transport, protocol


@pytest.mark.parametrize("stage, kind", [
    (stage, kind) for stage, (_, _, expected) in STAGES.items() for kind in STRAY
    if kind is not expected], ids=lambda v: v.name if isinstance(v, RecordType) else v)
@pytest.mark.parametrize("channel", ["first channel", "replaced channel"])
async def test_a_record_out_of_place_in_the_handshake_ends_the_attempt_and_is_not_kept(
        channel: str, stage: str, kind: RecordType) -> None:
    if channel == "first channel":
        transport = DataChannelTransport(ScriptedChannel(), 7, max_message_size=1024,
                                         on_lost=pytest.fail, on_interrupted=lambda *_: None)
        protocol = RecordingProtocol()
        transport.attach(protocol)  # so that a GOODBYE or DATA would reach it at once
        received, events = 0, ["made"]
    else:
        transport, protocol = interrupted_transport()
        received, events = 3, ["made", b"abc"]
    buffered = (transport._buffer.acknowledged, transport._buffer.sent)
    wire = ScriptedChannel()
    transport.replace_channel(wire, 1024)
    before, verified, _ = STAGES[stage]
    for step in before:
        transport.on_message(encode(step, BODIES[step]))
    if verified:
        transport.peer_verified()

    transport.on_message(encode(kind, STRAY[kind]))
    for _ in range(1000):  # whatever follows is dropped: the backlog stays bounded
        transport.on_message(encode(RecordType.DATA, b"more"))
    assert transport._handshake.qsize() <= 3

    queued = [step for step in before if step is not RecordType.RESUME]
    for step in queued:
        assert (await transport.receive_handshake())[0] is step
    with pytest.raises(RecordError, match=f"it sent {kind.name} where"):
        await transport.receive_handshake()
    transport.peer_verified()  # too late: the attempt is over
    assert not transport.linked
    assert transport.received == received  # nothing counted ...
    assert protocol.events == events  # ... nor passed to MPyC (no bytes, no connection_lost)
    assert (transport._buffer.acknowledged, transport._buffer.sent) == buffered  # ACK ignored
    assert all(k is RecordType.RESUME for k, _ in wire.records())  # and no DATA or PING sent
    assert not transport.is_closing()

    # The next channel starts from the last authenticated state.
    honest = ScriptedChannel()
    transport.replace_channel(honest, 1024)
    play_handshake(transport, peer_received=buffered[0])
    assert transport.linked
    await next_tick()
    assert honest.records()[0] == (RecordType.RESUME, received.to_bytes(8, "big"))
    assert b"".join(b for k, b in honest.records() if k is RecordType.DATA) == (
        b"x" * 100 if channel == "replaced channel" else b"")
    transport.abort()


@pytest.mark.parametrize("stage", list(STAGES))
async def test_refused_ends_the_handshake_in_every_stage(stage: str) -> None:
    transport = DataChannelTransport(ScriptedChannel(), 7, max_message_size=1024,
                                     on_lost=pytest.fail)
    before, verified, _ = STAGES[stage]
    for step in before:
        transport.on_message(encode(step, BODIES[step]))
    if verified:
        transport.peer_verified()
    transport.on_message(encode(RecordType.REFUSED, b"no"))
    transport.on_message(encode(RecordType.DATA, b"forged"))
    for step in (s for s in before if s is not RecordType.RESUME):
        assert (await transport.receive_handshake())[0] is step
    assert await transport.receive_handshake() == (RecordType.REFUSED, b"no")
    assert transport._handshake.empty() and transport.received == 0 and not transport.linked
    transport.abort()


async def test_the_peers_data_right_after_its_resume_flows_once_its_auth_is_checked() -> None:
    """The honest order: the peer's RESUME may come before or after our check of its AUTH;
    its DATA comes only after our RESUME, and so after our check."""
    for resume_first in (True, False):
        channel = ScriptedChannel()
        transport = DataChannelTransport(channel, 7, max_message_size=1024, on_lost=pytest.fail)
        protocol = RecordingProtocol()
        transport.attach(protocol)
        transport.write(b"mine")
        for step in (RecordType.HELLO, RecordType.AUTH):
            transport.on_message(encode(step, BODIES[step]))
        if resume_first:
            transport.on_message(encode_offset(RecordType.RESUME, 0))
            assert not transport.linked
        transport.peer_verified()
        if not resume_first:
            transport.on_message(encode_offset(RecordType.RESUME, 0))
        assert transport.linked
        transport.on_message(encode(RecordType.DATA, b"theirs"))
        await next_tick()
        assert protocol.events == ["made", b"theirs"]
        # Our RESUME goes out before any of our DATA.
        assert channel.records() == [(RecordType.RESUME, bytes(8)), (RecordType.DATA, b"mine")]
        transport.abort()
